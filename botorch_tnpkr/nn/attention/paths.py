"""Attention for sample paths: queries read a shared context memory plus keys of their own.

Autoregressive sampling (``nn/causal.py``) adds sampled points to a context, one sample path
at a time. Copying the context memory into every path would cost `S x n` per block; instead
the context memory (batch `B`, what the backend's ``memory`` returned) is read once by all
paths, and each path keeps only its own *added* keys.

Shapes (`G` groups of paths sharing inputs, `S` paths per group; either may be 1 and
broadcast, e.g. before any sampled value enters, all paths of a group are the same):

* path tokens: `B x G x S x m x D` (layer-normed);
* inputs: `B x G x m x max_dim`, shared by the paths of a group (scaled as for ``read``);
* added memory (``None`` while no point was added), per backend:
  exact: ``(k, v, x)``: `B x G x S x H x a x Dh` keys and values, `B x G x a x max_dim` inputs,
  and with ``ard_bias`` a fourth, the keys' ``ard_keys`` (`B x G x S x H x a x (2 max_dim + 1)`);
  linear (DKA, Performer): ``(log_f, v)``: `B x G x S x H x a x F` log features,
  `B x G x S x H x a x Dh` values.

The context part of a read costs O(n) per query and path (O(1) for the linear backends); the
bias between queries and context keys depends only on inputs, so it is computed once per
group and shared by the `S` paths (with ``ard_bias`` the added keys' scales differ by path, so
that part of the bias is computed per path).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from botorch_tnpkr.nn.attention.base import AttentionBackend
from botorch_tnpkr.nn.attention.exact import ExactAttention, logit_scale, masked_fill_value
from botorch_tnpkr.nn.attention.linear import DeepKernelAttention, PerformerAttention
from botorch_tnpkr.nn.bias import ard_distance_to_keys, ard_keys, scaled_distance

AddedMemory = tuple[Tensor, ...] | None


def extend_paths(
    attention: AttentionBackend, added: AddedMemory, tokens: Tensor, x: Tensor
) -> AddedMemory:
    """The added memory with new keys appended (visible to every later read).

    Args:
        attention: The backend of one block.
        added: The current added memory, or None.
        tokens: `B x G x S x a x D` layer-normed tokens of the new keys.
        x: `B x G x a x max_dim` scaled inputs of the new keys.

    Returns:
        The added memory holding the old and the new keys.
    """
    if isinstance(attention, ExactAttention):
        k, v = attention.kv_proj(tokens).chunk(2, dim=-1)
        h = attention.num_heads
        new: tuple[Tensor, ...] = (_split_heads(k, h), _split_heads(v, h), x)
        scale_sq = attention.key_scales(tokens)  # (B, G, S, H, a, max_dim) or None
        if scale_sq is not None:
            new = (*new, ard_keys(x[:, :, None, None], scale_sq))
    elif isinstance(attention, (DeepKernelAttention, PerformerAttention)):
        new = _linear_keys(attention, tokens, x)
    else:
        raise NotImplementedError(f"{type(attention).__name__} has no sample-path support.")
    if added is None:
        return new
    return tuple(_cat_broadcast(old, cur, dim=-2) for old, cur in zip(added, new, strict=True))


def read_paths(
    attention: AttentionBackend, tokens: Tensor, x: Tensor, context: Any, added: AddedMemory
) -> Tensor:
    """Attend from path tokens to the context memory and the added keys together.

    Args:
        attention: The backend of one block.
        tokens: `B x G x S x m x D` layer-normed query tokens.
        x: `B x G x m x max_dim` scaled query inputs.
        context: The block's context memory (batch `B`).
        added: The paths' added memory, or None.

    Returns:
        `B x G' x S' x m x D`, the broadcast of the tokens' and the memories' batch shapes:
        the same as ``attention.read`` on the context plus the added keys, for every path.
    """
    if isinstance(attention, ExactAttention):
        return _read_exact(attention, tokens, x, context, added)
    if isinstance(attention, (DeepKernelAttention, PerformerAttention)):
        return _read_linear(attention, tokens, x, context, added)
    raise NotImplementedError(f"{type(attention).__name__} has no sample-path support.")


# ----------------------------------------------------------------------------- helpers
def _split_heads(t: Tensor, num_heads: int) -> Tensor:
    """`... x n x (H Dh)` to `... x H x n x Dh`."""
    *lead, n, width = t.shape
    return t.view(*lead, n, num_heads, width // num_heads).transpose(-2, -3)


def _merge_heads(t: Tensor) -> Tensor:
    """`... x H x n x Dh` to `... x n x (H Dh)`."""
    *lead, h, n, dh = t.shape
    return t.transpose(-2, -3).reshape(*lead, n, h * dh)


def _cat_broadcast(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """Concatenate along ``dim`` after broadcasting every other dimension."""
    shape = list(torch.broadcast_shapes(_without(a.shape, dim), _without(b.shape, dim)))
    size_a, size_b = a.shape[dim], b.shape[dim]
    pos = dim % a.dim()
    a = a.expand(*shape[:pos], size_a, *shape[pos:])
    b = b.expand(*shape[:pos], size_b, *shape[pos:])
    return torch.cat([a, b], dim=dim)


def _without(shape: torch.Size, dim: int) -> torch.Size:
    dims = list(shape)
    del dims[dim]
    return torch.Size(dims)


def _flat_tokens(tokens: Tensor, x: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
    """Tokens and inputs broadcast to `B x G x S x m` and flattened to `(B G S) x m`."""
    b, g, s, m, dim = tokens.shape
    g = max(g, x.shape[1])
    tokens = tokens.expand(b, g, s, m, dim)
    xs = x.unsqueeze(2).expand(b, g, s, m, x.shape[-1])
    lead = torch.Size([b, g, s])
    return tokens.reshape(-1, m, dim), xs.reshape(-1, m, x.shape[-1]), lead


class _Softmax:
    """Running maximum, sum and weighted values of an online softmax over key blocks."""

    def __init__(self) -> None:
        self.max: Tensor | None = None
        self.sum: Tensor | None = None
        self.acc: Tensor | None = None

    def add(self, block_max: Tensor, block_sum: Tensor, block_acc: Tensor) -> None:
        if self.max is None:
            self.max, self.sum, self.acc = block_max, block_sum, block_acc
            return
        new_max = torch.maximum(self.max, block_max)
        old, cur = torch.exp(self.max - new_max), torch.exp(block_max - new_max)
        self.sum = self.sum * old + block_sum * cur
        self.acc = self.acc * old + block_acc * cur
        self.max = new_max

    def result(self) -> Tensor:
        return self.acc / self.sum


def _read_exact(
    attention: ExactAttention, tokens: Tensor, x: Tensor, context: Any, added: AddedMemory
) -> Tensor:
    k_c, v_c, x_c, mask_c, any_c, scale_c = context
    b, _, _, m, dim = tokens.shape
    h, dh = attention.num_heads, attention.dim_head
    q = _split_heads(attention.q_proj(tokens), h) / math.sqrt(dh)  # (B, G, S, H, m, Dh)
    # Log-n scaling counts the context's valid keys and the path's added ones together.
    num_keys = mask_c.sum(-1) + (0 if added is None else added[0].shape[-2])
    scale = logit_scale(num_keys, attention.trained_context, q.dtype)  # (B,) or None
    if scale is not None:
        q = q * scale.view(b, 1, 1, 1, 1, 1)
    g = max(q.shape[1], x.shape[1], 1 if added is None else added[0].shape[1])
    s = max(q.shape[2], 1 if added is None else added[0].shape[2])
    q = q.expand(b, g, s, h, m, dh)
    x = x.expand(b, g, m, x.shape[-1])
    state = _Softmax()
    n = k_c.shape[-2]
    if n:
        # Context keys: every path's rows in one matrix product per head (B, H, G S m, Dh).
        rows = q.permute(0, 3, 1, 2, 4, 5).reshape(b, h, g * s * m, dh)
        x_rows = x.reshape(b, g * m, x.shape[-1])
        chunk = n if attention.mode == "softmax" else attention.chunk
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logits = torch.matmul(rows, k_c[..., start:stop, :].transpose(-1, -2))
            part = None if scale_c is None else scale_c[..., start:stop, :]
            bias = attention.bias(attention.distance(x_rows, x_c[:, start:stop], part))
            if scale is not None:
                bias = bias * scale.view(b, 1, 1, 1)
            bias = bias.masked_fill(
                ~mask_c[:, None, None, start:stop], masked_fill_value(bias.dtype)
            )  # (B, H, G m, c)
            logits = logits.view(b, h, g, s, m, -1) + bias.view(b, h, g, 1, m, -1)
            logits = logits.view(b, h, g * s * m, -1)
            block_max = logits.amax(dim=-1, keepdim=True)
            weights = torch.exp(logits - block_max)
            acc = torch.matmul(weights, v_c[..., start:stop, :])
            state.add(
                *(
                    t.view(b, h, g, s, m, -1).permute(0, 2, 3, 1, 4, 5)
                    for t in (block_max, weights.sum(dim=-1, keepdim=True), acc)
                )
            )
    if added is not None:
        k_a, v_a, x_a = added[:3]
        a = k_a.shape[-2]
        logits = torch.matmul(q, k_a.transpose(-1, -2))  # (B, G, S, H, m, a)
        if len(added) == 4:  # ARD: each path's added keys carry their own scales
            xq = x[:, :, None, None]  # (B, G, 1, 1, m, D)
            bias = attention.bias(ard_distance_to_keys(xq, added[3]))  # (B, G, S', H, m, a)
        else:
            xq = x.reshape(b * g, m, x.shape[-1])
            xk = x_a.expand(b, g, a, x_a.shape[-1]).reshape(b * g, a, x_a.shape[-1])
            bias = attention.bias(scaled_distance(xq, xk, 1.0)).view(b, g, 1, h, m, a)
        if scale is not None:
            bias = bias * scale.view(b, 1, 1, 1, 1, 1)
        logits = logits + bias
        block_max = logits.amax(dim=-1, keepdim=True)
        weights = torch.exp(logits - block_max)
        state.add(block_max, weights.sum(dim=-1, keepdim=True), torch.matmul(weights, v_a))
    if state.max is None:  # nothing to attend to
        return tokens.new_zeros(b, g, s, m, dim)
    out = attention.out_proj(_merge_heads(state.result()))  # (B, G, S, m, D)
    if added is None:
        # As in ``read``: a task without valid keys reads zero (after the projection's bias).
        out = out * any_c.view(b, 1, 1, 1, 1).to(out.dtype)
    return out


def _linear_keys(
    attention: DeepKernelAttention | PerformerAttention, tokens: Tensor, x: Tensor
) -> tuple[Tensor, Tensor]:
    """Log features `B x G x S x H x a x F` and values `B x G x S x H x a x Dh` of new keys."""
    flat, xs, lead = _flat_tokens(tokens, x)
    if isinstance(attention, DeepKernelAttention):
        log_f = attention._log_features(flat, xs)
        v = attention.values(flat)
    else:
        k, v = attention.kv_proj(flat).chunk(2, dim=-1)
        log_f = attention._log_features(attention._heads(k))
        v = attention._heads(v)
    return log_f.view(*lead, *log_f.shape[1:]), v.view(*lead, *v.shape[1:])


def _read_linear(
    attention: DeepKernelAttention | PerformerAttention,
    tokens: Tensor,
    x: Tensor,
    context: Any,
    added: AddedMemory,
) -> Tensor:
    kv_c, ks_c, stab_c = context  # (B, H, F, Dh), (B, H, F), (B, H, 1, 1)
    if added is not None:
        g = max(tokens.shape[1], x.shape[1], added[0].shape[1])
        s = max(tokens.shape[2], added[0].shape[2])
        tokens = tokens.expand(tokens.shape[0], g, s, *tokens.shape[3:])
    flat, xs, lead = _flat_tokens(tokens, x)
    b, g, s = lead
    m, dim = flat.shape[-2:]
    if isinstance(attention, DeepKernelAttention):
        log_fq = attention._log_features(flat, xs)
    else:
        log_fq = attention._log_features(attention._heads(attention.q_proj(flat)))
    h = log_fq.shape[1]
    # A per-query factor cancels in the ratio below.
    fq = torch.exp(log_fq - log_fq.amax(dim=-1, keepdim=True).detach())  # ((B G S), H, m, F)
    rows = fq.view(b, g * s, h, m, -1).transpose(1, 2).reshape(b, h, g * s * m, -1)
    num = torch.matmul(rows, kv_c)  # (B, H, G S m, Dh)
    den = torch.matmul(rows, ks_c.unsqueeze(-1))
    num = num.view(b, h, g, s, m, -1).permute(0, 2, 3, 1, 4, 5)  # (B, G, S, H, m, Dh)
    den = den.view(b, h, g, s, m, 1).permute(0, 2, 3, 1, 4, 5)
    if added is not None:
        log_f, v = added
        stab_c = stab_c.view(b, 1, 1, h, 1, 1)
        # One common scale for the context sums and the added keys of each path and head.
        top = torch.maximum(stab_c, log_f.amax(dim=(-2, -1), keepdim=True)).detach()
        f_a = torch.exp(log_f - top)  # (B, G, S, H, a, F)
        weights = torch.matmul(fq.view(b, g, s, h, m, -1), f_a.transpose(-1, -2))
        rescale = torch.exp(stab_c - top)
        num = num * rescale + torch.matmul(weights, v)
        den = den * rescale + weights.sum(dim=-1, keepdim=True)
    tiny = torch.finfo(den.dtype).tiny
    out = torch.where(den > tiny, num / den.clamp_min(tiny), torch.zeros_like(num))
    return attention.out_proj(_merge_heads(out)).view(b, g, s, m, dim)
