"""Pretrained checkpoints shipped inside the package, listed by name with their sha256."""

from __future__ import annotations

from botorch_tnpkr.checkpoints.registry import (
    DEFAULT_CHECKPOINT,
    LINEAR_CHECKPOINT,
    available_checkpoints,
    checkpoint_info,
    load_checkpoint,
    resolve_checkpoint,
)

__all__ = [
    "DEFAULT_CHECKPOINT",
    "LINEAR_CHECKPOINT",
    "available_checkpoints",
    "checkpoint_info",
    "load_checkpoint",
    "resolve_checkpoint",
]
