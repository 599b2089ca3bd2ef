"""Numerical safety: float32 (CPU) and float32/bf16 (GPU, when present) stay finite at scale.

Variance floor: the network's predictive standard deviations are at least
``config.min_std`` (1e-3) times the context's internal y scale, so a posterior variance is
never zero or negative, whatever the history.
"""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.checkpoints import LINEAR_CHECKPOINT, load_checkpoint

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _history(n: int, d: int, dtype: torch.dtype, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=gen, dtype=torch.float64)
    Y = torch.sin(6.0 * X).sum(-1, keepdim=True) + 0.01 * torch.randn(n, 1, generator=gen)
    return X.to(device=device, dtype=dtype), Y.to(device=device, dtype=dtype)


def _assert_sane(model: TNPKRModel, Y: torch.Tensor, device: str) -> None:
    d = model.train_X.shape[-1]
    test = torch.rand(512, 1, d, dtype=Y.dtype, device=device)
    post = model.posterior(test, observation_noise=True)
    mean, var = post.mean, post.variance
    assert torch.isfinite(mean).all() and torch.isfinite(var).all()
    assert bool((var > 0).all())
    spread = float(Y.max() - Y.min())
    assert (
        float(mean.min()) > float(Y.min()) - spread and float(mean.max()) < float(Y.max()) + spread
    )


@pytest.mark.parametrize("device", DEVICES)
def test_linear_checkpoint_float32_with_100k_points(device):
    X, Y = _history(100_000, 6, torch.float32, device)
    model = TNPKRModel(X, Y, checkpoint=LINEAR_CHECKPOINT)
    _assert_sane(model, Y, device)


@pytest.mark.parametrize("device", DEVICES)
def test_exact_checkpoint_float32_beyond_the_scan_switch(device):
    X, Y = _history(1_500 if device == "cpu" else 4_096, 6, torch.float32, device)
    model = TNPKRModel(X, Y)  # auto: the exact network, in scan mode above 1,024 points
    _assert_sane(model, Y, device)


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_float32_extreme_magnitudes(scale):
    X, Y = _history(300, 3, torch.float32, "cpu")
    model = TNPKRModel(X, Y * scale)
    post = model.posterior(torch.rand(64, 1, 3))
    assert torch.isfinite(post.mean).all() and bool((post.variance > 0).all())
    ratio = post.mean / scale
    assert float(ratio.abs().max()) < 10 * float(Y.abs().max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is checked on a GPU")
@pytest.mark.parametrize("name", ["tnpkr-exact", LINEAR_CHECKPOINT])
def test_bf16_autocast_on_gpu_with_100k_points(name):
    network = load_checkpoint(name).cuda().eval()
    n = 100_000 if name == LINEAR_CHECKPOINT else 8_192
    if name != LINEAR_CHECKPOINT:
        network.set_exact_backend("scan")
    X, Y = _history(n, 6, torch.float32, "cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        cache = network.encode(X.unsqueeze(0), Y.squeeze(-1).unsqueeze(0))
        out = network.predict(cache, torch.rand(1, 100_000, 6, device="cuda"))
    for value in (out.mean, out.fvar, out.noise_var):
        assert torch.isfinite(value.float()).all()
    assert bool((out.fvar > 0).all()) and bool((out.noise_var > 0).all())


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
def test_any_units_give_the_standardised_posterior(scale):
    """Without an outcome transform, or where ``Standardize`` gives up (spread < 1e-8), the
    posterior is the standardised one in the data's units (the network is shift-equivariant)."""
    X, Y = _history(40, 2, torch.float64, "cpu", seed=3)
    test = torch.rand(16, 1, 2, dtype=torch.float64)
    reference = TNPKRModel(X, Y).posterior(test)
    for transform in (None, "default"):
        kwargs = {} if transform == "default" else {"outcome_transform": None}
        post = TNPKRModel(X, Y * scale + 3.0 * scale, **kwargs).posterior(test)
        # The history is encoded in float32: agreement to its precision.
        torch.testing.assert_close(post.mean / scale - 3.0, reference.mean, rtol=1e-4, atol=1e-5)
        # ``.variance`` is clamped at GPyTorch's min_variance (1e-10 in float64), as for any
        # GPyTorch posterior; the covariance itself is not.
        var = post.distribution.lazy_covariance_matrix.diagonal()
        ref = reference.distribution.lazy_covariance_matrix.diagonal()
        torch.testing.assert_close(var / scale**2, ref, rtol=1e-4, atol=0)
