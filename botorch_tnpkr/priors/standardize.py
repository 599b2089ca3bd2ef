"""Tasks as ``TNPKRModel`` presents them: contexts standardised by their own statistics.

BoTorch's default outcome transform (``Standardize``) subtracts the sample mean of the
training targets and divides by their sample standard deviation, so the network never sees a
history in its raw units. Training on raw GP draws teaches it something that deployment
hides (the absolute scale of a few points); ``standardize_batch`` removes that mismatch. The
gap to the oracle is a KL divergence, which an affine map of ``y`` leaves unchanged, so losses
of standardised and raw batches are directly comparable.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from botorch_tnpkr.priors.sampler import TaskBatch

MIN_SPREAD = 1e-8  # BoTorch's Standardize treats smaller spreads as constant


def standardize_context(yc: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Standardise `B x nC` context values as BoTorch's ``Standardize`` does.

    Args:
        yc: `B x nC` context values.
        mask: Optional `B x nC` bool, True where a context point is real (padded batches).

    Returns:
        The standardised values `B x nC` (padding left as it is), the mean `B x 1` and the
        standard deviation `B x 1`: mean 0 without points, standard deviation 1 with fewer
        than two points or a spread below ``MIN_SPREAD``.
    """
    keep = torch.ones_like(yc) if mask is None else mask.to(yc.dtype)
    count = keep.sum(-1, keepdim=True)
    loc = (yc * keep).sum(-1, keepdim=True) / count.clamp_min(1.0)
    sq = ((yc - loc) * keep).pow(2).sum(-1, keepdim=True)
    scale = (sq / (count - 1).clamp_min(1.0)).sqrt()
    scale = torch.where((count > 1) & (scale > MIN_SPREAD), scale, torch.ones_like(scale))
    out = torch.where(keep.bool(), (yc - loc) / scale, yc)
    return out, loc, scale


def standardize_batch(batch: TaskBatch) -> TaskBatch:
    """The same tasks with every quantity in the units of the standardised context.

    Targets, the oracle's predictive and the true hyperparameters (mean, output scale and
    noise) move with the context, so the oracle stays Bayes-optimal for the new batch.
    """
    yc, loc, scale = standardize_context(batch.yc, batch.mask)
    flat_loc, flat_scale = loc.squeeze(-1), scale.squeeze(-1)
    hyper = batch.hyper
    return dataclasses.replace(
        batch,
        yc=yc,
        ft=(batch.ft - loc) / scale,
        yt=(batch.yt - loc) / scale,
        oracle_mean=(batch.oracle_mean - loc) / scale,
        oracle_var=batch.oracle_var / scale**2,
        hyper=dataclasses.replace(
            hyper,
            outputscale=hyper.outputscale / flat_scale**2,
            mean=(hyper.mean - flat_loc) / flat_scale,
            noise=hyper.noise / flat_scale**2,
        ),
    )
