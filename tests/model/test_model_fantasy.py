"""condition_on_observations, fantasize, state dicts and moves of TNPKRModel."""

from __future__ import annotations

import pytest
import torch
from botorch.models.transforms.input import Normalize
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from tests.model.helpers import make_data, tiny_network


def _X(*shape: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_condition_on_observations_equals_a_model_on_the_joint_data(exact_path):
    train_X, train_Y = make_data(n=14, d=2, m=2)
    train_Y = 3.0 + 2.0 * train_Y
    model = TNPKRModel(train_X[:10], train_Y[:10], checkpoint=exact_path)
    cond = model.condition_on_observations(train_X[10:], train_Y[10:])
    assert cond is not model and model.train_X.shape[-2] == 10 and cond.train_X.shape[-2] == 14
    # Same Standardize constants as the parent (nothing is re-learnt) -> compare through them.
    ref = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    ref.outcome_transform.load_state_dict(model.outcome_transform.state_dict())
    ref._cache = None
    X = _X(4, 1, 2)
    torch.testing.assert_close(cond.posterior(X).mean, ref.posterior(X).mean)
    torch.testing.assert_close(cond.posterior(X).variance, ref.posterior(X).variance)
    assert not torch.allclose(cond.posterior(X).mean, model.posterior(X).mean)


def test_condition_on_observations_with_batches_and_known_noise(exact_path):
    train_X, train_Y = make_data(n=8, d=2)
    model = TNPKRModel(train_X, train_Y, torch.full_like(train_Y, 0.01), checkpoint=exact_path)
    X_new, Y_new = _X(3, 2, 2), torch.randn(5, 3, 2, 1, dtype=torch.float64)
    cond = model.condition_on_observations(X_new, Y_new)  # Y has an extra leading batch dim
    assert cond.batch_shape == torch.Size([5, 3])
    assert cond.train_X.shape == (5, 3, 10, 2) and cond.train_Yvar.shape == (5, 3, 10, 1)
    torch.testing.assert_close(
        cond.train_Yvar[..., 8:, :], torch.full((5, 3, 2, 1), 0.01, dtype=torch.float64)
    )
    # A given noise tensor is in the outcome-transformed space (BoTorch's convention).
    noise = torch.full((3, 2, 1), 0.5, dtype=torch.float64)
    cond = model.condition_on_observations(X_new, Y_new, noise=noise)
    std2 = model.outcome_transform.stdvs.squeeze() ** 2
    torch.testing.assert_close(cond.train_Yvar[0, 0, 8:, 0], (0.5 * std2).expand(2))
    assert cond.posterior(_X(4, 5, 3, 1, 2)).mean.shape == torch.Size([4, 5, 3, 1, 1])


def test_condition_without_known_noise_warns_about_ignored_noise(exact_path):
    train_X, train_Y = make_data(n=8, d=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    with pytest.warns(UserWarning, match="not used"):
        cond = model.condition_on_observations(
            _X(2, 2),
            torch.zeros(2, 1, dtype=torch.float64),
            noise=torch.ones(2, 1, dtype=torch.float64),
        )
    assert cond.train_Yvar is None


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("known_noise", [False, True])
def test_fantasize_shapes(exact_path, m, known_noise):
    train_X, train_Y = make_data(n=8, d=2, m=m)
    Yvar = torch.full_like(train_Y, 0.02) if known_noise else None
    model = TNPKRModel(train_X, train_Y, Yvar, checkpoint=exact_path)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([3]), seed=0)
    X = _X(4, 2, 2)  # b x q x d
    fantasy = model.fantasize(X, sampler)
    assert fantasy.batch_shape == torch.Size([3, 4])
    assert fantasy.train_X.shape == (3, 4, 10, 2) and fantasy.train_Y.shape == (3, 4, 10, m)
    post = fantasy.posterior(_X(3, 4, 1, 2))
    assert post.mean.shape == torch.Size([3, 4, 1, m])
    assert fantasy.posterior(_X(5, 3, 4, 2, 2)).mean.shape == torch.Size([5, 3, 4, 2, m])
    # Fantasies of a fantasy: the batch dims keep growing.
    again = fantasy.fantasize(_X(3, 4, 1, 2), SobolQMCNormalSampler(sample_shape=torch.Size([2])))
    assert again.batch_shape == torch.Size([2, 3, 4])


def test_fantasize_propagates_gradients_to_the_fantasy_points(exact_path):
    train_X, train_Y = make_data(n=8, d=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    X = _X(2, 1, 2).requires_grad_(True)
    fantasy = model.fantasize(X, SobolQMCNormalSampler(sample_shape=torch.Size([2]), seed=1))
    fantasy.posterior(_X(2, 2, 1, 2)).mean.sum().backward()
    assert X.grad is not None and bool(torch.isfinite(X.grad).all()) and X.grad.abs().sum() > 0


def test_state_dict_loads_into_a_model_with_fewer_points(exact_path):
    train_X, train_Y = make_data(n=12, d=2)
    full = TNPKRModel(train_X, train_Y, input_transform=Normalize(d=2), checkpoint=exact_path)
    state = full.state_dict()
    assert not any(k.startswith("train_") for k in state)
    assert any(k.startswith("network.") for k in state)
    fold = TNPKRModel(
        train_X[:-1], train_Y[:-1], input_transform=Normalize(d=2), checkpoint=exact_path
    )
    X = _X(3, 1, 2)
    before = fold.posterior(X).mean
    fold.load_state_dict(state)
    after = fold.posterior(X).mean  # re-encoded with the loaded transforms
    assert not torch.allclose(before, after)
    # The history is stored untransformed, so predictions are those of an n-1 model with the
    # full model's transforms.
    ref = TNPKRModel(
        train_X[:-1], train_Y[:-1], input_transform=Normalize(d=2), checkpoint=exact_path
    )
    ref.input_transform.load_state_dict(full.input_transform.state_dict())
    ref.outcome_transform.load_state_dict(full.outcome_transform.state_dict())
    ref._cache = None
    torch.testing.assert_close(after, ref.posterior(X).mean)


def test_load_state_dict_with_other_weights_reencodes(exact_path):
    train_X, train_Y = make_data(n=10, d=2)
    a = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    network = tiny_network("softmax")
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.05)
    b = TNPKRModel(train_X, train_Y, checkpoint=network)
    X = _X(3, 1, 2)
    assert not torch.allclose(a.posterior(X).mean, b.posterior(X).mean)
    a.load_state_dict(b.state_dict())
    torch.testing.assert_close(a.posterior(X).mean, b.posterior(X).mean)


def test_to_dtype_reencodes(exact_path):
    train_X, train_Y = make_data(n=10, d=2)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    X = _X(3, 1, 2)
    ref = model.posterior(X).mean
    model = model.to(torch.float32)
    out = model.posterior(X.float()).mean
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.float(), atol=1e-4, rtol=1e-4)
