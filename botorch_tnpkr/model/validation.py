"""Input checks of ``TNPKRModel`` and the translation of network errors into BoTorch's.

Everything a user can get wrong raises one of BoTorch's typed errors with a message that
names the argument: ``BotorchTensorDimensionError`` (shapes), ``InputDataError`` (values,
dtypes) or ``UnsupportedError`` (what the pretrained network cannot do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from botorch.exceptions.errors import (
    BotorchTensorDimensionError,
    InputDataError,
    UnsupportedError,
)
from torch import Tensor

from botorch_tnpkr.errors import DimensionError, InputShapeError, NonFiniteInputError
from botorch_tnpkr.nn.adaptation import DEFAULT_ADAPTATION, Adaptation
from botorch_tnpkr.nn.calibration import DEFAULT_CALIBRATION, Calibration


@contextmanager
def network_errors() -> Iterator[None]:
    """Re-raise the network's typed errors as the BoTorch errors a BoTorch user expects."""
    try:
        yield
    except DimensionError as err:
        raise UnsupportedError(str(err)) from err
    except NonFiniteInputError as err:
        raise InputDataError(str(err)) from err
    except InputShapeError as err:
        raise BotorchTensorDimensionError(str(err)) from err


def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise InputDataError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if not value.is_floating_point():
        raise InputDataError(f"{name} must be a floating-point tensor, got {value.dtype}.")
    return value


def check_finite(name: str, value: Tensor) -> None:
    """Raise ``InputDataError`` if ``value`` holds NaN or infinity."""
    if bool(torch.isnan(value).any()):
        raise InputDataError(f"{name} contains NaN values.")
    if not bool(torch.isfinite(value).all()):
        raise InputDataError(f"{name} contains infinite values.")


def check_training_data(train_X: Tensor, train_Y: Tensor, train_Yvar: Tensor | None) -> None:
    """Check the training data of a model (BoTorch's conventions, stated in the messages).

    Args:
        train_X: `batch_shape x n x d`.
        train_Y: `batch_shape x n x m` (the output dimension is required, as in BoTorch).
        train_Yvar: Optional `batch_shape x n x m`, finite and >= 0.
    """
    _check_tensor("train_X", train_X)
    _check_tensor("train_Y", train_Y)
    if train_X.dim() < 2:
        raise BotorchTensorDimensionError(
            f"train_X must have shape `batch_shape x n x d`, got {tuple(train_X.shape)}."
        )
    if train_Y.dim() != train_X.dim():
        hint = ""
        if train_Y.dim() == train_X.dim() - 1 and train_Y.shape == train_X.shape[:-1]:
            hint = " An explicit output dimension is required: use train_Y.unsqueeze(-1)."
        raise BotorchTensorDimensionError(
            f"train_Y must have shape `batch_shape x n x m` matching train_X "
            f"{tuple(train_X.shape)}, got {tuple(train_Y.shape)}.{hint}"
        )
    if train_Y.shape[:-1] != train_X.shape[:-1]:
        raise BotorchTensorDimensionError(
            f"train_X {tuple(train_X.shape)} and train_Y {tuple(train_Y.shape)} must share "
            "`batch_shape x n`."
        )
    if train_X.shape[-2] < 1:
        raise InputDataError("The training data must hold at least one observation (n >= 1).")
    if train_X.shape[-1] < 1 or train_Y.shape[-1] < 1:
        raise BotorchTensorDimensionError("train_X needs d >= 1 and train_Y m >= 1 columns.")
    if train_Y.dtype != train_X.dtype:
        raise InputDataError(
            f"train_X ({train_X.dtype}) and train_Y ({train_Y.dtype}) must share one dtype."
        )
    check_finite("train_X", train_X)
    check_finite("train_Y", train_Y)
    if train_Yvar is not None:
        _check_tensor("train_Yvar", train_Yvar)
        if train_Yvar.shape != train_Y.shape:
            raise BotorchTensorDimensionError(
                f"train_Yvar must have the shape of train_Y {tuple(train_Y.shape)}, got "
                f"{tuple(train_Yvar.shape)}."
            )
        if train_Yvar.dtype != train_X.dtype:
            raise InputDataError(
                f"train_Yvar ({train_Yvar.dtype}) must have the dtype of train_X ({train_X.dtype})."
            )
        check_finite("train_Yvar", train_Yvar)
        if bool((train_Yvar < 0).any()):
            raise InputDataError("train_Yvar contains negative variances.")


