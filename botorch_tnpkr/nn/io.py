"""Saving and loading networks: safetensors weights with the config as JSON metadata.

Loading reads tensors and JSON only; nothing is unpickled and no code from the file runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from botorch_tnpkr.errors import CheckpointError, ConfigError
from botorch_tnpkr.nn.config import TNPKRConfig
from botorch_tnpkr.nn.model import TNPKR

FORMAT_NAME = "botorch-tnpkr"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


def save_network(
    model: TNPKR, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> None:
    """Write ``model`` to a safetensors file, atomically (temporary file, then rename).

    Args:
        model: The network.
        path: Destination file (``.safetensors``).
        extra: JSON-serialisable metadata stored beside the config (e.g. training step).
    """
    path = Path(path)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Config and extra metadata of a network file, validated (no tensors are read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No network file at {str(path)!r}.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {err}") from err
    if raw.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{str(path)!r} is not a {FORMAT_NAME} network file.")
    version = raw.get("format_version")
    if version not in {str(v) for v in SUPPORTED_VERSIONS}:
        raise CheckpointError(
            f"{str(path)!r} has format version {version!r}; this release reads versions "
            f"{list(SUPPORTED_VERSIONS)}."
        )
    try:
        config = TNPKRConfig.from_dict(json.loads(raw["config"]))
        extra = json.loads(raw.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as err:
        raise CheckpointError(f"{str(path)!r} carries an invalid config: {err}") from err
    return {"config": config, "extra": extra}


def load_network(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TNPKR:
    """Rebuild a network from its file alone.

    Raises:
        CheckpointError: The file is missing, not safetensors, of an unknown format version,
            or its tensors do not match its config. No half-loaded model is ever returned.
    """
    meta = read_metadata(path)
    model = TNPKR(meta["config"])
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"Could not read the tensors of {str(path)!r}: {err}") from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"{str(path)!r} does not match its config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {bad_shape[:5]}."
        )
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise CheckpointError(f"{str(path)!r} holds non-finite weights.")
    model.load_state_dict(state)
    model.to(map_location)
    return model.eval()
