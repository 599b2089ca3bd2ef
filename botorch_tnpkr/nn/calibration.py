"""Cross-validated variance calibration: one factor per context, from the context itself.

The network's predictive variance is calibrated on average over its training prior, not task
by task: on nearly noiseless, densely sampled tasks it is several times too large even for its
own errors, and on others too small. ``variance_scale`` measures this on the context at hand.
It splits the context into folds, predicts each fold from the others, and returns the mean
squared standardised error of those held-out predictions,

    c = (sum_i z_i^2 + w) / (m + w),   z_i = (y_i - mean_i) / sqrt(yvar_i),

over the ``m`` held-out points, shrunk towards 1 by ``w = prior_weight`` pseudo-points.
Multiplying the predicted variances (latent and noise) by ``c`` is the rescaling that
maximises the held-out Gaussian likelihood. It changes no mean and no ranking of variances,
only their common scale.

The factor depends on the context size, so it is measured on predictions from contexts
nearly as large as the one calibrated:

* below ``min_context`` (32) valid points: factor 1. On BO-shaped contexts of 16 points
  (a pilot design and a cluster) the held-out points, mostly in the cluster, understate the
  errors far from it, and calibration made the gap worse (``benchmarks/variance_calibration.py
  --layout bo``);
* from there to below ``small_context`` (128) points: ``small_folds`` (16) folds, each
  predicted from the other 15/16 of the context. The network's calibration changes fastest
  with the context size at small sizes: at n = 32 and 64, 4 folds (predicting from 3/4 of
  the context) gained less than 16 on both layouts, and nothing at n = 32;
* from ``small_context`` to ``max_points`` (512): ``folds`` (4) folds; at n = 128, 16 folds
  gained nothing at about 4 times the compute;
* above ``max_points``: ``holdout`` (128) seeded points predicted from all the other ``n -
  holdout``, about the cost of one more encoding of the context. Folds drawn from a subset
  of ``max_points`` points (``holdout=None``; cheaper, a fixed cost) measure the network at a
  context size where it is calibrated differently: at 4x the trained context they left
  about two thirds of what a per-task factor gains (``benchmarks/variance_calibration.py
  --sizes 2048``).

The folds of one context run as one batch of contexts (in chunks of bounded size), so many
small folds cost one batched call, not one call per fold; their compute still grows with
their number (one LogEI step at n = 100 took 1.5x as long with calibration as without,
``benchmarks/checkpoint_step_cost.py --calibration both``).

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
        folds: Parts a context of ``small_context`` to ``max_points`` valid points is split
            into (each predicted from the others), >= 2.
        small_folds: Parts a smaller context is split into, >= 2.
        small_context: Contexts with fewer valid points use ``small_folds``.
        min_context: Contexts with fewer valid points keep factor 1.
        max_points: Contexts with up to this many valid points are split into folds; larger
            ones are calibrated on ``holdout`` points.
        holdout: Points held out of a context larger than ``max_points`` and predicted from
            all its other points; None draws the folds from a random subset of
            ``max_points`` points instead (cheaper, less accurate).
        prior_weight: Pseudo-points of squared error 1 that shrink the factor towards 1.
        bounds: The factor is clamped to ``[low, high]``.
        seed: Seed of the random split.
    """

    folds: int = 4
    small_folds: int = 16
    small_context: int = 128
    min_context: int = 32
    max_points: int = 512
    holdout: int | None = 128
    prior_weight: float = 2.0
    bounds: tuple[float, float] = (0.05, 20.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.folds, self.small_folds) < 2:
            raise ConfigError(
                f"Calibration.folds and small_folds must be >= 2, got {self.folds} and "
                f"{self.small_folds}."
            )
        # Every calibrated context must have at least one point per fold.
        if self.min_context < self.small_context and self.min_context < self.small_folds:
            raise ConfigError(
                f"Calibration.min_context ({self.min_context}) must be >= small_folds "
                f"({self.small_folds}) when it is below small_context ({self.small_context})."
            )
        if max(self.min_context, self.small_context) < self.folds:
            raise ConfigError(
                f"Calibration.folds ({self.folds}) must be <= max(min_context, small_context) "
                f"= {max(self.min_context, self.small_context)}."
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


# Largest number of (query, key) pairs of one batched call over folds, times the batch: the
# folds of a context run in chunks of about this size (a few hundred MB of attention scores).
_PAIRS_PER_CALL = 2**22


def _split_sums(
    network: TNPKR,
    points: tuple[Tensor, Tensor, Tensor | None, Tensor],
    splits: tuple[Tensor, Tensor, Tensor, Tensor],
    tasks: Tensor,
    distance_scale: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """`B` sums of ``z^2`` of held-out predictions and `B` numbers of held-out points; only the
    tasks where ``tasks`` (`B` bool) are predicted, the others get 0.

    ``points`` is ``(x, y, yvar or None, valid)`` in the split's order (``_gathered``).
    ``splits`` is ``(keep, keep_real, out, out_real)``: `S x k` and `S x o` positions of ``S``
    splits, each predicting its ``out`` points from the valid ``keep`` points alone (the
    ``*_real`` masks mark padding of the index rows). The splits run as a batch of contexts,
    in chunks of about ``_PAIRS_PER_CALL`` (query, key) pairs. ``distance_scale`` (`B x d`)
    is passed to the network with each task's splits."""
    x, y, v, valid = points
    keep, keep_real, out, out_real = splits
    total = torch.zeros(x.shape[0], dtype=y.dtype, device=y.device)
    count = torch.zeros(x.shape[0], dtype=torch.long, device=y.device)
    chosen = tasks.nonzero().squeeze(-1)
    x, y, valid = x[chosen], y[chosen], valid[chosen]
    v = None if v is None else v[chosen]
    scales = None if distance_scale is None else distance_scale[chosen]
    b, (num_splits, k_size), o_size = len(chosen), keep.shape, out.shape[-1]
    step = max(1, _PAIRS_PER_CALL // max(1, b * k_size * (k_size + o_size)))
    sums = torch.zeros(b, dtype=y.dtype, device=y.device)
    held_count = torch.zeros(b, dtype=torch.long, device=y.device)
    for first in range(0, num_splits, step):
        part = slice(first, first + step)
        k, o = keep[part], out[part]  # (c, k_size), (c, o_size)
        held = valid[:, o] & out_real[part]  # (b, c, o_size)
        if not bool(held.any()):
            continue
        c = k.shape[0]
        pred = network(
            x[:, k].reshape(b * c, k_size, -1),
            y[:, k].reshape(b * c, k_size),
            x[:, o].reshape(b * c, o_size, -1),
            yvar=None if v is None else v[:, k].reshape(b * c, k_size),
            mask=(valid[:, k] & keep_real[part]).reshape(b * c, k_size),
            distance_scale=None if scales is None else scales.repeat_interleave(c, 0),
        )
        z2 = (y[:, o] - pred.mean.view(b, c, o_size)) ** 2 / pred.yvar.view(b, c, o_size)
        sums = sums + torch.where(held, z2, torch.zeros_like(z2)).sum((-1, -2))
        held_count = held_count + held.sum((-1, -2))
    total[chosen], count[chosen] = sums, held_count
    return total, count


def _fold_splits(m: int, folds: int, device: torch.device) -> tuple[Tensor, ...]:
    """``folds`` splits of ``m`` positions for ``_split_sums``: fold ``p`` holds positions
    ``p, p + folds, ...`` and is predicted from all the others (rows padded to one size)."""
    size = -(-m // folds)
    grid = torch.arange(size * folds, device=device).view(size, folds).T  # fold p: p + folds*j
    out, out_real = grid.clamp(max=m - 1), grid < m  # (folds, size)
    rank = torch.arange(m, device=device)
    # The other folds' positions in order, padded at the end with the fold's own (masked).
    others = torch.stack(
        [torch.cat([rank[rank % folds != p], rank[rank % folds == p]]) for p in range(folds)]
    )
    keep = others[:, : m - int(out_real.sum(-1).min())]
    keep_real = (keep % folds) != torch.arange(folds, device=device).unsqueeze(-1)
    return keep, keep_real, out, out_real


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
    distance_scale: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Squared standardised errors of the held-out predictions, summed per task.

    Args:
        network: The network.
        xc: `B x n x d`; yc: `B x n`; yvar: optional `B x n` known noise variances;
            mask: `B x n` bool, True for valid points.
        calibration: Settings.
        distance_scale: Optional `B x d` distance scales of the network (``TNPKR.encode``).

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
    small = size < calibration.small_context
    total = torch.zeros(xc.shape[0], dtype=yc.dtype, device=yc.device)
    count = torch.zeros(xc.shape[0], dtype=torch.long, device=yc.device)
    subset = None  # the first max_points of the order, shared by both fold counts
    for folds, tasks in (
        (calibration.small_folds, eligible & small & ~large),
        (calibration.folds, eligible & ~small & ~large),
    ):
        if bool(tasks.any()):
            # Every task shares the order, so a fold is the same positions in every task.
            if subset is None:
                subset = _gathered(xc, yc, yvar, mask, order[:, : calibration.max_points])
            splits = _fold_splits(subset[0].shape[1], folds, order.device)
            fold_total, fold_count = _split_sums(network, subset, splits, tasks, distance_scale)
            total, count = total + fold_total, count + fold_count
    if bool(large.any()):
        # One split: the first ``holdout`` positions against all the others.
        n, h = order.shape[-1], calibration.holdout
        position = torch.arange(n, device=order.device).unsqueeze(0)
        keep, out = position[:, h:], position[:, :h]
        splits = (
            keep,
            torch.ones_like(keep, dtype=torch.bool),
            out,
            torch.ones_like(out, dtype=torch.bool),
        )
        points = _gathered(xc, yc, yvar, mask, order)
        held_total, held_count = _split_sums(network, points, splits, large, distance_scale)
        total, count = total + held_total, count + held_count
    return total, count


def variance_scale(
    network: TNPKR,
    xc: Tensor,
    yc: Tensor,
    yvar: Tensor | None = None,
    mask: Tensor | None = None,
    calibration: Calibration | None = None,
    distance_scale: Tensor | None = None,
) -> Tensor:
    """The `B` factors that calibrate the network's predictive variances on each context.

    Args:
        network: The network.
        xc: `B x n x d` context inputs; yc: `B x n` targets.
        yvar: Optional `B x n` known noise variances.
        mask: Optional `B x n` bool, True for valid points.
        calibration: Settings (default ``Calibration()``).
        distance_scale: Optional `B x d` distance scales of the network (``TNPKR.encode``).

    Returns:
        `B` factors, 1 for contexts smaller than ``min_context``; no gradient.
    """
    calibration = calibration or DEFAULT_CALIBRATION
    if mask is None:
        mask = torch.ones(yc.shape, dtype=torch.bool, device=yc.device)
    with torch.no_grad():
        total, count = held_out_errors(network, xc, yc, yvar, mask, calibration, distance_scale)
        w = calibration.prior_weight
        scale = (total + w) / (count.to(total.dtype) + w)
        return scale.clamp(*calibration.bounds)
