"""Causal extension of a context cache by sampled points, and autoregressive joint samples.

TNP-KR predicts test points independently given the context. A joint sample over `q` points
is drawn autoregressively: draw point 1 from its predictive, add it to the context, predict
point 2, and so on. Re-encoding the context for every sample path and every point would cost
O(S q n^2); here the context's encoding is reused:

* the context stream is never re-encoded: context tokens do not attend to added points;
* an added point is a context token that, in every block, attends to the context memory, to
  the points added before it and to itself (causal), and then becomes a key for every later
  query (added points and test points);
* the context's memory is shared by all sample paths; each path keeps only its own added keys
  (``nn/attention/paths.py``): per path and block, an exact backend reads O(n + a) keys, a
  linear one its fixed-size sums plus the `a` added keys;
* added values are standardised with the context's ``y_loc`` / ``y_scale`` (the scale is not
  re-estimated).

With one block, the memory of a block is a function of each key's own embedding, so extending
by points is then exactly encoding the union (if ``y_loc`` and ``y_scale`` are unchanged); with
more blocks the context tokens' missing attention to added points is the approximation.

Shapes: a context cache of batch `B`; `G` groups of paths share their inputs (e.g. the
q-batches of a t-batch), `S` paths per group (the Monte Carlo samples). Added inputs are
`B x G x a x d`, added values `B x G x S x a`, test inputs `B x G x m x d`, path predictions
`B x G x S x m`; a `G` or `S` of 1 broadcasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from botorch_tnpkr.errors import InputShapeError, NonFiniteInputError
from botorch_tnpkr.nn.attention.paths import AddedMemory, extend_paths, read_paths
from botorch_tnpkr.nn.model import _EXTRA_FEATURES, ContextCache, Prediction, context_features

if TYPE_CHECKING:
    from botorch_tnpkr.nn.model import TNPKR


@dataclass
class PathCache:
    """A context cache extended, per sample path, by added points.

    Attributes:
        context: The context's cache (batch `B`), shared by every path.
        x: `B x G x a x d` inputs of the added points (``a`` may be 0).
        added: Per block, the added memory (``None`` while ``a == 0``).
    """

    context: ContextCache
    x: Tensor
    added: list[AddedMemory]

    @classmethod
    def start(cls, context: ContextCache, like: Tensor) -> PathCache:
        """A path cache without added points, in the dtype and on the device of ``like``."""
        x = like.new_zeros(context.batch_size, 1, 0, context.dim)
        return cls(context=context, x=x, added=[None] * len(context.memories))

    @property
    def num_added(self) -> int:
        return self.x.shape[-2]

    @property
    def num_groups(self) -> int:
        return self.x.shape[1]

    @property
    def num_paths(self) -> int:
        """`S` (1 while no added value differs between paths)."""
        first = self.added[0]
        return 1 if first is None else first[0].shape[2]


def _as_paths(cache: ContextCache | PathCache, like: Tensor) -> PathCache:
    if isinstance(cache, PathCache):
        return cache
    if isinstance(cache, ContextCache):
        return PathCache.start(cache, like)
    raise InputShapeError(f"Expected a ContextCache or a PathCache, got {type(cache).__name__}.")


def _check_inputs(name: str, network: TNPKR, paths: PathCache, x: Tensor) -> None:
    network._check_common(name, x)
    if x.dim() != 4:
        raise InputShapeError(f"{name} must have shape B x G x n x d, got {tuple(x.shape)}.")
    b, g = paths.context.batch_size, paths.num_groups
    groups_fit = g == 1 or x.shape[1] in (1, g)
    if x.shape[0] != b or x.shape[-1] != paths.context.dim or not groups_fit:
        raise InputShapeError(
            f"{name} has shape {tuple(x.shape)}; the context has batch size {b} and input "
            f"dimension d={paths.context.dim}, and the paths have {g} group(s)."
        )
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteInputError(f"{name} must be finite.")


def extend(
    network: TNPKR,
    cache: ContextCache | PathCache,
    x: Tensor,
    y: Tensor,
    yvar: Tensor | None = None,
) -> PathCache:
    """Add points to every path, causally (in the order given), without re-encoding.

    Args:
        network: The network that encoded ``cache``.
        cache: A context cache, or a path cache to extend further.
        x: `B x G x a x d` inputs of the new points (shared by the paths of a group).
        y: `B x G x S x a` values of the new points, per path (``G`` and ``S`` may be 1).
        yvar: Optional known noise variances of the new points, broadcastable to ``y``
            (units of ``y``); None makes them tokens whose noise the network infers.

    Returns:
        The extended path cache (``cache`` is unchanged).
    """
    paths = _as_paths(cache, x)
    _check_inputs("x", network, paths, x)
    b, g, a, _ = x.shape
    if y.dim() != 4 or y.shape[0] != b or y.shape[-1] != a or y.shape[1] not in (1, g):
        raise InputShapeError(f"y must have shape B x G x S x a = {(b, g, 'S', a)}.")
    if not bool(torch.isfinite(y).all()):
        raise NonFiniteInputError("y must be finite.")
    if a == 0:
        return paths
    loc = paths.context.y_loc.view(b, 1, 1, 1)
    scale = paths.context.y_scale.view(b, 1, 1, 1)
    ratio = None if yvar is None else yvar / scale**2
    keep = torch.ones_like(y)
    extra = context_features((y - loc) / scale, keep, ratio)  # (B, G, S, a, 4)
    x_pad, x_bias = network._pad_inputs(x, paths.context.distance_scale)
    x_pad = x_pad.unsqueeze(2).expand(*extra.shape[:3], a, x_pad.shape[-1])
    tokens = network.embed(torch.cat([x_pad, extra], dim=-1))  # (B, G, S, a, D)
    added = list(paths.added)
    for j in range(a):
        c, xj = tokens[..., j : j + 1, :], x_bias[:, :, j : j + 1]
        for index, block in enumerate(network.blocks):
            cn = block.norm_attn(c)
            added[index] = extend_paths(block.attention, added[index], cn, xj)
            c = c + read_paths(block.attention, cn, xj, paths.context.memories[index], added[index])
            c = c + block.ffn(block.norm_ffn(c))
    groups = max(g, paths.num_groups)
    x_all = torch.cat([paths.x.expand(b, groups, -1, -1), x.expand(b, groups, -1, -1)], dim=-2)
    return PathCache(context=paths.context, x=x_all, added=added)


def predict_paths(network: TNPKR, cache: ContextCache | PathCache, xt: Tensor) -> Prediction:
    """Predict test points in every path from the context and the path's added points.

    Args:
        network: The network that encoded the cache.
        cache: A context cache or a path cache.
        xt: `B x G x m x d` test inputs.

    Returns:
        The `B x G x S x m` predictions (`S` is 1 for a cache without added points); test
        points are independent of each other given the cache.
    """
    paths = _as_paths(cache, xt)
    _check_inputs("xt", network, paths, xt)
    b, g, m, _ = xt.shape
    x_pad, x_bias = network._pad_inputs(xt, paths.context.distance_scale)
    t = network.embed(torch.cat([x_pad, xt.new_zeros(b, g, m, _EXTRA_FEATURES)], dim=-1))
    t = t.unsqueeze(2)  # (B, G, 1, m, D)
    for index, block in enumerate(network.blocks):
        memory: Any = paths.context.memories[index]
        t = t + read_paths(block.attention, block.norm_attn(t), x_bias, memory, paths.added[index])
        t = t + block.ffn(block.norm_ffn(t))
    return _readout(network, paths.context, t, xt)


def sample_autoregressive(
    network: TNPKR,
    cache: ContextCache,
    xt: Tensor,
    base_samples: Tensor,
    known_noise: float | None = None,
    centre: bool = False,
    independent: Tensor | None = None,
) -> Tensor:
    """Joint samples of the latent function at `q` points, drawn point after point.

    ``f_k = mean_k + sqrt(fvar_k) * z_k``, where ``mean_k`` and ``fvar_k`` are predicted from
    the context and the path's earlier ``f_1 .. f_{k-1}`` (reparameterised: differentiable
    in ``xt`` and the context).

    A leading run of points that is the same in every group (inputs and base samples, e.g.
    the baseline that qLogNEI puts in front of every candidate batch) is sampled once and
    shared by the groups. Each step runs the new point's context token and the next test
    point's token through the blocks together.

    Args:
        network: The network that encoded ``cache``.
        cache: The context cache (batch `B`).
        xt: `B x G x q x d` inputs; the `G` groups are independent q-batches.
        base_samples: `B x G x S x q` standard normal draws (``G`` may be 1).
        known_noise: The sampled values enter the context as tokens with this known noise
            variance, in units of ``y_scale^2`` (a small positive number: the network was
            trained with noise of at least 1e-6 of the signal); None for tokens whose noise
            the network infers.
        centre: Centre each conditional mean on a reference path: ``mean_k`` becomes
            ``mean_k - mean_k(ref) + mean_k(independent)``, where the reference path's earlier
            values are their independent means (one extra path per group). For a Gaussian
            process this changes nothing (``E[f_k | f_<k = means] = mean_k``); for a network
            it removes the shift that the mere presence of added points causes.
        independent: Optional `q` bool: points drawn from their independent predictive
            (not conditioned on any other point), then added to every path before the other
            points, which condition on them. Meant for points already in the context, whose
            latent values the context pins down to about the noise level.

    Returns:
        `B x G x S x q` samples.
    """
    if xt.dim() != 4 or base_samples.dim() != 4 or base_samples.shape[-1] != xt.shape[-2]:
        raise InputShapeError(
            f"xt must be B x G x q x d and base_samples B x G x S x q, got {tuple(xt.shape)} "
            f"and {tuple(base_samples.shape)}."
        )
    if base_samples.shape[1] not in (1, xt.shape[1]) or base_samples.shape[0] != xt.shape[0]:
        raise InputShapeError(
            f"base_samples {tuple(base_samples.shape)} do not match xt {tuple(xt.shape)}."
        )
    b, g, q, d = xt.shape
    s = base_samples.shape[2]
    if independent is None:
        independent = torch.zeros(q, dtype=torch.bool, device=xt.device)
    if independent.shape != (q,) or independent.dtype != torch.bool:
        raise InputShapeError(f"independent must be a bool tensor of shape ({q},).")
    order = torch.cat([independent.nonzero()[:, 0], (~independent).nonzero()[:, 0]])
    num_first = int(independent.sum())
    xt, base_samples = xt[:, :, order], base_samples[..., order]
    if centre:
        zero = base_samples.new_zeros(b, base_samples.shape[1], 1, q)
        base_samples = torch.cat([base_samples, zero], dim=2)  # the reference path last
    prefix = _shared_prefix(xt, base_samples)
    yvar = None
    if known_noise is not None:
        yvar = known_noise * cache.y_scale.view(-1, 1, 1, 1) ** 2

    def inputs(k0: int, k1: int) -> tuple[Tensor, Tensor]:
        """Inputs and base samples of points ``k0 .. k1 - 1``, one group if shared."""
        if k1 <= prefix:
            return xt[:, :1, k0:k1], base_samples[:, :1, :, k0:k1]
        return xt[:, :, k0:k1], base_samples[..., k0:k1]

    samples = []
    paths: ContextCache | PathCache = cache
    independent_mean = independent_sd = None
    if num_first or centre:
        pred = network.predict(cache, xt.reshape(b, -1, d))  # (B, G q)
        independent_mean = pred.mean.view(b, g, 1, q)
        independent_sd = pred.fvar.sqrt().view(b, g, 1, q)
    if num_first:
        x0, z0 = inputs(0, num_first)
        groups = x0.shape[1]
        f0 = independent_mean[:, :groups, :, :num_first]
        f0 = f0 + independent_sd[:, :groups, :, :num_first] * z0
        samples.append(f0)
        if num_first < q:
            paths = extend(network, cache, x0, f0, None if yvar is None else yvar.expand_as(f0))
    previous: tuple[Tensor, Tensor] | None = None
    for k in range(num_first, q):
        x_k, z_k = inputs(k, k + 1)
        if previous is None:
            pred = predict_paths(network, paths, x_k)
        else:
            x_prev, f_prev = previous
            prev_yvar = None if yvar is None else yvar.expand_as(f_prev)
            paths, pred = _extend_and_predict(network, paths, x_prev, f_prev, prev_yvar, x_k)
        mean = pred.mean
        if centre:
            reference = independent_mean[:, : x_k.shape[1], :, k : k + 1]
            mean = mean - mean[:, :, -1:] + reference
        f_k = mean + pred.fvar.sqrt() * z_k  # (B, G or 1, S, 1)
        samples.append(f_k)
        previous = (x_k, f_k)
    full = base_samples.shape[2]
    out = torch.cat([f.expand(b, g, full, f.shape[-1]) for f in samples], dim=-1)[:, :, :s]
    return out[..., torch.argsort(order)]


def _extend_and_predict(
    network: TNPKR,
    paths: ContextCache | PathCache,
    x_new: Tensor,
    y_new: Tensor,
    yvar: Tensor | None,
    xt: Tensor,
) -> tuple[PathCache, Prediction]:
    """``extend`` by one point and ``predict_paths`` at one point, in one pass of the blocks.

    Args:
        x_new: `B x Ga x 1 x d`; y_new: `B x Ga x S x 1`; yvar: as ``y_new`` or None;
        xt: `B x Gt x 1 x d` (``Ga`` is 1 or ``Gt``).

    Returns:
        What ``extend(..., x_new, y_new, yvar)`` and then ``predict_paths(..., xt)`` return.
    """
    paths = _as_paths(paths, xt)
    b = paths.context.batch_size
    loc = paths.context.y_loc.view(b, 1, 1, 1)
    scale = paths.context.y_scale.view(b, 1, 1, 1)
    ratio = None if yvar is None else yvar / scale**2
    extra = context_features((y_new - loc) / scale, torch.ones_like(y_new), ratio)
    a_pad, a_bias = network._pad_inputs(x_new, paths.context.distance_scale)
    a_pad = a_pad.unsqueeze(2).expand(*extra.shape[:3], 1, a_pad.shape[-1])
    c = network.embed(torch.cat([a_pad, extra], dim=-1))  # (B, Ga, S, 1, D)
    t_pad, t_bias = network._pad_inputs(xt, paths.context.distance_scale)
    t = network.embed(torch.cat([t_pad, xt.new_zeros(*xt.shape[:-1], _EXTRA_FEATURES)], dim=-1))
    groups = max(x_new.shape[1], xt.shape[1], paths.num_groups)
    num = max(c.shape[2], paths.num_paths)
    both = torch.cat(
        [c.expand(b, groups, num, 1, -1), t.unsqueeze(2).expand(b, groups, num, 1, -1)], dim=-2
    )  # (B, G, S, 2, D): the new context token, then the test token
    x_both = torch.cat([a_bias.expand(b, groups, 1, -1), t_bias.expand(b, groups, 1, -1)], dim=-2)
    added = list(paths.added)
    for index, block in enumerate(network.blocks):
        normed = block.norm_attn(both)
        added[index] = extend_paths(block.attention, added[index], normed[..., :1, :], a_bias)
        memory = paths.context.memories[index]
        both = both + read_paths(block.attention, normed, x_both, memory, added[index])
        both = both + block.ffn(block.norm_ffn(both))
    x_all = torch.cat([paths.x.expand(b, groups, -1, -1), x_new.expand(b, groups, -1, -1)], -2)
    prediction = _readout(network, paths.context, both[..., 1:, :], xt)
    return PathCache(context=paths.context, x=x_all, added=added), prediction


def _readout(network: TNPKR, context: ContextCache, t: Tensor, xt: Tensor) -> Prediction:
    """``network.readout`` of `B x G x S x m x D` path tokens at `B x G x m x d` inputs ``xt``
    with the context's scales. A near path reads the context's points only, not the path's
    added points."""
    shape = (context.batch_size, 1, 1, 1)
    var_scale = None if context.var_scale is None else context.var_scale.view(shape)
    near = network.near_inputs(context, xt)
    near = None if near is None else near.unsqueeze(2)  # (B, G, 1, m, F)
    loc, scale = context.y_loc.view(shape), context.y_scale.view(shape)
    return network.readout(t, loc, scale, var_scale, near)


def _shared_prefix(xt: Tensor, base_samples: Tensor) -> int:
    """Number of leading points whose inputs and base samples agree across all groups."""
    if xt.shape[1] == 1:
        return xt.shape[-2]
    same_x = (xt == xt[:, :1]).all(dim=-1).all(dim=0).all(dim=0)  # (q,)
    same_z = (base_samples == base_samples[:, :1]).all(dim=2).all(dim=0).all(dim=0)
    same = same_x & same_z
    if bool(same.all()):
        return xt.shape[-2]
    return int(torch.argmin(same.to(torch.int64)))
