"""Typed errors of botorch-tnpkr.

The network (``botorch_tnpkr.nn``) knows nothing of BoTorch, so it raises these; the BoTorch
model translates them into BoTorch's ``InputDataError`` / ``UnsupportedError`` at its boundary.
Each subclasses ``ValueError`` so that generic callers can still catch them.
"""

from __future__ import annotations


class TNPKRError(ValueError):
    """Base class of every error this package raises on purpose."""


class ConfigError(TNPKRError):
    """A network configuration is invalid (the message names the field and what is allowed)."""


class InputShapeError(TNPKRError):
    """Tensors handed to the network have inconsistent shapes, dtypes or devices."""


class DimensionError(TNPKRError):
    """The input dimension is outside ``1..max_dim`` of the network."""


class NonFiniteInputError(TNPKRError):
    """Inputs contain NaN or infinity."""


class CheckpointError(TNPKRError):
    """A checkpoint is unknown, corrupted, truncated, or of an unsupported format version."""
