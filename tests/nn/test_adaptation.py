"""Per-dimension distance scales fitted to a context (``nn.adaptation``)."""

from __future__ import annotations

import math

import pytest
import torch

from botorch_tnpkr.checkpoints import load_checkpoint
from botorch_tnpkr.errors import ConfigError, InputShapeError, NonFiniteInputError
from botorch_tnpkr.nn import Adaptation, fit_distance_scale
from botorch_tnpkr.nn.adaptation import held_out_nll
from botorch_tnpkr.nn.calibration import _gathered, _order
from botorch_tnpkr.nn.causal import predict_paths
from tests.nn.helpers import make_model, make_task

SMALL = Adaptation(steps=5, lr=0.05, folds=3, min_context=12, max_points=24)


def test_unit_scales_change_nothing_and_other_scales_do() -> None:
    model = make_model("softmax", ard_bias=True, fine_basis=2)
    xc, yc, xt = make_task(b=2, nc=15, d=3)
    plain = model.predict(model.encode(xc, yc), xt)
    ones = model.predict(model.encode(xc, yc, distance_scale=torch.ones(2, 3).double()), xt)
    assert torch.equal(plain.mean, ones.mean) and torch.equal(plain.yvar, ones.yvar)
    scales = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 1.0]]).double()
    moved = model.predict(model.encode(xc, yc, distance_scale=scales), xt)
    torch.testing.assert_close(moved.mean[0], plain.mean[0])  # task 0 kept unit scales
    assert not torch.allclose(moved.mean[1], plain.mean[1])


@pytest.mark.parametrize("attention", ["softmax", "dka"])
def test_scaling_every_distance_equals_scaling_the_bias_inputs(attention: str) -> None:
    """With one factor for every dimension, the scales act as inputs scaled in the bias only:
    the tokens still see the inputs as they are, so the prediction differs from scaled x."""
    model = make_model(attention)
    xc, yc, xt = make_task(b=1, nc=12, d=2)
    scales = torch.full((1, 2), 1.7, dtype=torch.float64)
    cache = model.encode(xc, yc, distance_scale=scales)
    _, bias_in = model._pad_inputs(xt, cache.distance_scale)
    _, plain_in = model._pad_inputs(xt)
    torch.testing.assert_close(bias_in, plain_in * 1.7)
    assert cache.distance_scale is scales


def test_path_predictions_use_the_cache_scales() -> None:
    model = make_model("softmax", ard_bias=True)
    xc, yc, xt = make_task(b=2, nc=10, d=2)
    scales = torch.tensor([[1.5, 0.7], [0.8, 2.0]]).double()
    cache = model.encode(xc, yc, distance_scale=scales)
    direct = model.predict(cache, xt)
    paths = predict_paths(model, cache, xt.unsqueeze(1))
    torch.testing.assert_close(paths.mean.reshape(2, -1), direct.mean)


def test_bad_distance_scales_get_typed_errors() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=12, d=2)
    with pytest.raises(InputShapeError, match="B x d"):
        model.encode(xc, yc, distance_scale=torch.ones(2, 3).double())
    with pytest.raises(NonFiniteInputError, match="> 0"):
        model.encode(xc, yc, distance_scale=torch.zeros(2, 2).double())
    with pytest.raises(InputShapeError, match="not both"):
        model.encode(xc, yc, adaptation=SMALL, distance_scale=torch.ones(2, 2).double())


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"steps": -1}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"folds": 1}, "folds"),
        ({"min_context": 5}, "min_context"),
        ({"max_points": 10}, "max_points"),
        ({"max_log_scale": math.inf}, "max_log_scale"),
        ({"folds_per_step": 0}, "folds_per_step"),
        ({"folds_per_step": 4}, "folds_per_step"),
        ({"ramp_power": -0.5}, "ramp_power"),
        ({"ramp_power": math.nan}, "ramp_power"),
        ({"few_steps": 0}, "few_steps"),
        ({"few_points": -1}, "few_points"),
    ],
)
def test_settings_are_checked(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Adaptation(**{**SMALL.__dict__, **changes})


def test_small_contexts_and_zero_steps_keep_unit_scales() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=11, d=2)  # below min_context
    assert torch.equal(fit_distance_scale(model, xc, yc, adaptation=SMALL), torch.ones(2, 2))
    xc, yc, _ = make_task(b=2, nc=20, d=2)
    none = Adaptation(**{**SMALL.__dict__, "steps": 0})
    assert torch.equal(fit_distance_scale(model, xc, yc, adaptation=none), torch.ones(2, 2))


def test_scales_are_bounded_and_the_network_gets_no_gradient() -> None:
    model = make_model("softmax", ard_bias=True)
    xc, yc, _ = make_task(b=2, nc=20, d=2)
    tight = Adaptation(**{**SMALL.__dict__, "lr": 1.0, "max_log_scale": 0.1})
    scales = fit_distance_scale(model, xc, yc, adaptation=tight)
    assert not scales.requires_grad
    assert bool((scales.log().abs() <= 0.1 + 1e-12).all())
    assert not torch.allclose(scales, torch.ones_like(scales))
    assert all(p.grad is None for p in model.parameters())


