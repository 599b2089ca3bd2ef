"""TNPKRModel under BoTorch usage patterns beyond the basic posterior/acquisition tests.

Each test pins down a behaviour that was broken or unspecified: input transforms with
parameters (``Warp``), transforms that change the input dimension (``AppendFeatures``),
empty q-batches, and the typed errors of what the model does not support.
"""

from __future__ import annotations

import copy

import pytest
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective import (
    qLogExpectedHypervolumeImprovement,
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.exceptions.errors import BotorchTensorDimensionError
from botorch.exceptions.warnings import InputDataWarning
from botorch.models import SingleTaskGP
from botorch.models.model import ModelList
from botorch.models.transforms.input import (
    AppendFeatures,
    ChainedInputTransform,
    InputPerturbation,
    Normalize,
    Warp,
)
from botorch.models.transforms.outcome import (
    Bilog,
    ChainedOutcomeTransform,
    Log,
    Power,
    Standardize,
)
from botorch.optim import optimize_acqf
from botorch.posteriors.transformed import TransformedPosterior
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.box_decompositions import FastNondominatedPartitioning

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.model.dedupe import carries_grad
from tests.model.helpers import make_data

UNIT = torch.stack([torch.zeros(2), torch.ones(2)]).double()
FAST = {"num_restarts": 2, "raw_samples": 16, "options": {"maxiter": 5, "batch_limit": 4}}


def _X(*shape: int, seed: int = 7) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _finite_difference(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            step = torch.zeros(x.numel(), dtype=x.dtype)
            step[i] = eps
            step = step.view_as(x)
            grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("chained", [False, True])
def test_input_transform_with_parameters_does_not_tie_the_cache_to_a_graph(exact_path, chained):
    """``Warp`` has learnable parameters. The model has no fitting step, so they are constants
    of the encoding: the history's cache must not hold an autograd graph into them (a second
    ``backward`` through two posteriors failed, ``deepcopy`` failed, repeated rows were never
    memoised)."""
    train_X, train_Y = make_data(n=10, d=2)
    lo = torch.tensor([-2.0, 10.0], dtype=torch.float64)
    hi = torch.tensor([3.0, 50.0], dtype=torch.float64)
    warp = Warp(d=2, indices=[0, 1])
    if chained:
        bounds = torch.stack([lo, hi])
        tf = ChainedInputTransform(norm=Normalize(d=2, bounds=bounds), warp=warp)
        train_X = lo + (hi - lo) * train_X
    else:
        tf = warp
    model = TNPKRModel(train_X, train_Y, input_transform=tf, checkpoint=exact_path)
    assert not carries_grad(model._cache)
    scale = (hi - lo) if chained else torch.ones(2, dtype=torch.float64)
    offset = lo if chained else torch.zeros(2, dtype=torch.float64)
    for seed in (1, 2):  # two independent backward passes
        X = (offset + scale * _X(3, 1, 2, seed=seed)).requires_grad_(True)
        post = model.posterior(X)
        (post.mean.sum() + post.variance.sqrt().sum()).backward()
        assert X.grad is not None and bool(torch.isfinite(X.grad).all())

    def f(x: torch.Tensor) -> torch.Tensor:
        post = model.posterior(x)
        return post.mean.sum() + post.variance.sqrt().sum()

    X = (offset + scale * _X(2, 1, 2, seed=3)).requires_grad_(True)
    f(X).backward()
    fd = _finite_difference(f, X.detach(), eps=1e-6 * float(scale.max()))
    torch.testing.assert_close(X.grad, fd, atol=1e-6, rtol=1e-4)
    twin = copy.deepcopy(model)
    X = offset + scale * _X(4, 1, 2)
    torch.testing.assert_close(twin.posterior(X).mean, model.posterior(X).mean)


@pytest.mark.parametrize("m", [1, 2])
def test_empty_q_batch_gives_an_empty_posterior(exact_path, m):
    """``X`` of `batch x 0 x d` is legal in BoTorch (``SingleTaskGP`` answers it)."""
    train_X, train_Y = make_data(n=8, d=2, m=m, batch=(2,))
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    post = model.posterior(torch.zeros(3, 2, 0, 2, dtype=torch.float64), observation_noise=True)
    assert post.mean.shape == post.variance.shape == torch.Size([3, 2, 0, m])
    assert post.rsample(torch.Size([4])).shape == torch.Size([4, 3, 2, 0, m])


def test_input_transforms_that_change_the_test_points(exact_path):
    """``AppendFeatures`` (test points get the environmental columns of the history
    appended, as in robust BO) and ``InputPerturbation`` (each test point becomes ``n_w``
    perturbed points): the posterior is over the transformed points, as for BoTorch's GPs."""
    train_X, train_Y = make_data(n=10, d=3)
    features = _X(4, 1, seed=2)
    model = TNPKRModel(
        train_X,
        train_Y,
        input_transform=AppendFeatures(feature_set=features),
        checkpoint=exact_path,
    )
    plain = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    X = _X(5, 2, 2)  # two columns: the third is appended
    post = model.posterior(X)
    assert post.mean.shape == torch.Size([5, 8, 1])
    full = torch.cat([X.repeat_interleave(4, dim=-2), features.repeat(5, 2, 1)], dim=-1)
    torch.testing.assert_close(post.mean, plain.posterior(full).mean)
    with pytest.raises(BotorchTensorDimensionError, match="input transform"):
        model.posterior(_X(5, 2, 1))
    with pytest.raises(BotorchTensorDimensionError, match="d=3"):
        plain.posterior(X)

    perturbations = 0.01 * _X(3, 3, seed=4)
    model = TNPKRModel(
        train_X,
        train_Y,
        input_transform=InputPerturbation(perturbations),
        checkpoint=exact_path,
    )
    X = _X(5, 2, 3)
    post = model.posterior(X)
    assert post.mean.shape == torch.Size([5, 6, 1])
    shifted = (X.unsqueeze(-2) + perturbations).reshape(5, 6, 3)
    torch.testing.assert_close(post.mean, plain.posterior(shifted).mean)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inputs_far_outside_the_unit_cube_give_finite_far_field_predictions(exact_path, dtype):
    """The network was trained on the unit cube; far from it its prediction saturates (the
    far-field prediction). Inputs beyond 1e6 are clamped there: in float32 (and in the
    float32 encoding of float64 data) inputs of 1e30 made every prediction NaN."""
    train_X, train_Y = make_data(n=8, d=2, dtype=dtype)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    far = model.posterior(torch.tensor([[[1e30, -1e30]], [[1e6, -1e6]]], dtype=dtype))
    assert bool(torch.isfinite(far.mean).all()) and bool(torch.isfinite(far.variance).all())
    torch.testing.assert_close(far.mean[0], far.mean[1])
    near = model.posterior(torch.tensor([[[1e4, -1e4]]], dtype=dtype))
    torch.testing.assert_close(near.mean[0], far.mean[0], atol=1e-3, rtol=1e-3)
    history_X = train_X.clone()
    history_X[0] = torch.tensor([1e30, 5.0], dtype=dtype)
    with pytest.warns(InputDataWarning, match="unit cube"):
        model = TNPKRModel(history_X, train_Y, checkpoint=exact_path)
    post = model.posterior(_X(3, 1, 2).to(dtype))
    assert bool(torch.isfinite(post.mean).all()) and bool(torch.isfinite(post.variance).all())


@pytest.mark.parametrize(
    "make_transform",
    [
        lambda: ChainedOutcomeTransform(log=Log(), standardize=Standardize(m=1)),
        lambda: Power(power=0.5),
        lambda: Bilog(),
    ],
    ids=["log-standardize", "power", "bilog"],
)
def test_nonlinear_outcome_transforms_give_transformed_posteriors(exact_path, make_transform):
    """As in BoTorch's GPs: the posterior of a non-linear outcome transform is a
    ``TransformedPosterior`` in the data's units, and MC acquisitions optimise on it."""
    train_X, train_Y = make_data(n=10, d=2)
    train_Y = train_Y.exp()  # positive, for Log and Power
    model = TNPKRModel(train_X, train_Y, outcome_transform=make_transform(), checkpoint=exact_path)
    post = model.posterior(_X(4, 1, 2), observation_noise=True)
    assert isinstance(post, TransformedPosterior)
    samples = post.rsample(torch.Size([8]))
    assert samples.shape == torch.Size([8, 4, 1, 1]) and bool(torch.isfinite(samples).all())
    if isinstance(model.outcome_transform, ChainedOutcomeTransform):
        assert bool((samples > 0).all())  # exp of the network's samples
    acqf = qLogNoisyExpectedImprovement(model, X_baseline=train_X)
    candidate, value = optimize_acqf(acqf, bounds=UNIT, q=2, **FAST)
    assert candidate.shape == (2, 2) and bool(torch.isfinite(value))


def test_model_list_with_a_gp_for_multi_objective_bo(exact_path):
    """``ModelList(TNPKRModel, SingleTaskGP)`` with raw-unit inputs (``Normalize`` in each
    model) under qLogNEHVI and qLogEHVI, optimised over the raw bounds."""
    train_X, train_Y = make_data(n=10, d=2, m=2)
    lo = torch.tensor([-2.0, 10.0], dtype=torch.float64)
    hi = torch.tensor([3.0, 50.0], dtype=torch.float64)
    bounds = torch.stack([lo, hi])
    raw = lo + (hi - lo) * train_X
    tnpkr = TNPKRModel(
        raw, train_Y[:, :1], input_transform=Normalize(d=2, bounds=bounds), checkpoint=exact_path
    )
    gp = SingleTaskGP(raw, train_Y[:, 1:], input_transform=Normalize(d=2, bounds=bounds))
    model = ModelList(tnpkr, gp)
    assert model.num_outputs == 2
    ref_point = train_Y.min(0).values - 0.1
    nehvi = qLogNoisyExpectedHypervolumeImprovement(
        model, ref_point=ref_point, X_baseline=raw, prune_baseline=True
    )
    with torch.no_grad():
        observed = model.posterior(raw).mean
    ehvi = qLogExpectedHypervolumeImprovement(
        model,
        ref_point=ref_point,
        partitioning=FastNondominatedPartitioning(ref_point=ref_point, Y=observed),
    )
    for acqf in (nehvi, ehvi):
        candidate, value = optimize_acqf(acqf, bounds=bounds, q=2, **FAST)
        assert candidate.shape == (2, 2) and bool(torch.isfinite(value))
        assert bool(((candidate >= lo) & (candidate <= hi)).all())


def test_fantasies_with_known_noise_feed_mc_acquisitions(exact_path):
    """``fantasize(observation_noise=...)`` (outcome-transformed space) on a known-noise
    model, then qLogNEI on the fantasy model, with gradients to the candidates."""
    train_X, train_Y = make_data(n=8, d=2)
    train_Y = 5.0 + 3.0 * train_Y
    model = TNPKRModel(train_X, train_Y, torch.full_like(train_Y, 0.02), checkpoint=exact_path)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([3]), seed=0)
    noise = torch.full((1, 1), 0.01, dtype=torch.float64)
    fantasy = model.fantasize(_X(2, 2), sampler, observation_noise=noise)
    assert fantasy.batch_shape == torch.Size([3])
    std2 = model.outcome_transform.stdvs.squeeze() ** 2
    torch.testing.assert_close(fantasy.train_Yvar[:, 8:, 0], (0.01 * std2).expand(3, 2))
    acqf = qLogNoisyExpectedImprovement(fantasy, X_baseline=train_X, prune_baseline=False)
    X = _X(4, 1, 1, 2).requires_grad_(True)
    value = acqf(X)
    assert value.shape == torch.Size([4, 3]) and bool(torch.isfinite(value).all())
    value.sum().backward()
    assert X.grad is not None and bool(torch.isfinite(X.grad).all())


@pytest.mark.parametrize("known_noise", [False, True])
def test_degenerate_but_legal_histories(exact_path, known_noise):
    """One point, repeated inputs with different outcomes, constant outcomes: finite
    posteriors with positive variances (nothing to invert, unlike a GP)."""
    train_X, train_Y = make_data(n=6, d=2, m=2)
    repeated_X = torch.cat([train_X, train_X[:2]])
    repeated_Y = torch.cat([train_Y, train_Y[:2] + 1.0])
    histories = [
        (train_X[:1], train_Y[:1]),
        (repeated_X, repeated_Y),
        (train_X, torch.ones_like(train_Y)),
    ]
    for X_hist, Y_hist in histories:
        Yvar = torch.full_like(Y_hist, 0.01) if known_noise else None
        model = TNPKRModel(X_hist, Y_hist, Yvar, checkpoint=exact_path)
        post = model.posterior(torch.cat([X_hist[:2].unsqueeze(-2), _X(3, 1, 2)]))
        assert bool(torch.isfinite(post.mean).all())
        assert bool((post.variance > 0).all()) and bool(torch.isfinite(post.variance).all())
