"""Between BoTorch's tensor layout and the network's.

The network works on flat batches: a context ``yc`` is `B x nC`, test inputs ``xt`` are
`B x nT x d`, one output per task. A model with batch shape ``model_batch`` and ``m`` outputs
keeps ``B = prod(model_batch) * m`` contexts, ordered ``(*model_batch, m)``.

Test points are conditionally independent given the context, so every batch dimension of
``X`` that is not a model batch dimension can be folded into ``nT``: one ``predict`` call
answers any `test_batch x q x d` input, whatever its rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def contexts(train_X: Tensor, train_Y: Tensor, train_Yvar: Tensor | None):
    """Fold `batch x n x d` inputs and `batch x n x m` targets into the network's contexts.

    Returns:
        ``xc`` `B x n x d`, ``yc`` `B x n` and ``yvar`` `B x n` (or None), with
        ``B = prod(batch) * m`` ordered ``(*batch, m)``.
    """
    *batch, n, d = train_X.shape
    m = train_Y.shape[-1]
    xc = train_X.unsqueeze(-3).expand(*batch, m, n, d).reshape(-1, n, d)
    yc = train_Y.transpose(-1, -2).reshape(-1, n)
    yvar = None if train_Yvar is None else train_Yvar.transpose(-1, -2).reshape(-1, n)
    return xc, yc, yvar


@dataclass(frozen=True)
class QueryLayout:
    """How `batch x q x d` test inputs map onto `prod(model_batch) * m` network tasks.

    ``X`` is broadcast to ``out_batch = broadcast(X batch, model_batch)``; the trailing
    ``len(model_batch)`` dimensions of ``out_batch`` are split into the model's own size (1 or
    equal) and a repeat factor; everything but the model dimensions goes into ``nT``.
    """

    out_batch: torch.Size
    model_batch: torch.Size
    lead: torch.Size
    repeat: tuple[int, ...]
    q: int
    num_outputs: int

    @classmethod
    def build(cls, out_batch: torch.Size, model_batch: torch.Size, q: int, m: int) -> QueryLayout:
        k = len(model_batch)
        lead = out_batch[: len(out_batch) - k]
        tail = out_batch[len(out_batch) - k :]
        repeat = tuple(t if mb == 1 else 1 for t, mb in zip(tail, model_batch, strict=True))
        return cls(out_batch, model_batch, lead, repeat, q, m)

    def _split_shape(self) -> list[int]:
        shape = list(self.lead)
        for mb, r in zip(self.model_batch, self.repeat, strict=True):
            shape += [mb, r]
        return shape

    def fold(self, X: Tensor) -> Tensor:
        """`out_batch x q x d` (broadcast) to ``xt`` `prod(model_batch) * m x nT x d`."""
        d = X.shape[-1]
        k, lead = len(self.model_batch), len(self.lead)
        X = X.expand(*self.out_batch, self.q, d).reshape(*self._split_shape(), self.q, d)
        model_axes = [lead + 2 * i for i in range(k)]
        repeat_axes = [lead + 2 * i + 1 for i in range(k)]
        perm = [*model_axes, *range(lead), *repeat_axes, lead + 2 * k, lead + 2 * k + 1]
        xt = X.permute(perm).reshape(math.prod(self.model_batch), 1, -1, d)
        m = self.num_outputs
        return xt.expand(-1, m, -1, -1).reshape(-1, xt.shape[-2], d)

    def unfold(self, z: Tensor) -> Tensor:
        """Network output `prod(model_batch) * m x nT` to `out_batch x q x m`."""
        m = self.num_outputs
        k, lead = len(self.model_batch), len(self.lead)
        z = z.reshape(-1, m, z.shape[-1]).transpose(-1, -2)  # (prod model_batch, nT, m)
        z = z.reshape(*self.model_batch, *self.lead, *self.repeat, self.q, m)
        interleaved = [axis for i in range(k) for axis in (i, k + lead + i)]
        perm = [*range(k, k + lead), *interleaved, 2 * k + lead, 2 * k + lead + 1]
        return z.permute(perm).reshape(*self.out_batch, self.q, m)
