"""Training state on disk: one file, written atomically, loaded without unpickling objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from botorch_tnpkr.errors import CheckpointError

STATE_FILE = "trainer_state.pt"


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write the state dict to a temporary file, flush it to disk, then rename it into place.

    A process killed at any moment leaves either the previous file or the new one, never a
    half-written one.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file with ``weights_only=True`` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No training state at {str(path)!r}; start without --resume.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for bad files
        raise CheckpointError(f"Could not read training state {str(path)!r}: {err}") from err
