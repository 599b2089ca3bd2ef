"""Hand the network a history of unit spread, whatever the units of ``Y``.

The network standardises each context internally, but shrinks the scale towards 1 (a prior
worth two observations; see ``botorch_tnpkr.nn.model``) so that two- or three-point contexts
stay sane. That prior assumes targets of roughly unit spread, which ``Standardize`` provides,
except where it cannot: BoTorch's ``Standardize`` treats a spread below ``min_stdv`` (1e-8) as
constant and leaves it unscaled, and a model without an outcome transform sees ``Y`` in the
user's units. Targets of spread 1e-12 would then look like noise around a constant to the
network, and its posterior would be off by orders of magnitude.

So the model divides every context's targets (and known noise variances) by their sample
standard deviation before encoding and multiplies the cache's location and scale back: the
posterior is in the units of the (transformed) targets, and a standardised history (spread 1)
is left as it is. A context of fewer than two points or with constant targets is not scaled.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from botorch_tnpkr.nn import ContextCache


def context_spread(yc: Tensor) -> Tensor:
    """`B` sample standard deviation of each context's targets `B x n`; 1 where undefined or 0."""
    if yc.shape[-1] < 2:
        return torch.ones(yc.shape[:-1], dtype=yc.dtype, device=yc.device)
    spread = yc.std(dim=-1)
    usable = torch.isfinite(spread) & (spread > 0)
    return torch.where(usable, spread, torch.ones_like(spread))


def rescale_cache(cache: ContextCache, spread: Tensor) -> ContextCache:
    """The cache of targets divided by ``spread`` (`B`), predicting in the original units."""
    spread = spread.to(cache.y_loc.dtype)
    return dataclasses.replace(cache, y_loc=cache.y_loc * spread, y_scale=cache.y_scale * spread)
