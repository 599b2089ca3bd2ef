"""The KRBlock: pre-norm, one attention shared by both streams, one shared FFN."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from botorch_tnpkr.nn.attention import build_attention
from botorch_tnpkr.nn.config import TNPKRConfig


class KRBlock(nn.Module):
    """One block of TNP-KR.

    Context tokens attend to the context (test tokens never do, so the context stream is
    independent of the test points); test tokens attend to the same context memory.
    """

    def __init__(self, config: TNPKRConfig) -> None:
        super().__init__()
        dim = config.dim_model
        self.norm_attn = nn.LayerNorm(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.attention = build_attention(config)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.dim_ffn), nn.GELU(), nn.Linear(config.dim_ffn, dim)
        )

    def context_step(self, c: Tensor, xc: Tensor, mask: Tensor) -> tuple[Tensor, Any]:
        """Update context tokens `B x nC x D`; also return the memory the test stream reads."""
        cn = self.norm_attn(c)
        memory = self.attention.memory(cn, xc, mask)
        c = c + self.attention.read(cn, xc, memory)
        return c + self.ffn(self.norm_ffn(c)), memory

    def test_step(self, t: Tensor, xt: Tensor, memory: Any) -> Tensor:
        """Update test tokens `B x nT x D` from the context memory of this block."""
        t = t + self.attention.read(self.norm_attn(t), xt, memory)
        return t + self.ffn(self.norm_ffn(t))
