"""Registry of shipped checkpoints: ``registry.json`` maps a name to a file and its sha256.

``load_checkpoint`` accepts a registered name or a path to a ``.safetensors`` file; a
registered file is verified against its sha256 before a single tensor is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from botorch_tnpkr.errors import CheckpointError
from botorch_tnpkr.nn import TNPKR, load_network

CHECKPOINT_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = CHECKPOINT_DIR / "registry.json"
DEFAULT_CHECKPOINT = "tnpkr-exact"
LINEAR_CHECKPOINT = "tnpkr-dka"


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict[str, Any]]:
    if not REGISTRY_FILE.is_file():
        return {}
    return json.loads(REGISTRY_FILE.read_text())


def available_checkpoints() -> list[str]:
    """Names of the checkpoints shipped with this package."""
    return sorted(_registry())


def checkpoint_info(name: str) -> dict[str, Any]:
    """Registry entry of a shipped checkpoint (file, sha256, attention, description)."""
    registry = _registry()
    if name not in registry:
        raise CheckpointError(
            f"Unknown checkpoint {name!r}; shipped checkpoints: {available_checkpoints()}, "
            "or pass a path to a .safetensors file."
        )
    return registry[name]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, str | None]:
    """The file of a checkpoint name or path, and the sha256 it must have (None for paths)."""
    if isinstance(checkpoint, str) and checkpoint in _registry():
        info = _registry()[checkpoint]
        return CHECKPOINT_DIR / info["file"], info["sha256"]
    path = Path(checkpoint)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise CheckpointError(f"No checkpoint file at {str(path)!r}.")
        return path, None
    raise CheckpointError(
        f"Unknown checkpoint {str(checkpoint)!r}; shipped checkpoints: "
        f"{available_checkpoints()}, or pass a path to a .safetensors file."
    )


def load_checkpoint(
    checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
    sha256: str | None = None,
    map_location: str | torch.device = "cpu",
) -> TNPKR:
    """Load a network by registered name or path, verifying its sha256 when one is known.

    Args:
        checkpoint: A name from ``available_checkpoints()`` or a path to a network file.
        sha256: Expected digest for a path (registered names carry their own).
        map_location: Device of the returned network.

    Raises:
        CheckpointError: Unknown name, missing, corrupted or mismatching file.
    """
    path, expected = resolve_checkpoint(checkpoint)
    expected = sha256 or expected
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} has sha256 {actual}, expected {expected}: the file "
                "is corrupted or was replaced; reinstall the package or pass the right file."
            )
    return load_network(path, map_location=map_location)
