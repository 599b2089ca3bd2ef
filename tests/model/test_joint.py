"""TNPKRModel(joint="autoregressive"): joint posteriors over a q-batch.

Statistical checks use the shipped checkpoint ``tnpkr-exact`` (a random network has no reason
to correlate nearby points); API and acquisition checks use the tiny random network.
"""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import (
    qExpectedImprovement,
    qKnowledgeGradient,
    qLogNoisyExpectedImprovement,
    qUpperConfidenceBound,
)
from botorch.acquisition.objective import (
    ExpectationPosteriorTransform,
    ScalarizedPosteriorTransform,
)
from botorch.exceptions.errors import UnsupportedError
from botorch.models.transforms.outcome import Log
from botorch.optim import optimize_acqf
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.sampling import IIDNormalSampler, SobolQMCNormalSampler
from botorch.sampling.get_sampler import get_sampler

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.model.joint import TNPKRJointPosterior
from tests.model.helpers import make_data

D = 3
BOUNDS = torch.stack([torch.zeros(D), torch.ones(D)]).double()
FAST = {"num_restarts": 2, "raw_samples": 16, "options": {"maxiter": 5, "batch_limit": 2}}
JOINT = {"joint": "autoregressive"}


def _X(*shape: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _corr(samples: torch.Tensor) -> torch.Tensor:
    """Correlation of the two points of `S x batch x 2 x 1` samples, per batch element."""
    c = samples.squeeze(-1) - samples.squeeze(-1).mean(0)
    return (c[..., 0] * c[..., 1]).mean(0) / c.pow(2).mean(0).prod(-1).sqrt()


@pytest.fixture(scope="module")
def real_model():
    """tnpkr-exact on 24 noisy points of a smooth function in 3 dimensions."""
    train_X = _X(24, D, seed=0)
    train_Y = torch.sin(4.0 * train_X.sum(-1, keepdim=True)) + 0.05 * _X(24, 1, seed=1)
    return TNPKRModel(train_X, train_Y, checkpoint="tnpkr-exact", **JOINT)


# ----------------------------------------------------------------------------- statistics
def test_nearby_points_correlate_and_distant_points_do_not(real_model):
    x1 = _X(6, 1, D, seed=2)
    near = torch.cat([x1, x1 + 1e-4], dim=-2)  # 6 x 2 x d
    far = torch.cat([x1, 1.0 - x1], dim=-2)  # points about sqrt(d)/2 apart on average
    sampler = SobolQMCNormalSampler(torch.Size([1024]), seed=0)
    corr_near = _corr(sampler(real_model.posterior(near)))
    corr_far = _corr(sampler(real_model.posterior(far)))
    assert corr_near.min() > 0.85, corr_near
    # 1/sqrt(1024) = 0.03 is the Monte Carlo error of a zero correlation.
    assert corr_far.abs().max() < 0.15, corr_far
    # Independent mode: no correlation, whatever the distance.
    independent = TNPKRModel(real_model.train_X, real_model.train_Y, checkpoint="tnpkr-exact")
    assert _corr(sampler(independent.posterior(near))).abs().max() < 0.15


def test_marginals_agree_with_the_independent_posterior(real_model):
    X = _X(8, 2, D, seed=4)
    posterior = real_model.posterior(X)
    samples = SobolQMCNormalSampler(torch.Size([1024]), seed=1)(posterior)
    independent = TNPKRModel(real_model.train_X, real_model.train_Y, checkpoint="tnpkr-exact")
    marginal = independent.posterior(X)
    torch.testing.assert_close(posterior.mean, marginal.mean)
    torch.testing.assert_close(posterior.variance, marginal.variance)
    sd = marginal.variance.sqrt()
    # The first point is drawn from its independent predictive: Monte Carlo error only.
    shift = (samples.mean(0) - marginal.mean).abs() / sd
    ratio = samples.var(0) / marginal.variance
    assert shift[:, 0].max() < 0.1 and (ratio[:, 0] - 1).abs().max() < 0.1
    # The second one is a mixture over the first draw: close, not identical (see README).
    assert shift[:, 1].mean() < 0.25 and (ratio[:, 1].mean() - 1).abs() < 0.25


def test_a_duplicated_candidate_adds_less_in_joint_mode(real_model):
    # Ideal: a copy of a candidate adds nothing. The shipped network cannot pin f at an
    # added point (see README), so a copy still adds something, less than when independent.
    independent = TNPKRModel(real_model.train_X, real_model.train_Y, checkpoint="tnpkr-exact")
    sampler = SobolQMCNormalSampler(torch.Size([512]), seed=0)
    incumbent = real_model.train_X[real_model.train_Y.argmax()]
    x = incumbent + 0.1 * (_X(4, 1, D, seed=6) - 0.5)  # 4 candidates near the incumbent
    pair = torch.cat([x, x + 1e-6], dim=-2)
    gains = {}
    for name, model in (("joint", real_model), ("independent", independent)):
        acqf = qExpectedImprovement(model, best_f=real_model.train_Y.max(), sampler=sampler)
        gains[name] = acqf(pair) / acqf(x)
    assert (gains["joint"] < gains["independent"] - 0.15).all(), gains
    assert (gains["independent"] > 1.5).all()


def test_history_points_are_drawn_from_their_marginals(real_model):
    # qLogNEI prunes its baseline with 2,048 samples of a posterior over every history input.
    X = real_model.train_X[:6]
    posterior = real_model.posterior(X)
    base = torch.randn(64, 6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    samples = posterior.rsample_from_base_samples(torch.Size([64]), base)
    expected = posterior.mean + posterior.variance.sqrt() * base
    torch.testing.assert_close(samples, expected)
    # New points after them condition on their draws.
    X_new = torch.cat([X[:2], X[:1] + 1e-4], dim=0)
    samples = SobolQMCNormalSampler(torch.Size([512]), seed=0)(real_model.posterior(X_new))
    assert _corr(samples[:, [0, 2]]) > 0.5


# ----------------------------------------------------------------------------- the API
def test_joint_argument_is_validated_and_carried(exact_path):
    train_X, train_Y = make_data(n=8, d=D)
    with pytest.raises(UnsupportedError, match="joint must be None"):
        TNPKRModel(train_X, train_Y, checkpoint=exact_path, joint="gaussian")
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, **JOINT)
    assert isinstance(model.posterior(_X(2, D)), TNPKRJointPosterior)
    # q = 1: the independent posterior is the joint one.
    assert isinstance(model.posterior(_X(1, D)), GPyTorchPosterior)
    cond = model.condition_on_observations(_X(2, D), torch.zeros(2, 1, dtype=torch.float64))
    sampler = SobolQMCNormalSampler(torch.Size([3]), seed=0)
    fantasy = model.fantasize(_X(2, D), sampler)
    for derived in (cond, fantasy):
        assert isinstance(derived.posterior(_X(2, D)), TNPKRJointPosterior)
    m2 = TNPKRModel(*make_data(n=8, d=D, m=2), checkpoint=exact_path, **JOINT)
    assert isinstance(m2.subset_output([1]).posterior(_X(2, D)), TNPKRJointPosterior)
    plain = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    assert isinstance(plain.posterior(_X(3, D)), GPyTorchPosterior)
    # Known noise: sampled values enter as known-noise tokens.
    known = TNPKRModel(
        train_X, train_Y, torch.full_like(train_Y, 0.01), checkpoint=exact_path, **JOINT
    )
    posterior = known.posterior(_X(3, D))
    assert posterior._known_noise is not None and model.posterior(_X(3, D))._known_noise is None
    assert torch.isfinite(sampler(posterior)).all()


@pytest.mark.parametrize(
    ("x_shape", "batch", "m"),
    [((3, D), (), 1), ((4, 3, D), (), 2), ((2, 4, 3, D), (), 1), ((4, 1, 3, D), (2,), 1)],
)
def test_shapes_samplers_and_determinism(exact_path, x_shape, batch, m):
    train_X, train_Y = make_data(n=8, d=D, m=m, batch=batch)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, **JOINT)
    X = _X(*x_shape)
    posterior = model.posterior(X)
    out_batch = torch.broadcast_shapes(torch.Size(x_shape[:-2]), torch.Size(batch))
    assert posterior.mean.shape == (*out_batch, 3, m) == posterior.variance.shape
    assert posterior.base_sample_shape == (*out_batch, 3, m)
    sampler = get_sampler(posterior, torch.Size([5]), seed=0)
    assert isinstance(sampler, SobolQMCNormalSampler)
    samples = sampler(posterior)
    assert samples.shape == (5, *out_batch, 3, m)
    torch.testing.assert_close(sampler(model.posterior(X)), samples, rtol=0, atol=0)
    iid = IIDNormalSampler(torch.Size([2, 4]), seed=0)(posterior)
    assert iid.shape == (2, 4, *out_batch, 3, m)
    assert posterior.rsample(torch.Size([2])).shape == (2, *out_batch, 3, m)
    cov = posterior.covariance_matrix
    assert cov.shape == (*out_batch, 3 * m, 3 * m)
    torch.testing.assert_close(
        cov.diagonal(dim1=-2, dim2=-1), posterior.variance.reshape(*out_batch, 3 * m)
    )
    assert torch.linalg.eigvalsh(cov).min() > -1e-9
    mvn = posterior.mvn
    torch.testing.assert_close(mvn.covariance_matrix, cov)
    assert mvn.mean.shape == ((*out_batch, 3) if m == 1 else (*out_batch, 3, m))


