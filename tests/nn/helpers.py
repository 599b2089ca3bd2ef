"""Small networks and random tasks shared by the network tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from botorch_tnpkr.nn import TNPKR, TNPKRConfig

# Tiny on purpose: every test builds its own networks and the suite must stay fast on one core.
SMALL = {
    "max_dim": 4,
    "dim_model": 16,
    "num_heads": 2,
    "num_blocks": 2,
    "dim_ffn": 32,
    "num_basis": 3,
    "scan_chunk": 8,
    "dka_features": 16,
    "performer_features": 16,
}


def make_model(
    attention: str, dtype: torch.dtype = torch.float64, seed: int = 0, **changes: Any
) -> TNPKR:
    """A small network in eval mode with seeded random weights.

    With ``ard_bias=True`` the ARD layers get random weights too (a real network starts them
    at zero, the isotropic bias), so that the tests exercise stretched distances; likewise
    the amplitudes of ``fine_basis`` functions and the ``near_path`` (zero in a fresh network).
    """
    torch.manual_seed(seed)
    config = TNPKRConfig(**{**SMALL, "attention": attention, **changes})
    model = TNPKR(config)
    if config.ard_bias:
        with torch.no_grad():
            for block in model.blocks:
                torch.nn.init.normal_(block.attention.ard.weight, std=0.5)
                torch.nn.init.normal_(block.attention.ard.bias, std=0.5)
    if config.fine_basis:
        with torch.no_grad():
            for block in model.blocks:
                torch.nn.init.normal_(block.attention.bias.fine_amplitude, std=1.0)
                # Lengthscales near the test tasks' point spacing, so the functions matter.
                block.attention.bias.fine_log_width.fill_(3.0)
    if config.near_path:  # zero in a fresh network (it would change nothing)
        with torch.no_grad():
            for layer in (model.near_path.proj, model.near_path.gate[-1]):
                torch.nn.init.normal_(layer.weight, std=0.5)
                torch.nn.init.normal_(layer.bias, std=0.5)
    return model.to(dtype).eval()


def make_task(
    b: int = 2,
    nc: int = 10,
    nt: int = 6,
    d: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``xc`` `b x nc x d`, ``yc`` `b x nc`, ``xt`` `b x nt x d` on the unit cube."""
    gen = torch.Generator().manual_seed(seed)
    xc = torch.rand(b, nc, d, generator=gen, dtype=dtype)
    yc = torch.sin(3.0 * xc.sum(-1)) + 0.1 * torch.randn(b, nc, generator=gen, dtype=dtype)
    xt = torch.rand(b, nt, d, generator=gen, dtype=dtype)
    return xc, yc, xt


def assert_same_prediction(
    a: Any, b: Any, rtol: float, atol: float, check_dtype: bool = True
) -> None:
    """Means, latent and noise variances of two ``Prediction`` objects agree."""
    for name in ("mean", "fvar", "noise_var"):
        torch.testing.assert_close(
            getattr(a, name),
            getattr(b, name),
            rtol=rtol,
            atol=atol,
            check_dtype=check_dtype,
            msg=lambda m, n=name: f"{n}: {m}",
        )
