"""Tiny random-init networks and random training data shared by the model tests."""

from __future__ import annotations

import torch
from torch import Tensor

from botorch_tnpkr.nn import TNPKR, TNPKRConfig

# Tiny on purpose: the whole tests/model suite must run in about a minute on one core.
TINY = {
    "max_dim": 6,
    "dim_model": 16,
    "num_heads": 2,
    "num_blocks": 1,
    "dim_ffn": 32,
    "num_basis": 3,
    "scan_chunk": 8,
    "dka_features": 16,
}


def tiny_network(attention: str = "softmax", seed: int = 0, **changes) -> TNPKR:
    torch.manual_seed(seed)
    return TNPKR(TNPKRConfig(**{**TINY, "attention": attention, **changes})).eval()


def make_data(
    n: int = 12,
    d: int = 2,
    m: int = 1,
    batch: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``train_X`` `batch x n x d` in the unit cube and smooth ``train_Y`` `batch x n x m`."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=gen, dtype=dtype)
    cols = [torch.sin(3.0 * (j + 1) * X.sum(-1)) + 0.1 * j for j in range(m)]
    Y = torch.stack(cols, dim=-1) + 0.05 * torch.randn(*batch, n, m, generator=gen, dtype=dtype)
    return X, Y
