"""The exact GP predictive under the true hyperparameters: the Bayes-optimal oracle."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from botorch_tnpkr.priors.kernels import kernel_matrix

JITTER = 1e-8


@dataclass
class GPHyper:
    """Hyperparameters of a batch of GP tasks.

    Attributes:
        kernel_id: `B` long, index into ``kernel_names()`` (the built-in ``KERNELS`` first).
        lengthscale: `B x d`.
        outputscale: `B` signal variance.
        mean: `B` constant mean.
        noise: `B` observation-noise variance.
        peak: Optional `B x (d + 2)` ``[centre, width, height]`` of an amplitude peak: the
            kernel is ``a(x) a(x') k(x, x')`` with ``a(x) = 1 + height * exp(-|x - centre|^2 /
            (2 width^2))``, so the function varies ``1 + height`` times as much around the
            centre as elsewhere (a narrow optimum standing far above the rest, as on many BO
            test functions). Still a GP: the oracle stays exact. None (or height 0) is the
            plain kernel.
    """

    kernel_id: Tensor
    lengthscale: Tensor
    outputscale: Tensor
    mean: Tensor
    noise: Tensor
    peak: Tensor | None = None

    def to(self, dtype: torch.dtype) -> GPHyper:
        """The same hyperparameters with the floating tensors in ``dtype``."""
        return dataclasses.replace(
            self,
            lengthscale=self.lengthscale.to(dtype),
            outputscale=self.outputscale.to(dtype),
            mean=self.mean.to(dtype),
            noise=self.noise.to(dtype),
            peak=None if self.peak is None else self.peak.to(dtype),
        )


def amplitude(x: Tensor, hyper: GPHyper) -> Tensor | None:
    """`B x n` amplitude ``a(x)`` of the kernel at `B x n x d` inputs (``GPHyper.peak``), or
    None for the plain kernel."""
    if hyper.peak is None:
        return None
    peak = hyper.peak.to(x.dtype)
    centre, width, height = peak[:, :-2], peak[:, -2], peak[:, -1]
    sq = (x - centre.unsqueeze(1)).square().sum(-1)
    return 1.0 + height.view(-1, 1) * torch.exp(-0.5 * sq / width.view(-1, 1) ** 2)


def task_kernel(x1: Tensor, x2: Tensor, hyper: GPHyper) -> Tensor:
    """`B x n1 x n2` covariance of the tasks' functions between ``x1`` and ``x2``."""
    k = kernel_matrix(x1, x2, hyper.kernel_id, hyper.lengthscale, hyper.outputscale)
    a1, a2 = amplitude(x1, hyper), amplitude(x2, hyper)
    if a1 is None or a2 is None:
        return k
    return k * a1.unsqueeze(-1) * a2.unsqueeze(-2)


def masked_cov(k: Tensor, mask: Tensor, diag: Tensor) -> Tensor:
    """``k + diag``, with invalid rows/columns replaced by the identity (they drop out)."""
    keep = mask.to(k.dtype)
    k = k * keep.unsqueeze(-1) * keep.unsqueeze(-2)
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    return k + eye * (diag.view(-1, 1) * keep + (1 - keep)).unsqueeze(-1)


def gp_posterior(
    xc: Tensor, yc: Tensor, mask: Tensor, xt: Tensor, hyper: GPHyper
) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance of the latent f at ``xt`` given noisy ``yc``.

    Args:
        xc: `B x nC x d`; yc: `B x nC`; mask: `B x nC` bool; xt: `B x nT x d`.

    Returns:
        Mean `B x nT` and latent variance `B x nT` (float64 inside for stability).
    """
    dtype = xc.dtype
    xc, yc, xt = xc.double(), yc.double(), xt.double()
    hyper = hyper.to(torch.float64)
    os_ = hyper.outputscale
    prior_var = os_.view(-1, 1).expand(xt.shape[0], xt.shape[1])
    a_t = amplitude(xt, hyper)
    if a_t is not None:
        prior_var = prior_var * a_t.square()
    mean0 = hyper.mean.double().view(-1, 1)
    if xc.shape[1] == 0:
        return mean0.expand_as(prior_var).to(dtype), prior_var.to(dtype)
    kcc = task_kernel(xc, xc, hyper)
    noise = hyper.noise.double() + JITTER * os_
    chol = torch.linalg.cholesky(masked_cov(kcc, mask, noise))
    keep = mask.double()
    ktc = task_kernel(xt, xc, hyper) * keep.unsqueeze(-2)
    resid = ((yc - mean0) * keep).unsqueeze(-1)
    alpha = torch.cholesky_solve(resid, chol)  # (B, nC, 1)
    mean = mean0 + (ktc @ alpha).squeeze(-1)
    v = torch.linalg.solve_triangular(chol, ktc.transpose(-1, -2), upper=False)  # (B, nC, nT)
    var = (prior_var - v.pow(2).sum(-2)).clamp_min(1e-12 * os_.view(-1, 1))
    return mean.to(dtype), var.to(dtype)


def gaussian_logpdf(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise log N(y; mean, var)."""
    return -0.5 * (math.log(2 * math.pi) + var.log() + (y - mean).pow(2) / var)


def expected_nll(oracle_mean: Tensor, oracle_var: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """``E_{y ~ N(oracle_mean, oracle_var)}[-log N(y; mean, var)]``, elementwise.

    Replacing the NLL of one sampled target by this expectation removes the sampling noise of
    the target from the training signal without changing its expectation.
    """
    return 0.5 * (
        math.log(2 * math.pi) + var.log() + ((oracle_mean - mean).pow(2) + oracle_var) / var
    )


def gaussian_entropy(var: Tensor) -> Tensor:
    """Entropy of N(., var): the best achievable expected NLL (the oracle's own)."""
    return 0.5 * (math.log(2 * math.pi * math.e) + var.log())
