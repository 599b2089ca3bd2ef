"""Cross-validated variance calibration (``nn.calibration``) of an encoded context."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import Calibration, variance_scale
from botorch_tnpkr.nn.calibration import held_out_errors
from botorch_tnpkr.nn.causal import predict_paths
from tests.nn.helpers import make_model, make_task

SMALL_CAL = Calibration(
    folds=3, small_folds=5, small_context=20, min_context=12, max_points=30, holdout=8
)


def explicit_scale(model, xc, yc, cal: Calibration) -> torch.Tensor:
    """The factor by hand, one task at a time, each fold encoded without masks."""
    gen = torch.Generator().manual_seed(cal.seed)
    order = torch.rand(xc.shape[1], generator=gen, dtype=torch.float64).argsort()
    if cal.holdout is not None and xc.shape[1] > cal.max_points:
        # One split: the first `holdout` points of the order against all the others.
        splits = [(order[: cal.holdout], order[cal.holdout :])]
    else:
        order = order[: cal.max_points]
        folds = cal.small_folds if xc.shape[1] < cal.small_context else cal.folds
        part = torch.arange(len(order)) % folds
        splits = [(order[part == p], order[part != p]) for p in range(folds)]
    out = []
    for i in range(xc.shape[0]):
        total, count = 0.0, 0
        for held, keep in splits:
            with torch.no_grad():
                pred = model(xc[i, keep][None], yc[i, keep][None], xc[i, held][None])
            total += float(((yc[i, held] - pred.mean[0]) ** 2 / pred.yvar[0]).sum())
            count += len(held)
        w = cal.prior_weight
        out.append(min(max((total + w) / (count + w), cal.bounds[0]), cal.bounds[1]))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("attention", ["softmax", "dka"])
def test_factor_is_the_held_out_mean_squared_error(attention: str) -> None:
    model = make_model(attention)
    xc, yc, _ = make_task(b=3, nc=20)
    got = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    torch.testing.assert_close(got, explicit_scale(model, xc, yc, SMALL_CAL))
    assert not torch.allclose(got, torch.ones_like(got))


@pytest.mark.parametrize("nc", [12, 17])
def test_small_contexts_use_small_folds(nc: int) -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=nc)
    got = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    torch.testing.assert_close(got, explicit_scale(model, xc, yc, SMALL_CAL))
    # Not the same as the folds of larger contexts.
    larger = replace(SMALL_CAL, small_context=SMALL_CAL.min_context)
    assert not torch.allclose(got, variance_scale(model, xc, yc, calibration=larger))


def test_folds_in_chunks_equal_folds_at_once(monkeypatch) -> None:
    """A budget that forces one fold per call changes nothing."""
    from botorch_tnpkr.nn import calibration

    model = make_model("softmax")
    xc, yc, _ = make_task(b=3, nc=25)
    whole = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    monkeypatch.setattr(calibration, "_PAIRS_PER_CALL", 1)
    torch.testing.assert_close(variance_scale(model, xc, yc, calibration=SMALL_CAL), whole)


@pytest.mark.parametrize("attention", ["softmax", "dka"])
def test_holdout_above_max_points(attention: str) -> None:
    model = make_model(attention)
    xc, yc, _ = make_task(b=2, nc=45)
    _total, count = held_out_errors(
        model, xc, yc, None, torch.ones(2, 45, dtype=torch.bool), SMALL_CAL
    )
    assert count.tolist() == [SMALL_CAL.holdout] * 2
    got = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    torch.testing.assert_close(got, explicit_scale(model, xc, yc, SMALL_CAL))
    # Not the folds of a subset: that measures the network on a smaller context.
    subset = replace(SMALL_CAL, holdout=None)
    assert not torch.allclose(got, variance_scale(model, xc, yc, calibration=subset))


def test_subset_above_max_points_without_holdout() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=45)
    cal = replace(SMALL_CAL, holdout=None)
    _total, count = held_out_errors(model, xc, yc, None, torch.ones(2, 45, dtype=torch.bool), cal)
    assert count.tolist() == [30, 30]
    got = variance_scale(model, xc, yc, calibration=cal)
    torch.testing.assert_close(got, explicit_scale(model, xc, yc, cal))


def test_large_and_small_contexts_in_one_batch() -> None:
    """A padded batch mixes a context above max_points (held out), one calibrated with folds
    and one with small folds: each gets the factor it gets alone."""
    model = make_model("softmax")
    xc, yc, _ = make_task(b=3, nc=45)
    mask = torch.ones(3, 45, dtype=torch.bool)
    mask[1, 20:] = False
    mask[2, 15:] = False
    got = variance_scale(model, xc, yc, mask=mask, calibration=SMALL_CAL)
    torch.testing.assert_close(got[:1], explicit_scale(model, xc[:1], yc[:1], SMALL_CAL))
    for i, n in ((1, 20), (2, 15)):
        alone = variance_scale(model, xc[i : i + 1, :n], yc[i : i + 1, :n], calibration=SMALL_CAL)
        torch.testing.assert_close(got[i : i + 1], alone)
        expected = explicit_scale(model, xc[i : i + 1, :n], yc[i : i + 1, :n], SMALL_CAL)
        torch.testing.assert_close(alone, expected)


def test_small_contexts_keep_factor_one() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 11:] = False  # 11 valid points: below min_context
    got = variance_scale(model, xc, yc, mask=mask, calibration=SMALL_CAL)
    assert got[1].item() == 1.0
    assert got[0].item() != 1.0


def test_padding_and_batch_do_not_change_the_factor() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=3, nc=20)
    whole = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    alone = variance_scale(model, xc[1:2], yc[1:2], calibration=SMALL_CAL)
    torch.testing.assert_close(alone, whole[1:2])
    pad_x = torch.cat([xc, torch.full((3, 4, 2), float("nan"), dtype=xc.dtype)], 1)
    pad_y = torch.cat([yc, torch.full((3, 4), float("inf"), dtype=yc.dtype)], 1)
    mask = torch.arange(24).expand(3, 24) < 20
    torch.testing.assert_close(
        variance_scale(model, pad_x, pad_y, mask=mask, calibration=SMALL_CAL), whole
    )


def test_known_noise_enters_the_folds() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=20)
    plain = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    known = variance_scale(model, xc, yc, yvar=torch.full_like(yc, 1e-4), calibration=SMALL_CAL)
    assert not torch.allclose(plain, known)


def test_bounds_clamp_the_factor() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=20)
    free = variance_scale(model, xc, yc, calibration=SMALL_CAL)
    low = float(free.min()) * 1.5
    tight = replace(SMALL_CAL, bounds=(min(low, 1.0), 1.0))
    got = variance_scale(model, xc, yc, calibration=tight)
    assert bool((got >= tight.bounds[0]).all() & (got <= 1.0).all())


@pytest.mark.parametrize("attention", ["softmax", "scan", "dka"])
def test_encode_scales_both_variances_and_keeps_the_mean(attention: str) -> None:
    model = make_model(attention)
    xc, yc, xt = make_task(b=2, nc=20)
    with torch.no_grad():
        plain_cache = model.encode(xc, yc)
        cache = model.encode(xc, yc, calibration=SMALL_CAL)
        plain, cal = model.predict(plain_cache, xt), model.predict(cache, xt)
        paths_plain, paths_cal = (
            predict_paths(model, c, xt.unsqueeze(1)) for c in (plain_cache, cache)
        )
    assert plain_cache.var_scale is None
    factor = cache.var_scale.unsqueeze(-1)
    torch.testing.assert_close(cal.mean, plain.mean)
    torch.testing.assert_close(cal.fvar, plain.fvar * factor)
    torch.testing.assert_close(cal.noise_var, plain.noise_var * factor)
    # The joint-prediction path reads the same factor from the context.
    torch.testing.assert_close(paths_cal.fvar, paths_plain.fvar * factor.view(2, 1, 1, 1))
    torch.testing.assert_close(cache.to(torch.float32).var_scale, cache.var_scale.float())


def test_no_gradient_through_the_factor() -> None:
    model = make_model("softmax")
    xc, yc, xt = make_task(b=1, nc=20)
    yc = yc.clone().requires_grad_(True)
    cache = model.encode(xc, yc, calibration=SMALL_CAL)
    assert not cache.var_scale.requires_grad
    model.predict(cache, xt).mean.sum().backward()
    assert yc.grad is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"folds": 1},
        {"small_folds": 1},
        {"small_folds": 8, "min_context": 6, "small_context": 10},
        {"folds": 40, "min_context": 20, "small_context": 30},
        {"min_context": 64, "max_points": 32},
        {"prior_weight": 0.0},
        {"holdout": 0},
        {"max_points": 100, "min_context": 64, "holdout": 37},
        {"bounds": (1.5, 2.0)},
        {"bounds": (0.0, 2.0)},
    ],
)
def test_invalid_settings(changes: dict) -> None:
    with pytest.raises(ConfigError):
        Calibration(**changes)
