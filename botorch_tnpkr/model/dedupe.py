"""Predict each distinct test point once.

Monte-Carlo acquisition functions ask for the same points many times in one call: qLogNEI
appends its baseline (every observed point) to each of its raw samples and restarts, so at 500
trials a call with 1,024 raw samples holds 1,024 copies of the same 500 rows. A GP reuses a
cached solve for them; the network would re-predict them all. Because TNP-KR predicts test
points independently given the history, each distinct row needs to be predicted only once and
its outputs can be shared by every copy.

Gradients stay exact. The outputs of a shared row carry the gradient with respect to the
history (fantasies and qKG need it); the gradient with respect to each copy of the row is
restored with a first-order term ``J(x_u) (x_i - x_u)``: its value is exactly zero (the rows
are bit-for-bit equal) and its derivative is the Jacobian ``J`` of the shared prediction,
which is what each copy would have received on its own (a row's outputs depend on that row
only). Second derivatives with respect to ``X`` are not provided.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# Below this many test rows the search for duplicates costs more than it saves.
MIN_ROWS = 256
# Predict on the distinct rows only when they are at most this share of all rows.
MAX_UNIQUE_SHARE = 0.75


def distinct_rows(xt: Tensor) -> tuple[Tensor, Tensor] | None:
    """The distinct test rows of a folded batch, if there are few enough to pay off.

    Args:
        xt: `B x nT x d` test inputs; a row is the `B x d` slice at one ``nT`` index, so rows
            are shared only where all ``B`` tasks ask for the same point there.

    Returns:
        ``(first, inverse)``: `U` indices of the first occurrence of each distinct row and the
        `nT` index of each row's distinct row; ``None`` when there are fewer than
        ``MIN_ROWS`` rows or more than ``MAX_UNIQUE_SHARE`` of them are distinct.
    """
    b, n, d = xt.shape
    if n < MIN_ROWS:
        return None
    rows = xt.detach().transpose(0, 1).reshape(n, b * d)
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    num_unique = int(inverse.max()) + 1
    if num_unique > MAX_UNIQUE_SHARE * n:
        return None
    positions = torch.arange(n, device=xt.device)
    first = torch.full((num_unique,), n, dtype=positions.dtype, device=xt.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return first, inverse


def predict_distinct(
    predict: Callable[[Tensor], tuple[Tensor, ...]],
    xt: Tensor,
    rows: tuple[Tensor, Tensor],
) -> tuple[Tensor, ...]:
    """``predict(xt)`` computed on the distinct rows only.

    Args:
        predict: Maps `B x n x d` test inputs to a tuple of `B x n` outputs, each row's outputs
            depending on that row only.
        xt: `B x nT x d` test inputs.
        rows: What ``distinct_rows(xt)`` returned.

    Returns:
        The tuple of `B x nT` outputs ``predict(xt)`` would return, with the same values and
        the same first derivatives with respect to ``xt`` and to anything ``predict`` closes
        over.
    """
    first, inverse = rows
    needs_x_grad = torch.is_grad_enabled() and xt.requires_grad
    shared_x = xt.detach()[:, first]
    if needs_x_grad:
        shared_x.requires_grad_(True)
    outputs = predict(shared_x)
    gathered = tuple(out[:, inverse] for out in outputs)
    if not needs_x_grad:
        return gathered
    offset = xt - shared_x.detach()[:, inverse]  # exactly zero, differentiable in xt
    result = []
    for out, full in zip(outputs, gathered, strict=True):
        if out.requires_grad:
            (jac,) = torch.autograd.grad(out.sum(), shared_x, retain_graph=True, allow_unused=True)
            if jac is not None:
                full = full + (offset * jac[:, inverse]).sum(-1)
        result.append(full)
    return tuple(result)
