"""Kernels of the synthetic priors (batched, ARD), by name; user-defined ones can be registered.

The four built-in stationary kernels are ``KERNELS``. ``register_kernel(name, function)`` adds a
user-defined one (a periodic or an additive kernel, say), after which ``name`` can be used in
``PriorConfig(kernels=...)`` for pretraining and in ``botorch_tnpkr.evaluate`` for evaluation,
exactly like a built-in kernel: the sampler draws tasks from it and the oracle GP uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from botorch_tnpkr.errors import ConfigError

KERNELS = ("matern12", "matern32", "matern52", "rbf")

KernelFunction = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``function(x1, x2, lengthscale) -> correlation`` of a user-defined kernel.

Args: ``x1`` `B x n1 x d`, ``x2`` `B x n2 x d`, ``lengthscale`` `B x d` (each task's ARD
lengthscales as drawn by the prior). Returns `B x n1 x n2`: a positive semi-definite
correlation with 1 on the diagonal of ``function(x, x, lengthscale)``; it is multiplied by each
task's output scale. It must be written with batched torch operations and keep the dtype.
"""

_CUSTOM_KERNELS: dict[str, KernelFunction] = {}


def register_kernel(name: str, function: KernelFunction, *, overwrite: bool = False) -> None:
    """Make a user-defined kernel available to the priors and the evaluation by ``name``.

    Registration is per process: register the kernel before building the ``PriorConfig`` that
    names it (a training script, or a notebook cell that runs first). Configs store the name,
    so presets stay JSON-serialisable.

    Example:
        >>> def periodic(x1, x2, lengthscale):  # period 0.25 in every dimension
        ...     diff = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).abs()  # (B, n1, n2, d)
        ...     s = torch.sin(math.pi * diff / 0.25) / lengthscale.view(-1, 1, 1, x1.shape[-1])
        ...     return torch.exp(-2 * s.pow(2).sum(-1))
        >>> register_kernel("periodic", periodic)
        >>> prior = PriorConfig(kernels=("periodic",), kernel_weights=(1.0,))

    Args:
        name: The kernel's name; must not be one of the built-in ``KERNELS``.
        function: See ``KernelFunction``.
        overwrite: Replace a kernel registered earlier under the same name.

    Raises:
        ConfigError: ``name`` is empty or built in, already registered (without
            ``overwrite``), or ``function`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A kernel name must be a non-empty string, got {name!r}.")
    if name in KERNELS:
        raise ConfigError(f"{name!r} is a built-in kernel ({KERNELS}); choose another name.")
    if name in _CUSTOM_KERNELS and not overwrite:
        raise ConfigError(
            f"A kernel named {name!r} is already registered; pass overwrite=True to replace it."
        )
    if not callable(function):
        raise ConfigError(f"The kernel {name!r} must be a callable, got {function!r}.")
    _CUSTOM_KERNELS[name] = function


def kernel_names() -> tuple[str, ...]:
    """All kernels known in this process: the built-in ``KERNELS``, then registered ones.

    ``GPHyper.kernel_id`` indexes this tuple (registration order, so ids are per process).
    """
    return KERNELS + tuple(_CUSTOM_KERNELS)


def kernel_index(name: str) -> int:
    """The ``kernel_id`` of a kernel name (raises ``ConfigError`` for an unknown name)."""
    names = kernel_names()
    if name not in names:
        raise ConfigError(
            f"Unknown kernel {name!r}; known kernels: {list(names)} (register your own with "
            "botorch_tnpkr.priors.register_kernel)."
        )
    return names.index(name)


def scaled_sqdist(x1: Tensor, x2: Tensor, lengthscale: Tensor) -> Tensor:
    """Squared distances after dividing each dimension by its lengthscale.

    Args:
        x1: `B x n1 x d`.
        x2: `B x n2 x d`.
        lengthscale: `B x d`.

    Returns:
        `B x n1 x n2`.
    """
    a = x1 / lengthscale.unsqueeze(1)
    b = x2 / lengthscale.unsqueeze(1)
    sq = (
        a.pow(2).sum(-1, keepdim=True)
        + b.pow(2).sum(-1).unsqueeze(-2)
        - 2 * a @ b.transpose(-1, -2)
    )
    return sq.clamp_min(0.0)


def _builtin_kernel_matrix(
    x1: Tensor, x2: Tensor, kernel_id: Tensor, lengthscale: Tensor, outputscale: Tensor
) -> Tensor:
    sq = scaled_sqdist(x1, x2, lengthscale)
    r = torch.sqrt(sq + 1e-30)
    s3, s5 = math.sqrt(3.0) * r, math.sqrt(5.0) * r
    values = torch.stack(
        [
            torch.exp(-r),
            (1 + s3) * torch.exp(-s3),
            (1 + s5 + s5.pow(2) / 3) * torch.exp(-s5),
            torch.exp(-0.5 * sq),
        ]
    )  # (4, B, n1, n2)
    index = kernel_id.view(1, -1, 1, 1).expand(1, *values.shape[1:])
    return values.gather(0, index).squeeze(0) * outputscale.view(-1, 1, 1)


def kernel_matrix(
    x1: Tensor, x2: Tensor, kernel_id: Tensor, lengthscale: Tensor, outputscale: Tensor
) -> Tensor:
    """Covariance of each task under its own kernel.

    Args:
        x1: `B x n1 x d`.
        x2: `B x n2 x d`.
        kernel_id: `B` long, indices into ``kernel_names()`` (built-in kernels first).
        lengthscale: `B x d` ARD lengthscales.
        outputscale: `B` signal variances.

    Returns:
        `B x n1 x n2` covariance matrices.

    Raises:
        ConfigError: A registered kernel returned a tensor of the wrong shape.
    """
    builtin = kernel_id < len(KERNELS)
    if bool(builtin.all()):
        return _builtin_kernel_matrix(x1, x2, kernel_id, lengthscale, outputscale)
    shape = (x1.shape[0], x1.shape[1], x2.shape[1])
    out = x1.new_empty(shape)
    if bool(builtin.any()):
        out[builtin] = _builtin_kernel_matrix(
            x1[builtin], x2[builtin], kernel_id[builtin], lengthscale[builtin], outputscale[builtin]
        )
    names = kernel_names()
    for index in kernel_id[~builtin].unique().tolist():
        sel = kernel_id == index
        name = names[index]
        corr = _CUSTOM_KERNELS[name](x1[sel], x2[sel], lengthscale[sel])
        expected = (int(sel.sum()), shape[1], shape[2])
        if tuple(corr.shape) != expected:
            raise ConfigError(
                f"The registered kernel {name!r} returned shape {tuple(corr.shape)} for "
                f"x1 {tuple(x1[sel].shape)} and x2 {tuple(x2[sel].shape)}; expected {expected}."
            )
        out[sel] = corr.to(out.dtype) * outputscale[sel].view(-1, 1, 1)
    return out
