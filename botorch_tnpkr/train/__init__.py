"""Pretraining of TNP-KR networks on synthetic GP priors (never imported by inference code)."""

from __future__ import annotations

from botorch_tnpkr.train.loop import RunOptions, train
from botorch_tnpkr.train.presets import PRESETS, TrainPreset, get_preset

__all__ = ["PRESETS", "RunOptions", "TrainPreset", "get_preset", "train"]
