"""``TNPKRModel(calibrate=...)``: variances calibrated on the history, means unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.exceptions.errors import UnsupportedError
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.nn import Calibration
from tests.model.helpers import make_data

SMALL_CAL = Calibration(folds=3, small_folds=4, min_context=12, max_points=40, holdout=8)


@pytest.mark.parametrize(("batch", "m"), [((), 1), ((2,), 2)])
def test_variances_scale_by_the_history_factor(exact_path: Path, batch, m: int) -> None:
    X, Y = make_data(n=30, d=2, m=m, batch=batch)
    plain = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=False)
    cal = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=SMALL_CAL)
    Xt = torch.rand(*batch, 5, 2, dtype=torch.float64)
    factor = cal._context().var_scale  # (prod(batch) * m,), outputs fastest
    assert plain._context().var_scale is None
    assert not torch.allclose(factor, torch.ones_like(factor))
    factor = factor.view(*batch, m).unsqueeze(-2)  # batch x 1 x m
    for noise in (False, True):
        p, c = (
            plain.posterior(Xt, observation_noise=noise),
            cal.posterior(Xt, observation_noise=noise),
        )
        torch.testing.assert_close(c.mean, p.mean)
        torch.testing.assert_close(c.variance, p.variance * factor)


def test_default_calibration_leaves_small_histories_alone(exact_path: Path) -> None:
    X, Y = make_data(n=20)
    Xt = torch.rand(4, 2, dtype=torch.float64)
    default = TNPKRModel(X, Y, checkpoint=exact_path)
    plain = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=False)
    assert default._context().var_scale.tolist() == [1.0]  # 20 < min_context = 32
    torch.testing.assert_close(default.posterior(Xt).variance, plain.posterior(Xt).variance)
    big = TNPKRModel(*make_data(n=70), checkpoint=exact_path)
    assert big._context().var_scale.item() != 1.0


def test_derived_models_keep_the_setting_and_the_factor(exact_path: Path) -> None:
    """Fantasy and conditioned models reuse this model's factor (no folds inside acquisition
    functions); a new TNPKRModel on the grown history recalibrates."""
    X, Y = make_data(n=20)
    model = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=SMALL_CAL)
    factor = model._context().var_scale
    assert factor.item() != 1.0
    new_X, new_Y = torch.rand(3, 2, dtype=torch.float64), torch.rand(3, 1, dtype=torch.float64)
    cond = model.condition_on_observations(new_X, new_Y)
    assert cond._calibration == SMALL_CAL
    torch.testing.assert_close(cond._context().var_scale, factor)
    grown = TNPKRModel(
        torch.cat([X, new_X]), torch.cat([Y, new_Y]), checkpoint=exact_path, calibrate=SMALL_CAL
    )
    assert grown._context().var_scale.item() != factor.item()
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([4]))
    fant = model.fantasize(torch.rand(2, 2, dtype=torch.float64), sampler=sampler)
    assert fant._calibration == SMALL_CAL
    torch.testing.assert_close(fant._context().var_scale, factor.expand(4))
    # A fantasy model's own fantasies (batch 3 x 4) still carry it, and so does a re-encoding.
    fant2 = fant.fantasize(
        torch.rand(4, 1, 2, dtype=torch.float64),
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([3])),
    )
    torch.testing.assert_close(fant2._context().var_scale, factor.expand(12))
    fant2._cache = None
    torch.testing.assert_close(fant2._context().var_scale, factor.expand(12))
    off = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=False)
    assert off.subset_output([0])._calibration is None
    assert off.condition_on_observations(new_X, new_Y)._context().var_scale is None


def test_subset_output_keeps_each_outputs_factor(exact_path: Path) -> None:
    X, Y = make_data(n=30, d=2, m=3, batch=(2,))
    model = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=SMALL_CAL)
    factor = model._context().var_scale.view(2, 3)
    sub = model.subset_output([2, 0])
    torch.testing.assert_close(sub._context().var_scale, factor[:, [2, 0]].reshape(-1))
    Xt = torch.rand(2, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(
        sub.posterior(Xt).variance, model.posterior(Xt).variance[..., [2, 0]]
    )


def test_optimize_acqf_with_calibration(exact_path: Path) -> None:
    X, Y = make_data(n=30)
    model = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=SMALL_CAL)
    acqf = LogExpectedImprovement(model, best_f=Y.max())
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    cand, value = optimize_acqf(acqf, bounds, q=1, num_restarts=2, raw_samples=16)
    assert cand.shape == (1, 2) and torch.isfinite(value)


@pytest.mark.parametrize("bad", ["yes", 1, None, 0.5])
def test_bad_setting_is_a_typed_error(exact_path: Path, bad) -> None:
    X, Y = make_data()
    with pytest.raises(UnsupportedError, match="calibrate must be"):
        TNPKRModel(X, Y, checkpoint=exact_path, calibrate=bad)
