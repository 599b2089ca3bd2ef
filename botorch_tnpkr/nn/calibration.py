"""Cross-validated variance calibration: one factor per context, from the context itself.

The network's predictive variance is calibrated on average over its training prior, not task
by task: on nearly noiseless, densely sampled tasks it is several times too large even for its
own errors, and on others too small. ``variance_scale`` measures this on the context at hand.
It splits the context into ``folds`` parts, predicts each part from the others, and returns
the mean squared standardised error of those held-out predictions,

    c = (sum_i z_i^2 + w) / (m + w),   z_i = (y_i - mean_i) / sqrt(yvar_i),

over the ``m`` held-out points, shrunk towards 1 by ``w = prior_weight`` pseudo-points.
Multiplying the predicted variances (latent and noise) by ``c`` is the rescaling that
maximises the held-out Gaussian likelihood. It changes no mean and no ranking of variances,
only their common scale.

Small contexts are left alone (factor 1): each fold then predicts from a context much smaller
than the one being calibrated, and below about 64 points the network's calibration at 3/4 of
the context did not carry over to the full one (``benchmarks/variance_calibration.py``).

The factor depends on the context size, so it is measured at a size close to the one used:

* up to ``max_points`` valid points: ``folds`` folds of the whole context, each predicted
  from the others; with 4 folds and exact attention about 2-3x the cost of one encoding;
* above ``max_points``: ``holdout`` seeded points are predicted from all the other ``n -
  holdout``, about the cost of one more encoding of the context. Folds drawn from a subset of
  ``max_points`` points (``holdout=None``; cheaper, a fixed cost) measure the network at a
  context size where it is calibrated differently: beyond the trained context they left
  about half of what a per-task factor gains (``benchmarks/variance_calibration.py
  --sizes 2048``).

Every split is seeded and shared by all tasks, so the factor is a deterministic function of
the context, whatever batch or padding it comes with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from botorch_tnpkr.errors import ConfigError

if TYPE_CHECKING:
    from botorch_tnpkr.nn.model import TNPKR


@dataclass(frozen=True)
class Calibration:
    """Settings of ``variance_scale``.

    Attributes:
        folds: Parts the context is split into (each predicted from the others), >= 2.
        min_context: Contexts with fewer valid points keep factor 1.
        max_points: Contexts with up to this many valid points are split into ``folds``
            folds; larger ones are calibrated on ``holdout`` points.
        holdout: Points held out of a context larger than ``max_points`` and predicted from
            all its other points; None draws the folds from a random subset of
            ``max_points`` points instead (cheaper, less accurate).
        prior_weight: Pseudo-points of squared error 1 that shrink the factor towards 1.
        bounds: The factor is clamped to ``[low, high]``.
        seed: Seed of the random split.
    """

    folds: int = 4
    min_context: int = 64
    max_points: int = 512
    holdout: int | None = 128
    prior_weight: float = 2.0
    bounds: tuple[float, float] = (0.05, 20.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"Calibration.folds must be >= 2, got {self.folds}.")
        if self.min_context < self.folds:
            raise ConfigError(
                f"Calibration.min_context ({self.min_context}) must be >= folds ({self.folds})."
            )
        if self.max_points < self.min_context:
            raise ConfigError(
                f"Calibration.max_points ({self.max_points}) must be >= min_context "
                f"({self.min_context})."
            )
        room = self.max_points - self.min_context
        if self.holdout is not None and not 1 <= self.holdout <= room:
            raise ConfigError(
                f"Calibration.holdout must be None or in [1, max_points - min_context = {room}]"
                f" (so that the held-out points are predicted from more than min_context "
                f"points), got {self.holdout}."
            )
        if not self.prior_weight > 0:
            raise ConfigError(f"Calibration.prior_weight must be > 0, got {self.prior_weight}.")
        low, high = self.bounds
        if not 0 < low <= 1 <= high:
            raise ConfigError(
                f"Calibration.bounds must satisfy 0 < low <= 1 <= high, got {self.bounds}."
            )


# What ``TNPKRModel(calibrate=True)`` (its default) and the evaluation command use.
DEFAULT_CALIBRATION = Calibration()


def _order(mask: Tensor, seed: int) -> Tensor:
    """`B x n` indices of each task's points in a seeded random order, valid points first.

    Every task shares one random key per position, so a task's split does not depend on the
    batch it is in, nor on padding appended after its points."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.rand(mask.shape[-1], generator=gen, dtype=torch.float64).to(mask.device)
    keys = torch.where(mask, keys, keys + 2.0)  # invalid points sort last
    return keys.argsort(dim=-1)


