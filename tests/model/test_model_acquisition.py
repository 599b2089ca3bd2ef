"""Real BoTorch acquisition functions and optimize_acqf on TNPKRModel (tiny networks)."""

from __future__ import annotations

import warnings

import pytest
import torch
from botorch.acquisition import (
    ExpectedImprovement,
    LogExpectedImprovement,
    PosteriorMean,
    ProbabilityOfImprovement,
    UpperConfidenceBound,
    qKnowledgeGradient,
    qLogExpectedImprovement,
    qLogNoisyExpectedImprovement,
    qMaxValueEntropy,
    qUpperConfidenceBound,
)
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.multi_objective import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.parego import qLogNParEGO
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from tests.model.helpers import make_data

D = 2
BOUNDS = torch.stack([torch.zeros(D), torch.ones(D)]).double()
FAST = {"num_restarts": 2, "raw_samples": 16, "options": {"maxiter": 10, "batch_limit": 4}}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def data():
    return make_data(n=10, d=D, m=2)


def _sampler(n: int = 4) -> SobolQMCNormalSampler:
    return SobolQMCNormalSampler(sample_shape=torch.Size([n]), seed=0)


def _check(acqf, q: int) -> None:
    candidate, value = optimize_acqf(acqf, bounds=BOUNDS, q=q, **FAST)
    assert candidate.shape == (q, D) and bool(torch.isfinite(candidate).all())
    assert bool(((candidate >= 0) & (candidate <= 1)).all())
    assert bool(torch.isfinite(value).all())


@pytest.mark.parametrize("name", ["LogEI", "EI", "UCB", "PI", "PosteriorMean"])
def test_analytic_acquisitions_q1(exact_path, data, name):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    best_f = train_Y[:, 0].max()
    acqf = {
        "LogEI": lambda: LogExpectedImprovement(model, best_f=best_f),
        "EI": lambda: ExpectedImprovement(model, best_f=best_f),
        "UCB": lambda: UpperConfidenceBound(model, beta=2.0),
        "PI": lambda: ProbabilityOfImprovement(model, best_f=best_f),
        "PosteriorMean": lambda: PosteriorMean(model),
    }[name]()
    values = acqf(torch.rand(5, 1, D, dtype=torch.float64))
    assert values.shape == (5,) and bool(torch.isfinite(values).all())
    _check(acqf, q=1)


@pytest.mark.parametrize("q", [1, 4])
@pytest.mark.parametrize("name", ["qLogEI", "qLogNEI", "qUCB"])
def test_mc_acquisitions(exact_path, data, name, q):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    acqf = {
        "qLogEI": lambda: qLogExpectedImprovement(
            model, best_f=train_Y[:, 0].max(), sampler=_sampler()
        ),
        "qLogNEI": lambda: qLogNoisyExpectedImprovement(
            model, X_baseline=train_X, prune_baseline=True, sampler=_sampler()
        ),
        "qUCB": lambda: qUpperConfidenceBound(model, beta=2.0, sampler=_sampler()),
    }[name]()
    values = acqf(torch.rand(3, q, D, dtype=torch.float64))
    assert values.shape == (3,) and bool(torch.isfinite(values).all())
    _check(acqf, q=q)


def test_qkg_optimizes_with_fantasies(exact_path, data):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    acqf = qKnowledgeGradient(model, num_fantasies=3)
    X = torch.rand(2, 1 + 3, D, dtype=torch.float64, requires_grad=True)  # q + fantasies
    value = acqf(X)
    value.sum().backward()
    assert value.shape == (2,) and bool(torch.isfinite(X.grad).all())
    assert X.grad[:, 0].abs().sum() > 0  # through the fantasy model's history
    _check(acqf, q=1)


def test_qnipv_uses_fantasies(exact_path, data):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    mc_points = torch.rand(16, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    acqf = qNegIntegratedPosteriorVariance(model, mc_points=mc_points)
    values = acqf(torch.rand(3, 2, D, dtype=torch.float64))
    assert values.shape == (3,) and bool(torch.isfinite(values).all())
    _check(acqf, q=2)


def test_qmes_with_candidate_set(exact_path, data):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    candidates = torch.rand(50, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    acqf = qMaxValueEntropy(model, candidate_set=candidates, num_mv_samples=4)
    values = acqf(torch.rand(3, 1, D, dtype=torch.float64))
    assert values.shape == (3,) and bool(torch.isfinite(values).all())
    _check(acqf, q=1)


@pytest.mark.parametrize("q", [1, 4])
def test_multi_objective_two_outputs(exact_path, data, q):
    train_X, train_Y = data
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    ref_point = train_Y.min(dim=0).values - 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cache_root is for GPyTorch models
        nehvi = qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=ref_point,
            X_baseline=train_X,
            prune_baseline=True,
            sampler=_sampler(),
            cache_root=False,
        )
    parego = qLogNParEGO(model, X_baseline=train_X, prune_baseline=True, sampler=_sampler())
    for acqf in (nehvi, parego):
        values = acqf(torch.rand(3, q, D, dtype=torch.float64))
        assert values.shape == (3,) and bool(torch.isfinite(values).all())
        _check(acqf, q=q)


def test_float32_model_with_logei(exact_path, data):
    train_X, train_Y = (t.float() for t in data)
    model = TNPKRModel(train_X, train_Y[:, :1], checkpoint=exact_path)
    acqf = LogExpectedImprovement(model, best_f=train_Y[:, 0].max())
    candidate, _ = optimize_acqf(acqf, bounds=BOUNDS.float(), q=1, **FAST)
    assert candidate.dtype == torch.float32