def test_padding_and_batch_do_not_change_the_scales() -> None:
    model = make_model("softmax")
    xc, yc, _ = make_task(b=2, nc=20, d=2)
    both = fit_distance_scale(model, xc, yc, adaptation=SMALL)
    alone = fit_distance_scale(model, xc[1:], yc[1:], adaptation=SMALL)
    torch.testing.assert_close(both[1:], alone)
    pad_x = torch.cat([xc[1:], torch.rand(1, 5, 2, dtype=xc.dtype)], dim=1)
    pad_y = torch.cat([yc[1:], torch.full((1, 5), 1e3, dtype=yc.dtype)], dim=1)
    mask = torch.ones(1, 25, dtype=torch.bool)
    mask[:, 20:] = False
    padded = fit_distance_scale(model, pad_x, pad_y, mask=mask, adaptation=SMALL)
    torch.testing.assert_close(padded, alone)


def test_the_fitted_scales_raise_the_held_out_likelihood() -> None:
    model = make_model("softmax", ard_bias=True)
    xc, yc, _ = make_task(b=3, nc=24, d=3, seed=4)
    yc = torch.sin(8 * xc[..., 0]) + 0.1 * xc[..., 1]
    scales = fit_distance_scale(model, xc, yc, adaptation=SMALL)
    mask = torch.ones_like(yc, dtype=torch.bool)
    points = _gathered(xc, yc, None, mask, _order(mask, SMALL.seed))
    with torch.no_grad():
        before = held_out_nll(model, points, SMALL.folds, torch.zeros_like(scales))
        after = held_out_nll(model, points, SMALL.folds, scales.log())
    assert bool((after < before).all())


def test_the_shipped_network_stretches_the_dimension_the_function_varies_in() -> None:
    """A function of x_0 alone in d = 3: the relevant dimension's distances grow (a shorter
    lengthscale), the others' shrink."""
    network = load_checkpoint("tnpkr-exact").eval()
    gen = torch.Generator().manual_seed(0)
    xc = torch.rand(2, 64, 3, generator=gen)
    yc = torch.sin(6 * xc[..., 0])
    scales = fit_distance_scale(network, xc, yc)
    assert bool((scales[:, 0] > 1.05).all())
    assert bool((scales[:, 1:] < 0.95).all())


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
def test_smaller_contexts_take_smaller_steps(power: float) -> None:
    """Adam's first step moves every coordinate by about lr; a context of m < max_points
    valid points by lr * (m / max_points) ** ramp_power (the rest of the batch is padding)."""
    model = make_model("softmax", ard_bias=True)
    xc, yc, _ = make_task(b=2, nc=24, d=2, seed=3)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 12:] = False  # 12 of max_points = 24 valid points
    one_step = Adaptation(**{**SMALL.__dict__, "steps": 1, "lr": 0.2, "ramp_power": power})
    moved = fit_distance_scale(model, xc, yc, mask=mask, adaptation=one_step).log().abs()
    torch.testing.assert_close(
        moved[0], torch.full((2,), 0.2, dtype=moved.dtype), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        moved[1], torch.full((2,), 0.2 * 0.5**power, dtype=moved.dtype), atol=1e-4, rtol=0
    )


def test_a_step_can_predict_some_of_the_folds_from_all_the_others() -> None:
    """``used_folds=1``: the first fold's points predicted from the other folds' points, as
    a direct call of the network computes it; all folds is the default."""
    model = make_model("softmax", ard_bias=True)
    xc, yc, _ = make_task(b=2, nc=12, d=2, seed=5)
    mask = torch.ones_like(yc, dtype=torch.bool)
    points = _gathered(xc, yc, None, mask, _order(mask, 0))
    log_scale = torch.tensor([[0.3, -0.2], [0.0, 0.5]], dtype=xc.dtype)
    with torch.no_grad():
        every = held_out_nll(model, points, 3, log_scale)
        torch.testing.assert_close(held_out_nll(model, points, 3, log_scale, 3), every)
        first = held_out_nll(model, points, 3, log_scale, 1)
        x, y = points[0], points[1]
        out, keep = torch.arange(0, 12, 3), torch.tensor([i for i in range(12) if i % 3])
        pred = model(x[:, keep], y[:, keep], x[:, out], distance_scale=log_scale.exp())
    direct = 0.5 * (torch.log(2 * math.pi * pred.yvar) + (y[:, out] - pred.mean) ** 2 / pred.yvar)
    torch.testing.assert_close(first, direct.mean(-1))
    assert not torch.allclose(first, every)


def test_contexts_below_few_points_take_fewer_larger_steps() -> None:
    """A context of fewer than ``few_points`` valid points takes ``few_steps`` steps, each
    ``steps / few_steps`` times as large; a larger context of the same batch takes all
    ``steps`` of the usual size, as it would alone."""
    model = make_model("softmax", ard_bias=True)
    xc, yc, _ = make_task(b=2, nc=24, d=2, seed=6)
    yc = torch.sin(7 * xc[..., 0])
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 16:] = False  # 16 valid points: below few_points = 20
    rule = Adaptation(**{**SMALL.__dict__, "steps": 6, "few_steps": 2, "few_points": 20})
    both = fit_distance_scale(model, xc, yc, mask=mask, adaptation=rule)
    plain = {**SMALL.__dict__, "few_points": 0}
    full = Adaptation(**{**plain, "steps": 6})
    short = Adaptation(**{**plain, "steps": 2, "lr": SMALL.lr * 3})
    torch.testing.assert_close(both[:1], fit_distance_scale(model, xc[:1], yc[:1], adaptation=full))
    small_x, small_y = xc[1:, :16], yc[1:, :16]
    torch.testing.assert_close(
        both[1:], fit_distance_scale(model, small_x, small_y, adaptation=short)
    )
    assert not torch.allclose(
        both[1:], fit_distance_scale(model, small_x, small_y, adaptation=full)
    )
