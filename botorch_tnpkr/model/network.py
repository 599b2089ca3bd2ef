"""Choosing, loading and preparing the network behind a ``TNPKRModel``.

``checkpoint="auto"`` picks a registered checkpoint by the size ``n`` of the history:

* ``n <= linear_above`` (default 4096): ``DEFAULT_CHECKPOINT`` (exact softmax attention with
  the kernel bias, the more accurate network);
* ``n > linear_above``: ``LINEAR_CHECKPOINT`` (deep kernel attention): its context cache has a
  fixed size, so encoding costs O(n) and every posterior call O(number of test points).

An exact-attention network (whichever way it was chosen) runs in ``scan`` mode when
``n > scan_above`` (default 1024): the same function computed tile by tile, so that the
`n x n` attention matrix of the encoding is never materialised. The network is always a
private copy in the dtype and on the device of the training data.
"""

from __future__ import annotations

import copy
import os

import torch

from botorch_tnpkr.checkpoints import (
    DEFAULT_CHECKPOINT,
    LINEAR_CHECKPOINT,
    available_checkpoints,
    load_checkpoint,
)
from botorch_tnpkr.errors import CheckpointError
from botorch_tnpkr.nn import TNPKR
from botorch_tnpkr.nn.config import EXACT_BACKENDS

AUTO = "auto"
DEFAULT_LINEAR_ABOVE = 4096
DEFAULT_SCAN_ABOVE = 1024

CheckpointLike = str | os.PathLike | TNPKR


def auto_checkpoint_name(num_points: int, linear_above: int | None) -> str:
    """The registered checkpoint ``checkpoint="auto"`` uses for a history of ``num_points``."""
    if linear_above is not None and num_points > linear_above:
        return LINEAR_CHECKPOINT
    return DEFAULT_CHECKPOINT


def prepare_network(
    checkpoint: CheckpointLike,
    num_points: int,
    dtype: torch.dtype,
    device: torch.device,
    linear_above: int | None = DEFAULT_LINEAR_ABOVE,
    scan_above: int | None = DEFAULT_SCAN_ABOVE,
) -> tuple[TNPKR, str]:
    """Load (or copy) the network, in eval mode with frozen weights, in ``dtype`` on ``device``.

    Args:
        checkpoint: ``"auto"``, a registered checkpoint name, a path to a network file, or a
            ``TNPKR`` instance (copied; the caller's network is never modified).
        num_points: Size ``n`` of the history (per batch element).
        dtype: Dtype of the training data.
        device: Device of the training data.
        linear_above: ``"auto"`` switches to the linear-attention checkpoint above this ``n``;
            ``None`` never switches.
        scan_above: Exact-attention networks run in ``scan`` mode above this ``n``; ``None``
            keeps the network's own mode.

    Returns:
        The network and a short description of where it came from.

    Raises:
        CheckpointError: The checkpoint is unknown, unregistered, missing or corrupted.
    """
    for name, value in (("linear_above", linear_above), ("scan_above", scan_above)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int or None, got {value!r}.")
    if isinstance(checkpoint, TNPKR):
        network, source = copy.deepcopy(checkpoint), "<TNPKR instance>"
    elif isinstance(checkpoint, str) and checkpoint == AUTO:
        name = auto_checkpoint_name(num_points, linear_above)
        if name not in available_checkpoints():
            raise CheckpointError(
                f"checkpoint='auto' needs the pretrained checkpoint {name!r} for a history of "
                f"n={num_points} points (linear_above={linear_above}), but it is not "
                f"registered (registered: {available_checkpoints()}). Pass checkpoint=<path "
                "to a .safetensors network file> or a TNPKR network instead."
            )
        network, source = load_checkpoint(name), name
    elif isinstance(checkpoint, (str, os.PathLike)):
        network, source = load_checkpoint(checkpoint), os.fspath(checkpoint)
    else:
        raise TypeError(
            "checkpoint must be 'auto', a registered checkpoint name, a path or a TNPKR "
            f"network, got {type(checkpoint).__name__}."
        )
    network = network.to(device=device, dtype=dtype).eval()
    network.requires_grad_(False)
    if network.config.attention in EXACT_BACKENDS and scan_above is not None:
        network.set_exact_backend("scan" if num_points > scan_above else "softmax")
    return network, source
