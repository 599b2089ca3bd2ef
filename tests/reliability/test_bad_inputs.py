"""The bad-input matrix of TNPKRModel: a typed error naming the problem, or a finite result."""

from __future__ import annotations

import pytest
import torch
from botorch.exceptions.errors import BotorchTensorDimensionError, InputDataError

from botorch_tnpkr import TNPKRModel
from tests.model.helpers import tiny_network

NET = tiny_network("softmax", seed=5)
GEN = torch.Generator().manual_seed(0)
X = torch.rand(10, 2, generator=GEN, dtype=torch.float64)
Y = torch.randn(10, 1, generator=GEN, dtype=torch.float64)
XT = torch.rand(4, 2, generator=GEN, dtype=torch.float64)

ERRORS = {
    "integer X": (lambda: TNPKRModel(X.long(), Y, checkpoint=NET), InputDataError, "floating"),
    "integer Y": (lambda: TNPKRModel(X, Y.long(), checkpoint=NET), InputDataError, "floating"),
    "mixed dtypes": (lambda: TNPKRModel(X.float(), Y, checkpoint=NET), InputDataError, "dtype"),
    "empty history": (lambda: TNPKRModel(X[:0], Y[:0], checkpoint=NET), InputDataError, "n >= 1"),
    "n mismatch": (
        lambda: TNPKRModel(X, Y[:9], checkpoint=NET),
        BotorchTensorDimensionError,
        "batch_shape x n",
    ),
    "Yvar shape": (
        lambda: TNPKRModel(X, Y, train_Yvar=torch.ones(9, 1, dtype=X.dtype), checkpoint=NET),
        BotorchTensorDimensionError,
        "train_Yvar",
    ),
    "X of rank 1": (
        lambda: TNPKRModel(X[:, 0], Y, checkpoint=NET),
        BotorchTensorDimensionError,
        "d",
    ),
    "float32 test X": (
        lambda: TNPKRModel(X, Y, checkpoint=NET).posterior(XT.float()),
        InputDataError,
        "float64",
    ),
    "wrong test d": (
        lambda: TNPKRModel(X, Y, checkpoint=NET).posterior(torch.rand(4, 3, dtype=X.dtype)),
        (InputDataError, BotorchTensorDimensionError),
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_inputs_raise_typed_errors(case: str) -> None:
    make, error, words = ERRORS[case]
    with pytest.raises(error, match=words):
        make()


FINITE = {
    "single point": (X[:1], Y[:1]),
    "constant Y": (X, torch.ones_like(Y)),
    "duplicate X, different Y": (torch.cat([X, X]), torch.cat([Y, Y + 1.0])),
    "Y of magnitude 1e12": (X, Y * 1e12),
    "Y of magnitude 1e-12": (X, Y * 1e-12),
    "X outside the unit cube": (X * 10.0 - 3.0, Y),
}


@pytest.mark.parametrize("case", sorted(FINITE))
def test_awkward_histories_give_finite_posteriors(case: str) -> None:
    train_X, train_Y = FINITE[case]
    model = TNPKRModel(train_X, train_Y, checkpoint=NET)
    post = model.posterior(XT, observation_noise=True)
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()
    assert (post.variance > 0).all()
    # Predictions stay on the scale of the data (Standardize maps them back).
    spread = float(train_Y.max() - train_Y.min())
    centre = float(train_Y.mean())
    assert (post.mean - centre).abs().max() <= 10 * max(spread, 1.0)


def test_duplicate_points_with_different_values_predict_between_them() -> None:
    train_X = torch.cat([X, X[:1]])
    train_Y = torch.cat([Y, Y[:1] + 2.0])
    model = TNPKRModel(train_X, train_Y, checkpoint=NET)
    post = model.posterior(X[:1], observation_noise=True)
    assert torch.isfinite(post.mean).all() and (post.variance > 0).all()
