"""The BoTorch side of botorch-tnpkr: ``TNPKRModel`` (this package imports BoTorch)."""

from __future__ import annotations

from botorch_tnpkr.model.network import (
    DEFAULT_LINEAR_ABOVE,
    DEFAULT_SCAN_ABOVE,
    auto_checkpoint_name,
    prepare_network,
)
from botorch_tnpkr.model.tnpkr_model import TNPKRModel

__all__ = [
    "DEFAULT_LINEAR_ABOVE",
    "DEFAULT_SCAN_ABOVE",
    "TNPKRModel",
    "auto_checkpoint_name",
    "prepare_network",
]
