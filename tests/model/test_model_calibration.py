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

SMALL_CAL = Calibration(folds=3, min_context=12, max_points=40, holdout=8)


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
    assert default._context().var_scale.tolist() == [1.0]  # 20 < min_context = 64
    torch.testing.assert_close(default.posterior(Xt).variance, plain.posterior(Xt).variance)
    big = TNPKRModel(*make_data(n=70), checkpoint=exact_path)
    assert big._context().var_scale.item() != 1.0


def test_derived_models_keep_the_setting(exact_path: Path) -> None:
    X, Y = make_data(n=20)
    model = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=SMALL_CAL)
    cond = model.condition_on_observations(
        torch.rand(3, 2, dtype=torch.float64), torch.rand(3, 1, dtype=torch.float64)
    )
    assert cond._calibration == SMALL_CAL
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([4]))
    fant = model.fantasize(torch.rand(2, 2, dtype=torch.float64), sampler=sampler)
    assert fant._calibration == SMALL_CAL
    # Each fantasy history (23 points) is calibrated on its own.
    assert fant._context().var_scale.shape == (4,)
    off = TNPKRModel(X, Y, checkpoint=exact_path, calibrate=False)
    assert off.subset_output([0])._calibration is None


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
