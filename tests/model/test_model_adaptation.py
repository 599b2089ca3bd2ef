"""``TNPKRModel(adapt=...)``: distance scales fitted to the history, kept by derived models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.exceptions.errors import UnsupportedError
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.nn import Adaptation
from botorch_tnpkr.nn.adaptation import DEFAULT_ADAPTATION
from tests.model.helpers import make_data

SMALL = Adaptation(steps=4, lr=0.05, folds=3, min_context=12, max_points=24)


@pytest.mark.parametrize(("batch", "m"), [((), 1), ((2,), 2)])
def test_scales_per_context_and_they_change_the_posterior(exact_path: Path, batch, m) -> None:
    X, Y = make_data(n=30, d=3, m=m, batch=batch)
    plain = TNPKRModel(X, Y, checkpoint=exact_path, adapt=False)
    fitted = TNPKRModel(X, Y, checkpoint=exact_path, adapt=SMALL)
    assert plain._context().distance_scale is None
    scales = fitted._context().distance_scale
    count = int(torch.tensor(batch).prod()) * m if batch else m
    assert scales.shape == (count, 3)
    assert not torch.allclose(scales, torch.ones_like(scales))
    Xt = torch.rand(*batch, 5, 3, dtype=torch.float64)
    assert not torch.allclose(fitted.posterior(Xt).mean, plain.posterior(Xt).mean)


def test_default_adaptation_leaves_small_histories_alone(exact_path: Path) -> None:
    X, Y = make_data(n=DEFAULT_ADAPTATION.min_context - 1)
    default = TNPKRModel(X, Y, checkpoint=exact_path)
    plain = TNPKRModel(X, Y, checkpoint=exact_path, adapt=False)
    assert torch.equal(default._context().distance_scale, torch.ones(1, 2, dtype=X.dtype))
    Xt = torch.rand(4, 2, dtype=torch.float64)
    torch.testing.assert_close(default.posterior(Xt).mean, plain.posterior(Xt).mean)
    big = TNPKRModel(*make_data(n=DEFAULT_ADAPTATION.min_context + 4), checkpoint=exact_path)
    assert not torch.equal(big._context().distance_scale, torch.ones(1, 2, dtype=X.dtype))


def test_derived_models_keep_the_scales(exact_path: Path) -> None:
    X, Y = make_data(n=30, m=2)
    model = TNPKRModel(X, Y, checkpoint=exact_path, adapt=SMALL)
    scales = model._context().distance_scale  # (m, d)
    new_X = torch.rand(3, 2, dtype=torch.float64)
    cond = model.condition_on_observations(new_X, torch.rand(3, 2, dtype=torch.float64))
    torch.testing.assert_close(cond._context().distance_scale, scales)
    torch.testing.assert_close(model.subset_output([1])._context().distance_scale, scales[1:])
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([4]))
    fant = model.fantasize(torch.rand(2, 2, dtype=torch.float64), sampler=sampler)
    torch.testing.assert_close(fant._context().distance_scale, scales.repeat(4, 1))
    fant._cache = None  # a re-encoding keeps them too
    torch.testing.assert_close(fant._context().distance_scale, scales.repeat(4, 1))
    grown = TNPKRModel(
        torch.cat([X, X[:5] * 0.5]), torch.cat([Y, Y[:5]]), checkpoint=exact_path, adapt=SMALL
    )
    assert not torch.allclose(grown._context().distance_scale, scales)


def test_an_adapted_model_serves_an_acquisition_function(exact_path: Path) -> None:
    X, Y = make_data(n=30)
    model = TNPKRModel(X, Y, checkpoint=exact_path, adapt=SMALL)
    acqf = LogExpectedImprovement(model, best_f=Y.max())
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    cand, value = optimize_acqf(acqf, bounds, q=1, num_restarts=2, raw_samples=16)
    assert cand.shape == (1, 2) and bool(torch.isfinite(value))


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_bad_adapt_arguments_raise(exact_path: Path, bad) -> None:
    X, Y = make_data(n=12)
    with pytest.raises(UnsupportedError, match="adapt must be"):
        TNPKRModel(X, Y, checkpoint=exact_path, adapt=bad)
