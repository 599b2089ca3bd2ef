"""Stationary kernels of the synthetic priors (batched, ARD), and their names."""

from __future__ import annotations

import math

import torch
from torch import Tensor

KERNELS = ("matern12", "matern32", "matern52", "rbf")


def scaled_sqdist(x1: Tensor, x2: Tensor, lengthscale: Tensor) -> Tensor:
    """Squared distances after dividing each dimension by its lengthscale.

    Args:
        x1: `B x n1 x d`.
        x2: `B x n2 x d`.
        lengthscale: `B x d`.

    Returns:
        `B x n1 x n2`.
    """
    a = x1 / lengthscale.unsqueeze(1)
    b = x2 / lengthscale.unsqueeze(1)
    sq = (
        a.pow(2).sum(-1, keepdim=True)
        + b.pow(2).sum(-1).unsqueeze(-2)
        - 2 * a @ b.transpose(-1, -2)
    )
    return sq.clamp_min(0.0)


def kernel_matrix(
    x1: Tensor, x2: Tensor, kernel_id: Tensor, lengthscale: Tensor, outputscale: Tensor
) -> Tensor:
    """Covariance of each task under its own kernel.

    Args:
        x1: `B x n1 x d`.
        x2: `B x n2 x d`.
        kernel_id: `B` long, indices into ``KERNELS``.
        lengthscale: `B x d` ARD lengthscales.
        outputscale: `B` signal variances.

    Returns:
        `B x n1 x n2` covariance matrices.
    """
    sq = scaled_sqdist(x1, x2, lengthscale)
    r = torch.sqrt(sq + 1e-30)
    s3, s5 = math.sqrt(3.0) * r, math.sqrt(5.0) * r
    values = torch.stack(
        [
            torch.exp(-r),
            (1 + s3) * torch.exp(-s3),
            (1 + s5 + s5.pow(2) / 3) * torch.exp(-s5),
            torch.exp(-0.5 * sq),
        ]
    )  # (4, B, n1, n2)
    index = kernel_id.view(1, -1, 1, 1).expand(1, *values.shape[1:])
    return values.gather(0, index).squeeze(0) * outputscale.view(-1, 1, 1)
