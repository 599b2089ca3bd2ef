"""Test-time adaptation: per-dimension distance scales fitted to the context at hand.

The kernel bias sees distances between inputs; the network infers from the context how far a
point's influence reaches, and on tasks it was trained on it does so imprecisely: it mis-reads
lengthscales, most of all when they differ between dimensions (the gap rises with the spread
of the log lengthscales, ``benchmarks/gap_by_noise.py``). A fitted GP gets them from its
marginal likelihood. ``fit_distance_scale`` does the same for the network with `d` numbers
per context: factors ``s_j`` that multiply input dimension ``j`` in every distance of the
kernel bias (context to context and test to context, every block and head; the tokens still
see the inputs as they are), chosen to maximise the likelihood of held-out points of the
context itself:

    log s = argmax  sum over folds f of  log p(y_f | x_f, context without f; s),

by ``steps`` Adam steps from ``s = 1``. Each step draws a fresh seeded split into ``folds``
folds of at most ``max_points`` points (so its cost does not grow with the context) and
predicts ``folds_per_step`` of them, by default one: a stochastic estimate of the sum above.
``|log s_j|`` is bounded by ``max_log_scale``.

A context of ``m < max_points`` valid points takes steps of ``lr * (m / max_points) **
ramp_power``: the fewer the points, the noisier the held-out likelihood, and at full step
size small contexts (32 points) now and then landed on scales where the network's variance
collapses far from the data (one task in 72 lost 8 nats per point on a development set;
128-point contexts did not). Full steps start at ``max_points`` points.

Contexts of fewer than ``few_points`` (64) valid points take ``few_steps`` (10) steps of
``steps / few_steps`` (2x) the size instead: the same total movement at half the cost, where
a step's cost is mostly fixed overhead (about 25 ms per step for the 6-block, width-128
network at 16-30 points, one thread, so the adaptation took 0.5 s of a 0.7 s model build).
Both seeds measured gave the same gaps within 0.0015 at 16, 24, 32 and 48 points (evaluation
seed 7777, 8 tasks x 12 cells each: 0.3895 / 0.3894 / 0.3910 / 0.3573 with 20 steps, 0.3900 /
0.3908 / 0.3904 / 0.3586 with 10; development seed 7 at 16 / 32: 0.4043 / 0.2683 and 0.4054 /
0.2682); at 64 and 128 points 10 steps were 0.013 worse, so larger contexts keep 20.

Contexts from 16 points adapt (0.00625 a step at 16 points). On the evaluation's tasks
(seed 7777, 8 tasks per cell, 3 kernels x d = 1, 2, 3, 6) the mean gap to the oracle went
0.410 -> 0.390 at n = 16 and 0.420 -> 0.389 at n = 24 (better in 18 of 24 cells, none worse
by more than 0.02); on a development seed 0.451 -> 0.404 at n = 16. From 8 points (2-point
folds) it gained 0.005 there. Power 0.75 (larger steps below 256 points) did better at 16
points (0.379) and 32, worse at 64 and 128, and no better over the evaluation's grid
(0.412 -> 0.414); power 0.5 blew up at 32 points again.

Below ``min_context`` valid points the scales stay 1. The result is a deterministic
function of the context (seeded splits shared by all tasks of a batch); tasks of a batch
are fitted together, each from its own points only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn.calibration import _fold_splits, _gathered, _order

if TYPE_CHECKING:
    from botorch_tnpkr.nn.model import TNPKR


@dataclass(frozen=True)
class Adaptation:
    """Settings of ``fit_distance_scale``.

    Attributes:
        steps: Adam steps (each one forward and backward pass over ``folds`` folds).
        lr: Adam's step size on the log scales for contexts of ``max_points`` points or
            more; smaller contexts take ``lr * (points / max_points) ** ramp_power``.
        folds: Parts each step's points are split into, each predicted from the others.
        folds_per_step: How many of the folds each step predicts (None: all); the
            cost of a step is about proportional to it, and since every step draws a
            fresh split, the steps together still cover all points. One fold a step
            cost 4x less than all four and gave the same gaps within 0.01 (128-point
            contexts of a development seed).
        min_context: Contexts with fewer valid points keep scales 1.
        max_points: Each step draws at most this many of a context's points.
        max_log_scale: Bound of ``|log s_j|``.
        seed: Seed of the splits.
        ramp_power: A context of ``m < max_points`` valid points takes steps of
            ``lr * (m / max_points) ** ramp_power``.
        few_points: Contexts with fewer valid points take ``few_steps`` steps, each
            ``steps / few_steps`` times as large (the same total movement, for less time).
        few_steps: Steps of those contexts (capped at ``steps``).
    """

    steps: int = 20
    lr: float = 0.1
    folds: int = 4
    folds_per_step: int | None = 1
    min_context: int = 16
    max_points: int = 256
    max_log_scale: float = 3.0
    seed: int = 0
    ramp_power: float = 1.0
    few_points: int = 64
    few_steps: int = 10

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"Adaptation.steps must be >= 0, got {self.steps}.")
        if self.few_steps < 1:
            raise ConfigError(f"Adaptation.few_steps must be >= 1, got {self.few_steps}.")
        if self.few_points < 0:
            raise ConfigError(f"Adaptation.few_points must be >= 0, got {self.few_points}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"Adaptation.lr must be a finite number > 0, got {self.lr}.")
        if self.folds < 2:
            raise ConfigError(f"Adaptation.folds must be >= 2, got {self.folds}.")
        if self.folds_per_step is not None and not 1 <= self.folds_per_step <= self.folds:
            raise ConfigError(
                f"Adaptation.folds_per_step must be None or in [1, folds = {self.folds}], "
                f"got {self.folds_per_step}."
            )
        if self.min_context < 2 * self.folds:
            raise ConfigError(
                f"Adaptation.min_context ({self.min_context}) must be >= 2 * folds "
                f"({2 * self.folds}), so that every fold is predicted from a context."
            )
        if self.max_points < self.min_context:
            raise ConfigError(
                f"Adaptation.max_points ({self.max_points}) must be >= min_context "
                f"({self.min_context})."
            )
        if not (self.ramp_power >= 0 and math.isfinite(self.ramp_power)):
            raise ConfigError(
                f"Adaptation.ramp_power must be a finite number >= 0, got {self.ramp_power}."
            )
        if not (self.max_log_scale > 0 and math.isfinite(self.max_log_scale)):
            raise ConfigError(
                f"Adaptation.max_log_scale must be a finite number > 0, got {self.max_log_scale}."
            )


# What ``TNPKRModel(adapt=True)`` (its default) and the evaluation command use.
DEFAULT_ADAPTATION = Adaptation()


def held_out_nll(
    network: TNPKR,
    points: tuple[Tensor, Tensor, Tensor | None, Tensor],
    folds: int,
    log_scale: Tensor,
    used_folds: int | None = None,
) -> Tensor:
    """`B` mean negative log-likelihoods of each fold's points predicted from the others.

    Args:
        network: The network.
        points: ``(x, y, yvar or None, valid)`` of `B` contexts of ``m`` points
            (``calibration._gathered``).
        folds: Number of folds (positions ``p, p + folds, ...`` form fold ``p``).
        log_scale: `B x d` log distance scales (differentiable).
        used_folds: Predict only the first this many folds (default all): each is still
            predicted from all the other folds' points.

    Returns:
        `B` means over each context's valid held-out points (0 where there are none).
    """
    x, y, v, valid = points
    b, m, d = x.shape
    keep, keep_real, out, out_real = _fold_splits(m, folds, x.device)
    c = folds if used_folds is None else min(used_folds, folds)
    keep, keep_real, out, out_real = keep[:c], keep_real[:c], out[:c], out_real[:c]
    k_size, o_size = keep.shape[-1], out.shape[-1]
    pred = network(
        x[:, keep].reshape(b * c, k_size, d),
        y[:, keep].reshape(b * c, k_size),
        x[:, out].reshape(b * c, o_size, d),
        yvar=None if v is None else v[:, keep].reshape(b * c, k_size),
        mask=(valid[:, keep] & keep_real).reshape(b * c, k_size),
        distance_scale=log_scale.exp().repeat_interleave(c, 0),
    )
    mean, var = pred.mean.view(b, c, o_size), pred.yvar.view(b, c, o_size)
    nll = 0.5 * (torch.log(2 * math.pi * var) + (y[:, out] - mean) ** 2 / var)
    held = valid[:, out] & out_real  # (B, c, o)
    total = torch.where(held, nll, torch.zeros_like(nll)).sum((-1, -2))
    return total / held.sum((-1, -2)).clamp_min(1).to(total.dtype)


def fit_distance_scale(
    network: TNPKR,
    xc: Tensor,
    yc: Tensor,
    yvar: Tensor | None = None,
    mask: Tensor | None = None,
    adaptation: Adaptation | None = None,
) -> Tensor:
    """The `B x d` distance scales that fit the network to each context (module docstring).

    Args:
        network: The network (its weights get no gradient).
        xc: `B x n x d` context inputs; yc: `B x n` targets.
        yvar: Optional `B x n` known noise variances.
        mask: Optional `B x n` bool, True for valid points.
        adaptation: Settings (default ``Adaptation()``).

    Returns:
        `B x d` positive scales, 1 for contexts smaller than ``min_context``; no gradient.
    """
    adaptation = adaptation or DEFAULT_ADAPTATION
    b, _, d = xc.shape
    if mask is None:
        mask = torch.ones(yc.shape, dtype=torch.bool, device=yc.device)
    xc, yc, yvar = xc.detach(), yc.detach(), None if yvar is None else yvar.detach()
    scale = torch.ones(b, d, dtype=xc.dtype, device=xc.device)
    chosen = (mask.sum(-1) >= adaptation.min_context).nonzero().squeeze(-1)
    if len(chosen) == 0 or adaptation.steps == 0:
        return scale
    xc, yc, mask = xc[chosen], yc[chosen], mask[chosen]
    yvar = None if yvar is None else yvar[chosen]
    log_scale = torch.zeros(len(chosen), d, dtype=xc.dtype, device=xc.device, requires_grad=True)
    optimiser = torch.optim.Adam([log_scale], lr=adaptation.lr)
    bound = adaptation.max_log_scale
    # Per-context step sizes: lr * (points / max_points) ** ramp_power (module docstring).
    valid = mask.sum(-1, keepdim=True)
    counts = valid.clamp_max(adaptation.max_points)
    step_fraction = (counts.to(xc.dtype) / adaptation.max_points) ** adaptation.ramp_power
    # Contexts below few_points: few_steps steps of steps / few_steps the size (docstring).
    few_steps = min(adaptation.few_steps, adaptation.steps)
    few = valid < adaptation.few_points  # (B', 1)
    step_fraction = torch.where(few, step_fraction * (adaptation.steps / few_steps), step_fraction)
    last_step = torch.where(few, few_steps, adaptation.steps)  # (B', 1)
    with torch.enable_grad():
        for step in range(int(last_step.max())):
            order = _order(mask, adaptation.seed + step)[:, : adaptation.max_points]
            points = _gathered(xc, yc, yvar, mask, order)
            loss = held_out_nll(
                network, points, adaptation.folds, log_scale, adaptation.folds_per_step
            ).sum()
            # Only the scales: the network's parameters collect no gradient.
            (log_scale.grad,) = torch.autograd.grad(loss, [log_scale])
            before = log_scale.detach().clone()
            optimiser.step()
            with torch.no_grad():
                moving = step_fraction * (step < last_step)  # 0 once a context is done
                log_scale.copy_(before + moving * (log_scale - before))
                log_scale.clamp_(-bound, bound)
    scale[chosen] = log_scale.detach().exp()
    return scale