def check_test_inputs(X: Tensor, input_dim: int | None, dtype: torch.dtype) -> None:
    """Check the ``X`` of ``posterior``: `batch_shape x q x d`, the model's dtype, finite.

    ``input_dim=None`` leaves ``d`` to the caller (an input transform may change it).
    """
    _check_tensor("X", X)
    if X.dim() < 2:
        with_d = "" if input_dim is None else f" with d={input_dim}"
        raise BotorchTensorDimensionError(
            f"X must have shape `q x d` or `batch_shape x q x d`{with_d}, got {tuple(X.shape)}."
        )
    if input_dim is not None and X.shape[-1] != input_dim:
        raise BotorchTensorDimensionError(
            f"X has d={X.shape[-1]} input columns; the model was built on d={input_dim}."
        )
    if X.dtype != dtype:
        raise InputDataError(
            f"X has dtype {X.dtype}; the model was built on {dtype} data. Convert with "
            f"X.to({dtype})."
        )
    check_finite("X", X)


# The network was trained on the unit cube. Far from it its prediction saturates (inputs
# enter through a linear embedding that is layer-normalised, and distance biases that vanish),
# but magnitudes near 1e19 and beyond overflow in float32 and make every prediction NaN.
FAR_INPUT = 1e6


def clamp_far(X: Tensor) -> Tensor:
    """Inputs clamped to ``[-FAR_INPUT, FAR_INPUT]``: the far-field prediction, never NaN."""
    return X.clamp(-FAR_INPUT, FAR_INPUT)


def check_output_indices(output_indices: list[int] | None, num_outputs: int) -> list[int] | None:
    """Validate ``output_indices`` (negative indices allowed, as in Python)."""
    if output_indices is None:
        return None
    idcs = [int(i) for i in output_indices]
    bad = [i for i in idcs if not -num_outputs <= i < num_outputs]
    if not idcs or bad:
        raise BotorchTensorDimensionError(
            f"output_indices must be a non-empty list of indices into the model's "
            f"{num_outputs} outputs, got {list(output_indices)}."
        )
    return [i % num_outputs for i in idcs]


def broadcast_batch(name: str, *shapes: torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` with a BoTorch error naming what failed to broadcast."""
    # Plain Python: ``torch.broadcast_shapes`` costs a one-off import of ~2 s on first use.
    rank = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out: list[int] = []
    for sizes in zip(*padded, strict=True):
        wide = {size for size in sizes if size != 1}
        if len(wide) > 1:
            raise BotorchTensorDimensionError(
                f"The batch shape of {name} does not broadcast with the model's batch shape: "
                f"{[tuple(s) for s in shapes]}."
            )
        out.append(wide.pop() if wide else 1)
    return torch.Size(out)


def _optional_setting(flag: str, value: object, kind: type, default: Any) -> Any:
    """What ``TNPKRModel(<flag>=value)`` asks for: ``default`` for True, None for False, a
    ``kind`` instance as it is; anything else is an ``UnsupportedError``."""
    if isinstance(value, kind):
        return value
    if isinstance(value, bool):
        return default if value else None
    raise UnsupportedError(
        f"{flag} must be True (the default {kind.__name__}), False (none) or a "
        f"botorch_tnpkr.nn.{kind.__name__}, got {value!r}."
    )


def check_adaptation(adapt: object) -> Adaptation | None:
    """The ``Adaptation`` that ``TNPKRModel(adapt=...)`` asks for, or None (off)."""
    return _optional_setting("adapt", adapt, Adaptation, DEFAULT_ADAPTATION)


def check_calibration(calibrate: object) -> Calibration | None:
    """The ``Calibration`` that ``TNPKRModel(calibrate=...)`` asks for, or None (off)."""
    return _optional_setting("calibrate", calibrate, Calibration, DEFAULT_CALIBRATION)
