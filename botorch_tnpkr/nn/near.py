"""The nearest-neighbour path of the readout (``TNPKRConfig.near_path``).

A GP interpolates its observations: at a context point with small noise its mean is that
point's value to within the noise and its latent variance is about the noise variance. The
pretrained network's variance there was 2.5-55x the oracle's (its mean was about right), which
cost 1-2 nats per target wherever BO evaluates its acquisition near the data, above all at
the incumbent. The near path hands the head the nearest context point directly:

* each test point finds its nearest valid context point in the kernel bias's distances
  (inputs divided by ``sqrt(d)``, times the cache's ``distance_scale``);
* ``NEAR_FEATURES`` features of that neighbour (log distance, three soft indicators of
  closeness, its standardised value, its known noise) enter the head's input through a
  linear map;
* a gate computed from the head's input and the features gives the weight
  ``w = max(0, tanh(g)) in [0, 1)`` of the neighbour, and the head's Gaussian (mean ``m``,
  latent variance ``v``) is updated as a Gaussian is by one observation of that weight:
  ``m' = m + w (y_near - m)``, ``v' = (1 - w) v + w floor`` (``floor`` the head's smallest
  variance, ``min_std^2``: ``tanh`` rounds to 1). At ``w`` near 1 that is interpolation; at 0
  nothing changes. (A first form computed ``w = kappa v / (nu + kappa v)`` from a gated
  ``kappa`` and a noise ``nu``; on nearly noiseless tasks ``v / nu`` is 1e4 or more, so any
  small ``kappa`` snapped the mean to the neighbour, and it trained worse than no path.)

The linear map's weights and the gate's last layer start at zero (``w = 0``), so a network
that gains the path (``nn.grow``) predicts exactly what it did until trained. The
search reads every context point, O(nC * nT) (in tiles of ``scan_chunk``), as the exact
backends' attention does; the path exists for exact backends only. The neighbour is found
without gradient; the distance to it is differentiable in the test inputs.

Shapes: queries `B x m x D`, keys `B x n x D` (inputs padded to ``max_dim``), mask `B x n`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# log distance, closeness at three lengthscales, y, log yvar, known.
NEAR_FEATURES = 7
_CLOSENESS_SCALES = (1e-3, 1e-2, 1e-1)
# The distance an empty context reports (no neighbour: every closeness is 0).
_FAR = 10.0
_GATE_HIDDEN = 64


def nearest(queries: Tensor, keys: Tensor, mask: Tensor, chunk: int) -> Tensor:
    """Index of the nearest valid key of every query (0 where a task has no valid key).

    Args:
        queries: `B x m x D`.
        keys: `B x n x D`.
        mask: `B x n` bool, True for valid keys.
        chunk: Tile size over queries and keys (bounds memory to `B x chunk x chunk`).

    Returns:
        `B x m` long indices into ``keys``.
    """
    b, m, _ = queries.shape
    n = keys.shape[1]
    best = torch.zeros(b, m, dtype=torch.long, device=queries.device)
    if n == 0:
        return best
    with torch.no_grad():
        q, k = queries.detach(), keys.detach()
        for i in range(0, m, chunk):
            qi = q[:, i : i + chunk]
            best_sq = torch.full(qi.shape[:2], math.inf, dtype=q.dtype, device=q.device)
            best_i = best[:, i : i + chunk]
            for j in range(0, n, chunk):
                sq = torch.cdist(qi, k[:, j : j + chunk]).square()
                sq = sq.masked_fill(~mask[:, None, j : j + chunk], math.inf)
                value, index = sq.min(dim=-1)
                better = value < best_sq
                best_sq = torch.where(better, value, best_sq)
                best_i.copy_(torch.where(better, index + j, best_i))
    return best


def near_features(
    queries: Tensor, keys: Tensor, key_features: Tensor, mask: Tensor, chunk: int
) -> Tensor:
    """The ``NEAR_FEATURES`` features of every query's nearest valid key.

    Args:
        queries: `B x m x D` test inputs in bias space.
        keys: `B x n x D` context inputs in bias space.
        key_features: `B x n x 3` ``[y, log yvar, known]`` of the context tokens
            (``model.context_features`` without the ``observed`` flag).
        mask: `B x n` bool, True for valid keys.
        chunk: Tile size of the search.

    Returns:
        `B x m x NEAR_FEATURES`: ``[log(dist) / 5, exp(-(dist / l)^2) for l in
        (1e-3, 1e-2, 1e-1), y, log yvar, known]``; a task without valid keys gets the
        features of a neighbour at distance 10 with zero values.
    """
    if keys.shape[1] == 0:  # pad with one invalid key: no neighbour
        keys = keys.new_zeros(keys.shape[0], 1, keys.shape[-1])
        key_features = key_features.new_zeros(key_features.shape[0], 1, key_features.shape[-1])
        mask = mask.new_zeros(mask.shape[0], 1)
    index = nearest(queries, keys, mask, chunk)
    gather = index.unsqueeze(-1)
    x_near = keys.gather(1, gather.expand(-1, -1, keys.shape[-1]))
    feats = key_features.gather(1, gather.expand(-1, -1, key_features.shape[-1]))
    any_key = mask.any(dim=-1, keepdim=True)  # (B, 1)
    # sqrt of a square with a floor: a finite gradient at distance 0.
    dist = ((queries - x_near).square().sum(-1) + 1e-12).sqrt()
    dist = torch.where(any_key, dist, torch.full_like(dist, _FAR))
    feats = feats * any_key.unsqueeze(-1).to(feats.dtype)
    closeness = [torch.exp(-((dist / s) ** 2)) for s in _CLOSENESS_SCALES]
    log_dist = (dist + 1e-6).log() / 5.0
    return torch.cat([torch.stack([log_dist, *closeness], dim=-1), feats], dim=-1)


class NearPath(nn.Module):
    """The head's nearest-neighbour input and update (zero at initialisation).

    ``head_input(h, f)`` is the head's input, ``h + proj(f)``; ``update(...)`` the head's
    Gaussian moved towards the neighbour by the gated weight. ``h`` `... x D` (the normed test
    tokens), ``f`` `... x NEAR_FEATURES`.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(NEAR_FEATURES, dim)
        self.gate = nn.Sequential(
            nn.Linear(dim + NEAR_FEATURES, _GATE_HIDDEN), nn.GELU(), nn.Linear(_GATE_HIDDEN, 1)
        )
        for layer in (self.proj, self.gate[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def head_input(self, h: Tensor, features: Tensor) -> Tensor:
        return h + self.proj(features)

    def update(
        self, mean: Tensor, fvar: Tensor, h: Tensor, features: Tensor, floor: float
    ) -> tuple[Tensor, Tensor]:
        """The mean and latent variance `... x m` after the neighbour's update.

        Args:
            mean, fvar: The head's standardised mean and latent variance, `... x m`.
            h: The head's input `... x m x D`.
            features: `... x m x NEAR_FEATURES`.
            floor: The smallest latent variance the head predicts (standardised).
        """
        gate = self.gate(torch.cat([h, features], dim=-1)).squeeze(-1)
        weight = torch.tanh(gate).clamp_min(0.0)  # the gradient passes at 0 (the start)
        fvar = (1.0 - weight) * fvar + weight * floor
        return mean + weight * (features[..., 4] - mean), fvar