def _held_out_sum(
    network: TNPKR,
    points: tuple[Tensor, Tensor, Tensor | None, Tensor],
    keep: Tensor,
    out: Tensor,
    held: Tensor,
) -> Tensor:
    """`B` sums of ``z^2`` over the points at positions ``out`` where ``held`` (`B x |out|`),
    each predicted from the valid points at positions ``keep`` alone.

    ``points`` is ``(x, y, yvar or None, valid)`` in the split's order (``_gathered``)."""
    x, y, v, valid = points
    pred = network(
        x[:, keep], y[:, keep], x[:, out], yvar=None if v is None else v[:, keep],
        mask=valid[:, keep],
    )  # fmt: skip
    z2 = (y[:, out] - pred.mean) ** 2 / pred.yvar
    return torch.where(held, z2, torch.zeros_like(z2)).sum(-1)


def _gathered(
    xc: Tensor, yc: Tensor, yvar: Tensor | None, mask: Tensor, order: Tensor
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """The context's points in ``order`` (`B x m` indices): `B x m x d` inputs, `B x m`
    targets and noise variances, and `B x m` validity. Padding may hold anything (the network
    ignores it) and is zeroed, since the held-out predictions also run there."""
    valid = mask.gather(-1, order)
    x = xc.gather(1, order.unsqueeze(-1).expand(-1, -1, xc.shape[-1]))
    x = torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x))
    y = torch.where(valid, yc.gather(1, order), torch.zeros_like(valid, dtype=yc.dtype))
    v = None
    if yvar is not None:
        v = torch.where(valid, yvar.gather(1, order), torch.ones_like(valid, dtype=yvar.dtype))
    return x, y, v, valid


def held_out_errors(
    network: TNPKR,
    xc: Tensor,
    yc: Tensor,
    yvar: Tensor | None,
    mask: Tensor,
    calibration: Calibration,
) -> tuple[Tensor, Tensor]:
    """Squared standardised errors of the held-out predictions, summed per task.

    Args:
        network: The network.
        xc: `B x n x d`; yc: `B x n`; yvar: optional `B x n` known noise variances;
            mask: `B x n` bool, True for valid points.
        calibration: Settings.

    Returns:
        `B` sums of ``z^2`` and `B` numbers of held-out points (0 for contexts smaller than
        ``min_context``, whose sum is 0 too).
    """
    order = _order(mask, calibration.seed)
    size = mask.sum(-1)
    eligible = size >= calibration.min_context  # (B,)
    large = torch.zeros_like(eligible)
    if calibration.holdout is not None:
        large = size > calibration.max_points
    folded = eligible & ~large
    total = torch.zeros(xc.shape[0], dtype=yc.dtype, device=yc.device)
    count = torch.zeros(xc.shape[0], dtype=torch.long, device=yc.device)
    if bool(folded.any()):
        # Every task shares the order, so a fold is the same positions in every task: encode
        # the other folds' points alone (not the whole subset under a mask).
        points = _gathered(xc, yc, yvar, mask, order[:, : calibration.max_points])
        position = torch.arange(points[0].shape[1], device=order.device)
        for part in range(calibration.folds):
            out = position[position % calibration.folds == part]
            held = points[3][:, out] & folded.unsqueeze(-1)
            if bool(held.any()):
                keep = position[position % calibration.folds != part]
                total = total + _held_out_sum(network, points, keep, out, held)
            count = count + held.sum(-1)
    if bool(large.any()):
        points = _gathered(xc, yc, yvar, mask, order)
        position = torch.arange(order.shape[-1], device=order.device)
        out, keep = position[: calibration.holdout], position[calibration.holdout :]
        held = points[3][:, out] & large.unsqueeze(-1)
        total = total + _held_out_sum(network, points, keep, out, held)
        count = count + held.sum(-1)
    return total, count


def variance_scale(
    network: TNPKR,
    xc: Tensor,
    yc: Tensor,
    yvar: Tensor | None = None,
    mask: Tensor | None = None,
    calibration: Calibration | None = None,
) -> Tensor:
    """The `B` factors that calibrate the network's predictive variances on each context.

    Args:
        network: The network.
        xc: `B x n x d` context inputs; yc: `B x n` targets.
        yvar: Optional `B x n` known noise variances.
        mask: Optional `B x n` bool, True for valid points.
        calibration: Settings (default ``Calibration()``).

    Returns:
        `B` factors, 1 for contexts smaller than ``min_context``; no gradient.
    """
    calibration = calibration or DEFAULT_CALIBRATION
    if mask is None:
        mask = torch.ones(yc.shape, dtype=torch.bool, device=yc.device)
    with torch.no_grad():
        total, count = held_out_errors(network, xc, yc, yvar, mask, calibration)
        w = calibration.prior_weight
        scale = (total + w) / (count.to(total.dtype) + w)
        return scale.clamp(*calibration.bounds)
