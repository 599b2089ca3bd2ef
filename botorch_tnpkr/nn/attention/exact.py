"""Exact softmax attention with the kernel bias: ``softmax`` and ``scan`` modes, same weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from botorch_tnpkr.nn.attention.base import AttentionBackend
from botorch_tnpkr.nn.bias import KernelBias, ard_distance_to_keys, ard_keys, scaled_distance

# (keys, values, key inputs, mask, any valid key, the keys' ``ard_keys`` or None)
ExactMemory = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]
# Bound of the log ARD scales (``ard_bias``): factors between exp(-4) and exp(4).
ARD_LOG_BOUND = 4.0


def masked_fill_value(dtype: torch.dtype) -> float:
    """A large, finite negative logit for invalid keys (finite so that rows stay NaN free)."""
    return torch.finfo(dtype).min / 4


def logit_scale(num_keys: Tensor, trained_context: int | None, dtype: torch.dtype) -> Tensor | None:
    """Log-n scaling factors of the attention logits (``TNPKRConfig.trained_context``).

    Args:
        num_keys: `B` numbers of valid keys of each task's read.
        trained_context: Largest context the network was trained on, or None (no scaling).
        dtype: dtype of the result.

    Returns:
        `B` factors ``max(1, log(n) / log(trained_context))``, or None (no scaling). A factor
        of exactly 1 leaves the logits bit for bit unchanged, so no task up to the trained
        size is affected. On the CPU, None also where no read exceeds ``trained_context``: it
        spares the multiplication of a `B x H x nq x nk` bias by ones (10% of a training
        step); on an accelerator that check would be a host sync on every read, so the
        factors are returned as they are.
    """
    if trained_context is None:
        return None
    if num_keys.device.type == "cpu" and not bool((num_keys > trained_context).any()):
        return None
    # float32 at least (a bf16 log ratio is coarse), never float64 (MPS has none); the
    # ``where`` keeps the factor exactly 1 up to the trained size whatever the rounding.
    n = num_keys.to(torch.promote_types(dtype, torch.float32))
    ratio = n.clamp_min(1.0).log() / math.log(trained_context)
    return torch.where(n > trained_context, ratio, torch.ones_like(ratio)).to(dtype)


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(Dh) + bias) v`` in three batched kernels.

    The same function as ``scaled_dot_product_attention(q, k, v, attn_mask=bias)``. When the
    bias needs a gradient (training; BoTorch's gradients with respect to the test inputs),
    SDPA on the CPU falls back to its math path, whose masking and safe-softmax passes made a
    training step about 20% slower than this; without one, SDPA's fused kernel is faster.

    Args:
        q: `B x H x nq x Dh`; k, v: `B x H x nk x Dh`; bias: `B x H x nq x nk`.

    Returns:
        `B x H x nq x Dh`.
    """
    b, h, nq, dh = q.shape
    nk = k.shape[-2]
    logits = torch.baddbmm(
        bias.reshape(b * h, nq, nk),
        q.reshape(b * h, nq, dh),
        k.reshape(b * h, nk, dh).transpose(1, 2),
        alpha=1.0 / math.sqrt(dh),
    )
    return torch.bmm(torch.softmax(logits, dim=-1), v.reshape(b * h, nk, dh)).view(b, h, nq, dh)


