"""TNP-KR in plain PyTorch (no BoTorch import)."""

from __future__ import annotations

from botorch_tnpkr.nn.adaptation import Adaptation, fit_distance_scale
from botorch_tnpkr.nn.calibration import Calibration, variance_scale
from botorch_tnpkr.nn.config import ATTENTION_BACKENDS, TNPKRConfig
from botorch_tnpkr.nn.io import load_network, read_metadata, save_network
from botorch_tnpkr.nn.model import TNPKR, ContextCache, Prediction

__all__ = [
    "ATTENTION_BACKENDS",
    "TNPKR",
    "Adaptation",
    "Calibration",
    "ContextCache",
    "Prediction",
    "TNPKRConfig",
    "fit_distance_scale",
    "load_network",
    "read_metadata",
    "save_network",
    "variance_scale",
]
