"""Posterior of TNPKRModel: shapes for every input rank, dtypes, outputs, noise, transforms."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.exceptions.errors import UnsupportedError
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Log, Standardize
from botorch.optim import optimize_acqf
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.posteriors.transformed import TransformedPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DiagLinearOperator

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.model.layout import contexts
from tests.model.helpers import make_data, tiny_network

DTYPES = [torch.float32, torch.float64]
X_SHAPES = [(5,), (2, 3), (3, 2, 4)]  # `n x d`, `b x q x d`, `b1 x b2 x q x d` without d


def _X(batch_q: tuple[int, ...], d: int, dtype: torch.dtype, seed: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*batch_q, d, generator=gen, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("train_batch", [(), (2,)])
def test_posterior_shapes_every_rank(exact_path, dtype, m, train_batch):
    train_X, train_Y = make_data(n=10, d=3, m=m, batch=train_batch, dtype=dtype)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    assert model.num_outputs == m and model.batch_shape == torch.Size(train_batch)
    for shape in X_SHAPES:
        X = _X(shape, 3, dtype)
        post = model.posterior(X)
        out_batch = torch.broadcast_shapes(torch.Size(shape[:-1]), torch.Size(train_batch))
        expected = torch.Size([*out_batch, shape[-1], m])
        assert isinstance(post, GPyTorchPosterior)
        assert post.mean.shape == expected and post.variance.shape == expected
        assert post.mean.dtype == dtype
        assert bool((post.variance > 0).all())
        dist = post.distribution
        if m == 1:
            assert type(dist) is MultivariateNormal
            assert isinstance(dist.lazy_covariance_matrix, DiagLinearOperator)
        else:
            assert isinstance(dist, MultitaskMultivariateNormal) and dist._interleaved
        samples = post.rsample(torch.Size([2]))
        assert samples.shape == torch.Size([2, *expected])


def test_posterior_batch_dims_and_outputs_are_independent_tasks(exact_path):
    """Each (batch, output) of a batched multi-output model equals its own single model."""
    train_X, train_Y = make_data(n=9, d=2, m=2, batch=(2,))
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    X = _X((4, 1), 2, torch.float64)  # 4 x 1 x 2 -> broadcast to 4 x 2 (model batch) x 1
    post = model.posterior(X.unsqueeze(-3).expand(4, 2, 1, 2))
    for b in range(2):
        for j in range(2):
            single = TNPKRModel(train_X[b], train_Y[b, :, j : j + 1], checkpoint=exact_path)
            ref = single.posterior(X)
            torch.testing.assert_close(post.mean[:, b, :, j], ref.mean[..., 0])
            torch.testing.assert_close(post.variance[:, b, :, j], ref.variance[..., 0])


def test_posterior_matches_the_network_in_original_units(exact_path):
    """Standardize in, network, Standardize out: the model adds nothing else."""
    train_X, train_Y = make_data(n=11, d=2)
    train_Y = 5.0 + 3.0 * train_Y
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path, encode_dtype=None)
    network = tiny_network("softmax").double()
    tf = Standardize(m=1)
    Y_tf, _ = tf(train_Y)
    X = _X((6,), 2, torch.float64)
    pred = network(train_X.unsqueeze(0), Y_tf.squeeze(-1).unsqueeze(0), X.unsqueeze(0))
    std = tf.stdvs.squeeze()
    post = model.posterior(X)
    torch.testing.assert_close(post.mean.squeeze(-1), tf.means.squeeze() + std * pred.mean[0])
    torch.testing.assert_close(post.variance.squeeze(-1), std**2 * pred.fvar[0])
    noisy = model.posterior(X, observation_noise=True)
    torch.testing.assert_close(noisy.variance.squeeze(-1), std**2 * pred.yvar[0])


def test_posterior_reuses_the_cache(exact_path, monkeypatch):
    train_X, train_Y = make_data(n=8, d=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    calls = []
    original = model.network.encode
    monkeypatch.setattr(
        model.network, "encode", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    for _ in range(3):
        model.posterior(_X((4, 1), 2, torch.float64))
    # Analytic acquisition functions call ``self.to(X)`` on every evaluation.
    acqf = LogExpectedImprovement(model, best_f=train_Y.max())
    bounds = torch.stack([torch.zeros(2), torch.ones(2)]).double()
    optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=2, raw_samples=8)
    model.to(torch.float64)
    model.posterior(_X((4, 1), 2, torch.float64))
    assert calls == []
    model.to(torch.float32).posterior(_X((4, 1), 2, torch.float32))
    assert calls == [1]


def test_output_indices_and_subset_output(exact_path):
    train_X, train_Y = make_data(n=10, d=2, m=3)
    train_Yvar = torch.full_like(train_Y, 0.01)
    model = TNPKRModel(train_X, train_Y, train_Yvar=train_Yvar, checkpoint=exact_path)
    X = _X((4, 2), 2, torch.float64)
    full = model.posterior(X)
    part = model.posterior(X, output_indices=[2, 0])
    assert part.mean.shape == torch.Size([4, 2, 2])
    torch.testing.assert_close(part.mean, full.mean[..., [2, 0]])
    torch.testing.assert_close(part.variance, full.variance[..., [2, 0]])
    one = model.posterior(X, output_indices=[1])
    assert type(one.distribution) is MultivariateNormal
    sub = model.subset_output([2, 0])
    assert sub.num_outputs == 2 and sub.train_Yvar.shape[-1] == 2
    torch.testing.assert_close(sub.posterior(X).mean, part.mean)
    torch.testing.assert_close(sub.posterior(X).variance, part.variance)
    assert model.subset_output([1]).posterior(X).mean.shape == torch.Size([4, 2, 1])


def test_observation_noise_false_true_and_tensor(exact_path):
    train_X, train_Y = make_data(n=10, d=2)
    train_Y = 4.0 * train_Y  # Standardize has a non-trivial scale
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    X = _X((3, 2), 2, torch.float64)
    latent = model.posterior(X).variance
    noisy = model.posterior(X, observation_noise=True).variance
    assert bool((noisy > latent).all())
    std2 = model.outcome_transform.stdvs.squeeze() ** 2
    noise = torch.tensor(0.3, dtype=torch.float64)
    for given in (noise.expand(3, 2, 1), noise.expand(1, 1), noise.expand(3, 2)):
        added = model.posterior(X, observation_noise=given).variance
        # BoTorch's convention: a noise tensor is in the outcome-transformed space.
        torch.testing.assert_close(added, latent + std2 * 0.3)


def test_known_noise_is_used(exact_path):
    train_X, train_Y = make_data(n=10, d=2)
    X = _X((5,), 2, torch.float64)
    inferred = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    small = TNPKRModel(train_X, train_Y, torch.full_like(train_Y, 1e-4), checkpoint=exact_path)
    large = TNPKRModel(train_X, train_Y, torch.full_like(train_Y, 0.5), checkpoint=exact_path)
    for a, b in ((inferred, small), (small, large)):
        assert not torch.allclose(a.posterior(X).mean, b.posterior(X).mean)
    # observation_noise=True adds the mean known noise level (in original units).
    latent = large.posterior(X).variance
    noisy = large.posterior(X, observation_noise=True).variance
    torch.testing.assert_close(noisy, latent + 0.5)


def test_normalize_on_raw_inputs_equals_unit_cube_inputs(exact_path):
    train_X, train_Y = make_data(n=12, d=3)
    lower = torch.tensor([-5.0, 0.0, 100.0], dtype=torch.float64)
    upper = torch.tensor([5.0, 2.0, 300.0], dtype=torch.float64)
    bounds = torch.stack([lower, upper])
    raw = lower + (upper - lower) * train_X
    unit = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    scaled = TNPKRModel(
        raw, train_Y, input_transform=Normalize(d=3, bounds=bounds), checkpoint=exact_path
    )
    X = _X((4, 2), 3, torch.float64)
    X_raw = lower + (upper - lower) * X
    torch.testing.assert_close(
        scaled.posterior(X_raw).mean, unit.posterior(X).mean, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        scaled.posterior(X_raw).variance, unit.posterior(X).variance, atol=1e-6, rtol=0
    )
    # Learnt bounds: same as the data's own min-max scaling, without warnings.
    learnt = TNPKRModel(raw, train_Y, input_transform=Normalize(d=3), checkpoint=exact_path)
    lo, hi = raw.min(0).values, raw.max(0).values
    ref = TNPKRModel((raw - lo) / (hi - lo), train_Y, checkpoint=exact_path)
    torch.testing.assert_close(
        learnt.posterior(X_raw).mean,
        ref.posterior((X_raw - lo) / (hi - lo)).mean,
        atol=1e-6,
        rtol=0,
    )


def test_no_warning_and_no_double_transform_on_eval_train(exact_path, recwarn):
    train_X, train_Y = make_data(n=8, d=2)
    model = TNPKRModel(
        10.0 * train_X, train_Y, input_transform=Normalize(d=2), checkpoint=exact_path
    )
    X = _X((3, 1), 2, torch.float64) * 10.0
    before = model.posterior(X).mean
    model.train()
    model.eval()
    model.train()
    torch.testing.assert_close(model.posterior(X).mean, before)
    assert torch.equal(model.train_X, 10.0 * train_X)
    assert not [w for w in recwarn if "transform" in str(w.message).lower()]


def test_nonlinear_outcome_transform_goes_through_untransform_posterior(exact_path):
    train_X, train_Y = make_data(n=10, d=2, m=2)
    X = _X((4, 1), 2, torch.float64)
    model = TNPKRModel(train_X, train_Y.exp(), outcome_transform=Log(), checkpoint=exact_path)
    post = model.posterior(X)
    assert isinstance(post, TransformedPosterior) and post.mean.shape == torch.Size([4, 1, 2])
    raw = TNPKRModel(train_X, train_Y, outcome_transform=None, checkpoint=exact_path).posterior(X)
    torch.testing.assert_close(post.mean, (raw.mean + raw.variance / 2).exp())  # log-normal
    with pytest.raises(UnsupportedError, match="subset_output"):
        model.posterior(X, output_indices=[0])
    assert model.subset_output([1]).posterior(X).mean.shape == torch.Size([4, 1, 1])


def test_posterior_transform_scalarizes(exact_path):
    train_X, train_Y = make_data(n=10, d=2, m=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    X = _X((4, 1), 2, torch.float64)
    post = model.posterior(X, posterior_transform=ScalarizedPosteriorTransform(weights))
    full = model.posterior(X)
    assert post.mean.shape == torch.Size([4, 1, 1])
    torch.testing.assert_close(post.mean.squeeze(-1), full.mean @ weights)
    torch.testing.assert_close(post.variance.squeeze(-1), full.variance @ weights**2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path_name", ["exact_path", "dka_path"])
def test_gradients_wrt_X_are_finite_and_nonzero(request, dtype, path_name):
    train_X, train_Y = make_data(n=10, d=2, m=2, dtype=dtype)
    model = TNPKRModel(train_X, train_Y, checkpoint=request.getfixturevalue(path_name))
    X = _X((3, 2), 2, dtype).requires_grad_(True)
    post = model.posterior(X, observation_noise=True)
    (post.mean.sum() + post.variance.sqrt().sum()).backward()
    assert X.grad is not None and bool(torch.isfinite(X.grad).all())
    assert bool((X.grad.abs().sum(-1) > 0).all())


def test_network_copy_follows_data_dtype_and_checkpoint_instance_is_untouched(exact_path):
    network = tiny_network("softmax")
    train_X, train_Y = make_data(n=6, d=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=network)
    assert model.network is not network
    assert next(model.network.parameters()).dtype == torch.float64
    assert next(network.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in model.network.parameters())
    model32 = TNPKRModel(train_X.float(), train_Y.float(), checkpoint=exact_path)
    assert model32.posterior(train_X[:3].float()).mean.dtype == torch.float32


def test_scan_mode_above_threshold_gives_the_same_posterior(exact_path):
    train_X, train_Y = make_data(n=20, d=2)
    X = _X((4, 1), 2, torch.float64)
    softmax = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    scan = TNPKRModel(train_X, train_Y, checkpoint=exact_path, scan_above=10)
    modes = {getattr(mod, "mode", None) for mod in scan.network.modules()} - {None}
    assert modes == {"scan"}
    torch.testing.assert_close(scan.posterior(X).mean, softmax.posterior(X).mean)


def test_contexts_layout_orders_batch_then_output():
    X, Y = make_data(n=4, d=2, m=3, batch=(2,))
    xc, yc, yvar = contexts(X, Y, Y.abs())
    assert xc.shape == (6, 4, 2) and yc.shape == (6, 4) and yvar.shape == (6, 4)
    torch.testing.assert_close(yc[4], Y[1, :, 1])
    torch.testing.assert_close(xc[4], X[1])


def test_float32_encoding_matches_float64_and_keeps_the_data_dtype(exact_path):
    train_X, train_Y = make_data(n=20, d=3)
    fast = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    exact = TNPKRModel(train_X, train_Y, checkpoint=exact_path, encode_dtype=None)
    assert next(fast.network.parameters()).dtype == torch.float64
    assert fast._context().y_loc.dtype == torch.float64
    X = _X((4, 2), 3, torch.float64).requires_grad_(True)
    a, b = fast.posterior(X), exact.posterior(X)
    assert a.mean.dtype == torch.float64
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.variance, b.variance, rtol=1e-4, atol=1e-6)
    assert not torch.equal(a.mean, b.mean)  # the encodings really differ in dtype
    (grad,) = torch.autograd.grad(a.mean.sum(), X)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
