"""The task priors and the oracle GP."""

from __future__ import annotations

import math

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.priors import (
    KERNELS,
    PriorConfig,
    gp_posterior,
    kernel_matrix,
    sample_tasks,
    standardize_batch,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bo_shaped", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 40])
def test_shapes_and_ranges(n: int, bo_shaped: bool) -> None:
    prior = PriorConfig(max_dim=5, max_context=64, num_targets=9)
    batch = sample_tasks(prior, 3, _gen(), dim=4, num_context=n, bo_shaped=bo_shaped)
    assert batch.xc.shape == (3, n, 4) and batch.yc.shape == (3, n)
    assert batch.xt.shape == (3, 9, 4) and batch.yt.shape == batch.ft.shape == (3, 9)
    assert batch.oracle_mean.shape == batch.oracle_var.shape == (3, 9)
    for x in (batch.xc, batch.xt):
        assert bool(((x >= 0) & (x <= 1)).all())
    assert bool((batch.oracle_var > 0).all()) and bool((batch.hyper.noise > 0).all())
    assert bool(torch.isfinite(batch.yc).all()) and bool(torch.isfinite(batch.yt).all())


def test_seeded_draws_are_reproducible() -> None:
    prior = PriorConfig(max_context=32)
    a = sample_tasks(prior, 4, _gen(3))
    b = sample_tasks(prior, 4, _gen(3))
    c = sample_tasks(prior, 4, _gen(4))
    assert torch.equal(a.yc, b.yc) and torch.equal(a.xt, b.xt)
    assert a.yt.shape != c.yt.shape or not torch.equal(a.yt, c.yt)


def _direct_solve(batch, i: int, amplitude=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Task ``i``'s posterior mean and latent variance at its targets by a dense solve; the
    kernel times ``amplitude(x) amplitude(x')`` when given."""
    h, sel = batch.hyper, slice(i, i + 1)
    args = (h.kernel_id[sel], h.lengthscale[sel], h.outputscale[sel])
    k = kernel_matrix(batch.xc[sel], batch.xc[sel], *args)[0]
    kt = kernel_matrix(batch.xt[sel], batch.xc[sel], *args)[0]
    prior_var = h.outputscale[i].expand(kt.shape[0])
    if amplitude is not None:
        ac, at = amplitude(batch.xc[i]), amplitude(batch.xt[i])
        k, kt, prior_var = (
            k * ac[:, None] * ac[None, :],
            kt * at[:, None] * ac[None, :],
            prior_var * at**2,
        )
    a = k + torch.eye(k.shape[0], dtype=k.dtype) * (h.noise[i] + 1e-8 * h.outputscale[i])
    mean = h.mean[i] + kt @ torch.linalg.solve(a, batch.yc[i] - h.mean[i])
    return mean, prior_var - (kt @ torch.linalg.solve(a, kt.T)).diagonal()


def test_oracle_matches_direct_solve() -> None:
    prior = PriorConfig(max_dim=3)
    batch = sample_tasks(prior, 2, _gen(1), dim=3, num_context=12, dtype=torch.float64)
    h = batch.hyper
    for i in range(2):
        mean, var = _direct_solve(batch, i)
        torch.testing.assert_close(batch.oracle_mean[i], mean, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(
            batch.oracle_var[i], var.clamp_min(1e-12 * h.outputscale[i]), rtol=1e-5, atol=1e-8
        )


def test_oracle_ignores_masked_context_points() -> None:
    prior = PriorConfig(max_dim=2)
    batch = sample_tasks(prior, 2, _gen(2), dim=2, num_context=10, dtype=torch.float64)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 6:] = False
    yc = batch.yc.clone()
    yc[:, 6:] = 1e6
    m1, v1 = gp_posterior(batch.xc, yc, mask, batch.xt, batch.hyper)
    m2, v2 = gp_posterior(batch.xc[:, :6], batch.yc[:, :6], mask[:, :6], batch.xt, batch.hyper)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(v1, v2)


@pytest.mark.parametrize("kernel", KERNELS)
def test_oracle_is_calibrated(kernel: str) -> None:
    """z-scores of the true f under the oracle are standard normal (the draws are exact)."""
    weights = tuple(1.0 if k == kernel else 0.0 for k in KERNELS)
    prior = PriorConfig(max_dim=3, kernel_weights=weights)
    batch = sample_tasks(
        prior, 64, _gen(5), dim=2, num_context=20, num_targets=32, dtype=torch.float64
    )
    z = (batch.ft - batch.oracle_mean) / batch.oracle_var.sqrt()
    assert abs(float(z.mean())) < 0.15
    assert 0.8 < float(z.var()) < 1.25


def test_bo_shaped_contexts_cluster() -> None:
    prior = PriorConfig(max_dim=3)
    spread = {}
    for bo in (False, True):
        batch = sample_tasks(prior, 32, _gen(6), dim=3, num_context=60, bo_shaped=bo)
        spread[bo] = float(batch.xc.std(dim=1).mean())
    assert spread[True] < 0.8 * spread[False]


@pytest.mark.parametrize("bo_shaped", [False, True])
def test_near_data_targets_sit_at_context_points(bo_shaped: bool) -> None:
    prior = PriorConfig(max_dim=3, num_targets=16, near_share=0.25, near_jitter_range=(1e-4, 1e-3))
    batch = sample_tasks(prior, 8, _gen(7), dim=3, num_context=40, bo_shaped=bo_shaped)
    nearest = torch.cdist(batch.xt, batch.xc).min(-1).values  # (B, nT)
    assert bool((nearest[:, :4] < 0.01).all())  # the first 4 of 16 targets: near the data
    assert float(nearest[:, 4:].median()) > 0.05
    # At a nearly noiseless observation the oracle interpolates: its mean is the observed
    # value within a few noise standard deviations, its latent variance far below the prior's.
    rows = torch.cdist(batch.xt[:, :4], batch.xc).argmin(-1)
    observed = torch.gather(batch.yc, 1, rows)
    noise_sd = batch.hyper.noise.sqrt().view(-1, 1)
    assert bool(((batch.oracle_mean[:, :4] - observed).abs() < 6 * noise_sd + 0.02).all())
    assert bool((batch.oracle_var[:, :4] < 0.1 * batch.hyper.outputscale.view(-1, 1)).all())
    # No context, no near targets; the context inputs are drawn as without near targets.
    empty = sample_tasks(prior, 2, _gen(7), dim=3, num_context=0)
    assert empty.xt.shape == (2, 16, 3)
    plain = sample_tasks(
        PriorConfig(max_dim=3, num_targets=16),
        8,
        _gen(7),
        dim=3,
        num_context=40,
        bo_shaped=bo_shaped,
    )
    assert torch.equal(plain.xc, batch.xc)
    assert float(torch.cdist(plain.xt, plain.xc).min(-1).values[:, :4].median()) > 0.01


@pytest.mark.parametrize("bo_shaped", [False, True])
def test_peaked_tasks_are_exact_gps_that_stand_far_above_the_rest(bo_shaped: bool) -> None:
    """``peak_share``: the oracle is the exact posterior of the modulated kernel (a direct
    solve with ``a(x) a(x') k(x, x')``), its z-scores of the true f are standard normal, and
    on uniform layouts the functions reach standardised values plain GP draws rarely reach."""
    prior = PriorConfig(max_dim=3, peak_share=1.0, peak_height_range=(5.0, 10.0))
    batch = sample_tasks(
        prior,
        64,
        _gen(8),
        dim=2,
        num_context=30,
        num_targets=32,
        bo_shaped=bo_shaped,
        dtype=torch.float64,
    )
    h = batch.hyper
    assert h.peak is not None and h.peak.shape == (64, 4) and bool((h.peak[:, -1] >= 5).all())
    centre, width, height = h.peak[0, :2], h.peak[0, 2], h.peak[0, 3]

    def amp(x: torch.Tensor) -> torch.Tensor:
        return 1 + height * torch.exp(-0.5 * (x - centre).square().sum(-1) / width**2)

    mean, var = _direct_solve(batch, 0, amp)
    torch.testing.assert_close(batch.oracle_var[0], var, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(batch.oracle_mean[0], mean, rtol=1e-6, atol=1e-8)
    z = (batch.ft - batch.oracle_mean) / batch.oracle_var.sqrt()
    assert abs(float(z.mean())) < 0.15 and 0.8 < float(z.var()) < 1.25
    scaled = standardize_batch(batch)  # the peak is relative: it travels unchanged
    assert scaled.hyper.peak is h.peak
    m, v = gp_posterior(scaled.xc, scaled.yc, scaled.mask, scaled.xt, scaled.hyper)
    torch.testing.assert_close(m, scaled.oracle_mean)
    torch.testing.assert_close(v, scaled.oracle_var)
    plain = sample_tasks(
        PriorConfig(max_dim=3),
        64,
        _gen(8),
        dim=2,
        num_context=30,
        num_targets=32,
        dtype=torch.float64,
    )

    def top_z(b):
        f = torch.cat([b.yc, b.ft], dim=1)
        return ((f - f.mean(1, keepdim=True)) / f.std(1, keepdim=True)).amax(1)

    if not bo_shaped:  # (BO-shaped contexts crowd into the peak, which lowers its z-score)
        assert float(top_z(batch).median()) > float(top_z(plain).median()) + 0.5


def test_prior_validation() -> None:
    with pytest.raises(ConfigError, match="peak_share"):
        PriorConfig(peak_share=-0.1)
    with pytest.raises(ConfigError, match="peak_width_range"):
        PriorConfig(peak_width_range=(0.2, 0.1))
    with pytest.raises(ConfigError, match="near_share"):
        PriorConfig(near_share=1.5)
    with pytest.raises(ConfigError, match="near_jitter_range"):
        PriorConfig(near_jitter_range=(0.0, 0.1))
    with pytest.raises(ConfigError, match="kernel_weights"):
        PriorConfig(kernel_weights=(1.0,))
    with pytest.raises(ConfigError, match="dims"):
        PriorConfig(max_dim=3, dims=(4,))
    with pytest.raises(ConfigError, match="noise_ratio_range"):
        PriorConfig(noise_ratio_range=(0.3, 0.1))
    assert math.isclose(sum(PriorConfig().kernel_weights), 1.0)
