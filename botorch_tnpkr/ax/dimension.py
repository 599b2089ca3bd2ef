"""The inputs Ax hands to a ``TNPKRModel``: their number, checked against ``max_dim``.

Ax's BoTorch-modular node encodes the search space with ``MBM_X_trans_base`` (fixed
parameters removed, choices made numeric, unordered choices with more than two values
one-hot encoded, log / logit scaling) before it builds the model, so a choice parameter
with ``k > 2`` unordered values costs ``k`` input dimensions. Checking that encoded
dimension when the strategy is configured catches a search space the network cannot take
before any trial runs, instead of after the initialization trials.
"""

from __future__ import annotations

import os

from ax.adapter.adapter_utils import extract_search_space_digest
from ax.adapter.registry import MBM_X_trans_base
from ax.core.search_space import SearchSpace

from botorch_tnpkr.checkpoints import (
    DEFAULT_CHECKPOINT,
    LINEAR_CHECKPOINT,
    available_checkpoints,
    resolve_checkpoint,
)
from botorch_tnpkr.errors import CheckpointError, DimensionError
from botorch_tnpkr.model.network import AUTO, DEFAULT_LINEAR_ABOVE
from botorch_tnpkr.nn import read_metadata


def _encode(search_space: SearchSpace) -> SearchSpace:
    """``search_space`` as Ax's BoTorch-modular node hands it to the model."""
    encoded = search_space.clone()
    for transform_class in MBM_X_trans_base:
        transform = transform_class(search_space=encoded)
        encoded = transform.transform_search_space(encoded)
    return encoded


def encoded_dimension(search_space: SearchSpace) -> int:
    """Number of model inputs Ax's BoTorch-modular node makes of ``search_space``."""
    return len(_encode(search_space).parameters)


def is_fully_discrete(search_space: SearchSpace) -> bool:
    """Whether every encoded input is discrete (integers, ordered or two-valued choices).

    Ax then optimises the acquisition with a discrete optimiser (enumeration or local
    search), which rejects BoTorch's ``options`` (``maxiter``, ``batch_limit``, ...).
    One-hot columns of unordered choices count as continuous, as in Ax.
    """
    encoded = _encode(search_space)
    names = list(encoded.parameters)
    digest = extract_search_space_digest(encoded, names)
    return len(digest.discrete_choices) == len(names)  # as Ax's ``determine_optimizer``


def checkpoint_max_dim(
    checkpoint: str | os.PathLike, linear_above: int | None = DEFAULT_LINEAR_ABOVE
) -> int:
    """The largest input dimension the network(s) behind ``checkpoint`` accept.

    Reads the config from the file's metadata only (no weights). For ``"auto"`` it is the
    smaller ``max_dim`` of the registered checkpoints the model may pick: the exact one,
    and the linear-attention one unless ``linear_above`` is None (never switches).

    Raises:
        CheckpointError: The name is unknown, the file is missing or not a network file,
            or ``"auto"`` is used while no pretrained checkpoint is registered.
    """
    if isinstance(checkpoint, str) and checkpoint == AUTO:
        names = [DEFAULT_CHECKPOINT]
        if linear_above is not None and LINEAR_CHECKPOINT in available_checkpoints():
            names.append(LINEAR_CHECKPOINT)
        if DEFAULT_CHECKPOINT not in available_checkpoints():
            raise CheckpointError(
                f"checkpoint='auto' needs the pretrained checkpoint {DEFAULT_CHECKPOINT!r}, "
                f"which is not registered (registered: {available_checkpoints()}). Pass "
                "checkpoint=<path to a .safetensors network file> instead."
            )
        return min(checkpoint_max_dim(name) for name in names)
    path, _ = resolve_checkpoint(checkpoint)
    return read_metadata(path)["config"].max_dim


def check_search_space(
    search_space: SearchSpace,
    checkpoint: str | os.PathLike = AUTO,
    linear_above: int | None = DEFAULT_LINEAR_ABOVE,
) -> int:
    """Raise early if the encoded ``search_space`` has more dimensions than the network takes.

    Args:
        search_space: The experiment's search space.
        checkpoint: What the strategy's ``TNPKRModel`` will load (see ``checkpoint_max_dim``).
        linear_above: As in ``TNPKRModel``; only matters for ``checkpoint="auto"``.

    Returns:
        The encoded dimension ``d``.

    Raises:
        DimensionError: ``d`` exceeds the network's ``max_dim`` (the message names both and
            the parameters that take the most dimensions).
        CheckpointError: See ``checkpoint_max_dim``.
    """
    d = encoded_dimension(search_space)
    max_dim = checkpoint_max_dim(checkpoint, linear_above=linear_above)
    if d > max_dim:
        widths = _widths(search_space)
        widest = ", ".join(f"{name!r}: {k}" for name, k in widths[:5])
        raise DimensionError(
            f"The search space encodes to d={d} model inputs (unordered choice parameters "
            f"are one-hot encoded; largest: {widest}), but the TNP-KR network of "
            f"checkpoint {str(checkpoint)!r} accepts at most max_dim={max_dim}. Remove or "
            "merge parameters, make choice parameters ordered, or use a checkpoint with a "
            "larger max_dim."
        )
    return d


def _widths(search_space: SearchSpace) -> list[tuple[str, int]]:
    """Encoded width of each parameter, widest first."""
    widths = []
    for name, parameter in search_space.parameters.items():
        single = SearchSpace(parameters=[parameter.clone()])
        widths.append((name, encoded_dimension(single)))
    return sorted(widths, key=lambda item: -item[1])


__all__ = [
    "check_search_space",
    "checkpoint_max_dim",
    "encoded_dimension",
    "is_fully_discrete",
]
