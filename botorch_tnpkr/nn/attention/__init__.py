"""Attention backends of TNP-KR behind one interface (``AttentionBackend``)."""

from __future__ import annotations

from botorch_tnpkr.nn.attention.base import AttentionBackend
from botorch_tnpkr.nn.attention.exact import ExactAttention
from botorch_tnpkr.nn.attention.linear import DeepKernelAttention, PerformerAttention
from botorch_tnpkr.nn.config import TNPKRConfig


def build_attention(config: TNPKRConfig) -> AttentionBackend:
    """The attention module of one KRBlock for ``config.attention``."""
    if config.attention in ("softmax", "scan"):
        return ExactAttention(
            config.dim_model,
            config.num_heads,
            config.num_basis,
            config.attention,
            config.scan_chunk,
            config.trained_context,
            ard_dim=config.max_dim if config.ard_bias else None,
            num_fine=config.fine_basis,
        )
    if config.attention == "dka":
        return DeepKernelAttention(
            config.dim_model, config.max_dim, config.num_heads, config.dka_features
        )
    return PerformerAttention(config.dim_model, config.num_heads, config.performer_features)


__all__ = [
    "AttentionBackend",
    "DeepKernelAttention",
    "ExactAttention",
    "PerformerAttention",
    "build_attention",
]