def test_samples_are_differentiable_in_X(exact_path):
    model = TNPKRModel(*make_data(n=8, d=D), checkpoint=exact_path, **JOINT)
    X = _X(2, 3, D).requires_grad_(True)
    samples = SobolQMCNormalSampler(torch.Size([4]), seed=0)(model.posterior(X))
    (grad,) = torch.autograd.grad(samples[..., 2, :].sum(), X)
    assert torch.isfinite(grad).all()
    # The last point depends on the earlier ones through their sampled values.
    assert grad[:, :2].abs().sum() > 0


def test_observation_noise_adds_independent_noise(exact_path):
    train_X, train_Y = make_data(n=8, d=D)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, **JOINT)
    X = _X(3, D)
    latent, noisy = model.posterior(X), model.posterior(X, observation_noise=True)
    assert noisy.base_sample_shape == (3, 1, 2)
    assert (noisy.variance > latent.variance).all()
    base = torch.randn(
        2048, 3, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    f = latent.rsample_from_base_samples(torch.Size([2048]), base[..., 0])
    y = noisy.rsample_from_base_samples(torch.Size([2048]), base)
    added = (noisy.variance - latent.variance).sqrt()
    torch.testing.assert_close(y - f, added * base[..., 1])
    noise = torch.full((3, 1), 0.3, dtype=torch.float64)
    given = model.posterior(X, observation_noise=noise)
    std2 = model.outcome_transform.stdvs.squeeze() ** 2
    torch.testing.assert_close(given.variance - latent.variance, (0.3 * std2).expand(3, 1))


def test_outcome_and_posterior_transforms(exact_path):
    train_X, train_Y = make_data(n=10, d=D, m=2)
    train_Y = 100.0 + 50.0 * train_Y
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, **JOINT)
    X = _X(4, 2, D)
    sampler = SobolQMCNormalSampler(torch.Size([512]), seed=0)
    posterior = model.posterior(X)
    samples = sampler(posterior)
    # Samples are in the units of train_Y (Standardize undone); the first point is exact.
    z = (samples.mean(0) - posterior.mean) / posterior.variance.sqrt()
    assert z[:, 0].abs().max() < 0.1
    one = model.posterior(X, output_indices=[1])
    assert sampler(one).shape == (512, 4, 2, 1)
    weights = torch.tensor([0.25, 0.75], dtype=torch.float64)
    scalarized = model.posterior(X, posterior_transform=ScalarizedPosteriorTransform(weights))
    s = SobolQMCNormalSampler(torch.Size([512]), seed=0)(scalarized)
    torch.testing.assert_close(s, samples @ weights.unsqueeze(-1))
    torch.testing.assert_close(scalarized.mean, posterior.mean @ weights.unsqueeze(-1))
    with pytest.raises(UnsupportedError, match="ScalarizedPosteriorTransform only"):
        model.posterior(X, posterior_transform=ExpectationPosteriorTransform(n_w=2))
    logged = TNPKRModel(train_X, train_Y, checkpoint=exact_path, outcome_transform=Log(), **JOINT)
    assert (sampler(logged.posterior(X)) > 0).all()


# ----------------------------------------------------------------------------- acquisitions
@pytest.mark.parametrize("name", ["qLogNEI", "qEI", "qUCB", "qKG"])
def test_acquisitions_optimise_in_joint_mode(exact_path, name):
    torch.manual_seed(0)
    train_X, train_Y = make_data(n=10, d=D)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, **JOINT)
    sampler = SobolQMCNormalSampler(torch.Size([8]), seed=0)
    if name == "qLogNEI":
        acqf = qLogNoisyExpectedImprovement(
            model, X_baseline=train_X, sampler=sampler, prune_baseline=True
        )
    elif name == "qEI":
        acqf = qExpectedImprovement(model, best_f=train_Y.max(), sampler=sampler)
    elif name == "qUCB":
        acqf = qUpperConfidenceBound(model, beta=0.2, sampler=sampler)
    else:
        acqf = qKnowledgeGradient(model, num_fantasies=2)
    candidate, value = optimize_acqf(acqf, bounds=BOUNDS, q=2, **FAST)
    assert candidate.shape == (2, D) and torch.isfinite(value).all()
    assert ((candidate >= 0) & (candidate <= 1)).all()