class ExactAttention(AttentionBackend):
    """Multi-head softmax attention whose logits carry a learnable kernel bias of distance.

    ``mode="softmax"`` materialises the `B x H x nq x nk` bias and calls
    ``scaled_dot_product_attention``. ``mode="scan"`` computes the same function tile by tile
    (``chunk`` queries x ``chunk`` keys) with an online softmax, building each tile's bias on
    the fly, so that memory does not grow with ``nq * nk``. During training the tiles of each
    query chunk are recomputed in the backward pass (gradient checkpointing).

    With ``trained_context`` set, a task whose read has more valid keys than that has its
    logits multiplied by ``logit_scale`` (log-n scaling); smaller reads are unchanged.

    With ``ard_dim`` set (``TNPKRConfig.ard_bias``), each key token computes per-head factors
    for the ``ard_dim`` input dimensions (``key_scales``); the memory holds their side of
    ``ard_distance`` (``key_geometry``), so reads only add the queries'.
    The layer that computes them starts at zero (all factors 1: the isotropic bias).
    ``num_fine`` adds fine kernel-bias basis functions (``KernelBias``; ``fine_basis``).
    """

    def __init__(
        self,
        dim_model: int,
        num_heads: int,
        num_basis: int,
        mode: str,
        chunk: int,
        trained_context: int | None = None,
        ard_dim: int | None = None,
        num_fine: int = 0,
    ):
        super().__init__()
        self.trained_context = trained_context
        self.num_heads = num_heads
        self.dim_head = dim_model // num_heads
        self.q_proj = nn.Linear(dim_model, dim_model)
        self.kv_proj = nn.Linear(dim_model, 2 * dim_model)
        self.out_proj = nn.Linear(dim_model, dim_model)
        self.bias = KernelBias(num_heads, num_basis, num_fine)
        self.mode = mode
        self.chunk = chunk
        self.ard: nn.Linear | None = None
        if ard_dim is not None:
            self.ard = nn.Linear(dim_model, num_heads * ard_dim)
            nn.init.zeros_(self.ard.weight)
            nn.init.zeros_(self.ard.bias)

    def key_scales(self, tokens: Tensor) -> Tensor | None:
        """Squared per-head ARD factors of key tokens, or None without ``ard_bias``.

        Args:
            tokens: `... x n x D` layer-normed key tokens.

        Returns:
            `... x H x n x max_dim` squared factors in ``[exp(-8), exp(8)]``.
        """
        if self.ard is None:
            return None
        raw = self.ard(tokens)  # (..., n, H * max_dim)
        log_s = ARD_LOG_BOUND * torch.tanh(raw / ARD_LOG_BOUND)
        log_s = log_s.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)
        return torch.exp(2.0 * log_s)

    def key_geometry(self, tokens: Tensor, x: Tensor) -> Tensor | None:
        """``ard_keys`` of a key set (`B x H x n x (2 max_dim + 1)`), or None without ARD.

        Args:
            tokens: `B x n x D` layer-normed key tokens; x: `B x n x max_dim` scaled inputs.
        """
        scale_sq = self.key_scales(tokens)
        return None if scale_sq is None else ard_keys(x.unsqueeze(-3), scale_sq)

    def distance(self, xq: Tensor, xk: Tensor, geometry: Tensor | None) -> Tensor:
        """Bias distances: `B x nq x nk` shared by the heads, or `B x H x nq x nk` (ARD).

        Args:
            xq: `B x nq x max_dim`; xk: `B x nk x max_dim` scaled inputs.
            geometry: The keys' ``key_geometry`` (`B x H x nk x (2 max_dim + 1)`) or None.
        """
        if geometry is None:
            return scaled_distance(xq, xk, 1.0)
        return ard_distance_to_keys(xq.unsqueeze(-3), geometry)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.dim_head).transpose(1, 2)  # (B, H, n, Dh)

    def memory(self, tokens: Tensor, x: Tensor, mask: Tensor) -> ExactMemory:
        k, v = self.kv_proj(tokens).chunk(2, dim=-1)
        any_valid = mask.any(dim=-1)  # (B,)
        geometry = self.key_geometry(tokens, x)
        return self._heads(k), self._heads(v), x, mask, any_valid, geometry

    def read(self, tokens: Tensor, x: Tensor, memory: ExactMemory) -> Tensor:
        k, v, xk, mask, any_valid, geometry = memory
        b, nq, dim = tokens.shape
        if k.shape[-2] == 0 or nq == 0:
            return tokens.new_zeros(b, nq, dim)
        q = self._heads(self.q_proj(tokens))  # (B, H, nq, Dh)
        scale = logit_scale(mask.sum(-1), self.trained_context, q.dtype)  # (B,) or None
        if scale is not None:
            q = q * scale.view(b, 1, 1, 1)
        if self.mode == "softmax":
            out = self._softmax(q, k, v, x, xk, mask, scale, geometry)
        else:
            out = self._scan(q, k, v, x, xk, mask, scale, geometry)
        out = self.out_proj(out.transpose(1, 2).reshape(b, nq, dim))
        # Zero after the projection, as for an empty key set (the projection has a bias).
        return out * any_valid.view(b, 1, 1).to(out.dtype)

    def _logit_bias(
        self,
        xq: Tensor,
        xk: Tensor,
        mask: Tensor,
        scale: Tensor | None = None,
        geometry: Tensor | None = None,
    ) -> Tensor:
        """`B x H x nq x nk` kernel bias (times the `B` ``scale``), invalid keys filled."""
        bias = self.bias(self.distance(xq, xk, geometry))  # (B, H, nq, nk)
        if scale is not None:
            bias = bias * scale.view(-1, 1, 1, 1)
        # Training batches have no invalid keys; skipping the fill saves a pass over the bias
        # and its backward. Checked on the CPU only (on an accelerator it is a host sync).
        if mask.device.type == "cpu" and bool(mask.all()):
            return bias
        return bias.masked_fill(~mask[:, None, None, :], masked_fill_value(bias.dtype))

    def _softmax(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        xq: Tensor,
        xk: Tensor,
        mask: Tensor,
        scale: Tensor | None,
        geometry: Tensor | None,
    ) -> Tensor:
        bias = self._logit_bias(xq, xk, mask, scale, geometry)
        if bias.requires_grad and q.device.type == "cpu":
            return biased_attention(q, k, v, bias)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    def _scan(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        xq: Tensor,
        xk: Tensor,
        mask: Tensor,
        scale: Tensor | None,
        geometry: Tensor | None,
    ) -> Tensor:
        outs = []
        for start in range(0, q.shape[-2], self.chunk):
            stop = start + self.chunk
            args = (q[..., start:stop, :], k, v, xq[:, start:stop], xk, mask, scale, geometry)
            if self.training and torch.is_grad_enabled():
                outs.append(checkpoint(self._scan_rows, *args, use_reentrant=False))
            else:
                outs.append(self._scan_rows(*args))
        return torch.cat(outs, dim=-2)

    def _scan_rows(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        xq: Tensor,
        xk: Tensor,
        mask: Tensor,
        scale: Tensor | None,
        geometry: Tensor | None,
    ) -> Tensor:
        """Online-softmax attention of one query chunk over all key chunks.

        ``q`` `B x H x nq x Dh` (already multiplied by ``scale``), ``k``, ``v``
        `B x H x nk x Dh`, ``xq`` `B x nq x max_dim`, ``xk`` `B x nk x max_dim`, ``mask``
        `B x nk`, ``scale`` `B` or None, ``geometry`` `B x H x nk x (2 max_dim + 1)` or None.
        """
        inv_sqrt = 1.0 / math.sqrt(q.shape[-1])
        run_max = q.new_full((*q.shape[:-1], 1), float("-inf"))
        run_sum = q.new_zeros((*q.shape[:-1], 1))
        acc = torch.zeros_like(q)
        for start in range(0, k.shape[-2], self.chunk):
            stop = start + self.chunk
            logits = torch.matmul(q, k[..., start:stop, :].transpose(-1, -2)) * inv_sqrt
            part = None if geometry is None else geometry[..., start:stop, :]
            bias = self._logit_bias(xq, xk[:, start:stop], mask[:, start:stop], scale, part)
            logits = logits + bias
            new_max = torch.maximum(run_max, logits.amax(dim=-1, keepdim=True))
            weights = torch.exp(logits - new_max)
            rescale = torch.exp(run_max - new_max)
            run_sum = run_sum * rescale + weights.sum(dim=-1, keepdim=True)
            acc = acc * rescale + torch.matmul(weights, v[..., start:stop, :])
            run_max = new_max
        return acc / run_sum
