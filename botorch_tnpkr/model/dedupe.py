"""Predict each distinct test point once, and remember points that keep coming back.

Monte-Carlo acquisition functions ask for the same points many times. qLogNEI appends its
baseline (the observed points) to every raw sample and every restart: at 500 trials one call
with 1,024 raw samples holds 1,024 copies of the same 500 rows, and every L-BFGS iteration
asks for them again. A GP answers them from a cached solve; the network would re-predict them
all. TNP-KR predicts test points independently given the history, so

* within a call, each distinct row is predicted once and its outputs shared by its copies;
* across calls, rows that were repeated within a call (the baseline, not the candidates being
  optimised) are remembered with their outputs, for as long as the history's encoding lives
  (``PredictionMemo`` is tied to one context cache and only used when that cache carries no
  gradient: fantasy models differentiate through their history and are not memoised).

Rows are matched exactly (bit for bit) through a random-projection hash, verified row by row,
so a hash collision costs a prediction, never a wrong answer.

Gradients stay exact. Shared outputs carry the gradient with respect to the history. The
gradient with respect to each copy of a row is restored with a first-order term
``J(x_u) (x_i - x_u)``: its value is exactly zero (the rows are equal) and its derivative is
the Jacobian ``J`` of the shared prediction, which is what each copy would have received on its
own (a row's outputs depend on that row only). Second derivatives in ``X`` are not provided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# Below this many test rows (and without remembered rows) looking for duplicates does not pay.
MIN_ROWS = 32
# Without remembered rows, share the work only when at most this share of rows is distinct.
MAX_UNIQUE_SHARE = 0.75
# The memo stops growing at this many rows (a few MB for the default network).
MAX_MEMO_ROWS = 100_000

Predict = Callable[[Tensor], tuple[Tensor, ...]]


def carries_grad(value: object) -> bool:
    """Whether any tensor in ``value`` (a cache: dataclass, tuples, lists) requires grad."""
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(carries_grad(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return any(carries_grad(getattr(value, f)) for f in value.__dataclass_fields__)
    return False


def _hash(rows: Tensor, weights: Tensor) -> Tensor:
    """A float64 key per row (`n x k` rows, `k` weights); equal rows get equal keys."""
    return rows.to(torch.float64) @ weights


@dataclass
class _Distinct:
    """Distinct rows of a `n x k` row matrix: ``first`` (`U`) and ``inverse`` (`n`) indices."""

    first: Tensor
    inverse: Tensor

    @classmethod
    def find(cls, rows: Tensor, keys: Tensor) -> _Distinct:
        n = rows.shape[0]
        _, inverse = torch.unique(keys, return_inverse=True)
        num = int(inverse.max()) + 1 if n else 0
        positions = torch.arange(n, device=rows.device)
        first = torch.full((num,), n, dtype=positions.dtype, device=rows.device)
        first = first.scatter_reduce(0, inverse, positions, reduce="amin")
        # A hash collision puts different rows in one group: those become their own rows.
        clash = (rows != rows[first[inverse]]).any(-1).nonzero().squeeze(-1)
        if clash.numel():
            inverse = inverse.clone()
            inverse[clash] = num + torch.arange(clash.numel(), device=rows.device)
            first = torch.cat([first, clash])
        return cls(first, inverse)

    @property
    def counts(self) -> Tensor:
        return torch.bincount(self.inverse, minlength=self.first.numel())


class PredictionMemo:
    """Outputs of rows predicted from one context cache, for the calls that follow.

    Holds, for `M` rows: their `B x M x d` inputs, the `M` row keys, each output `B x M`, and
    (once asked for with gradients) each output's Jacobian `B x M x d`.
    """

    def __init__(self, cache: object, xt: Tensor) -> None:
        b, _, d = xt.shape
        self.cache = cache
        gen = torch.Generator().manual_seed(20_261_201)
        self.weights = torch.randn(b * d, generator=gen, dtype=torch.float64).to(xt.device)
        self.x = xt.new_zeros(b, 0, d)
        self.keys = torch.zeros(0, dtype=torch.float64, device=xt.device)
        self.outputs: list[Tensor] | None = None
        self.jacobians: list[Tensor] | None = None

    def matches(self, cache: object, xt: Tensor) -> bool:
        b, _, d = self.x.shape
        return self.cache is cache and xt.shape[0] == b and xt.shape[-1] == d

    @property
    def size(self) -> int:
        return self.keys.numel()

    def lookup(self, rows: Tensor, keys: Tensor) -> Tensor:
        """`n` memo index of each row, ``-1`` where the row is not remembered."""
        if self.size == 0:
            return torch.full_like(keys, -1, dtype=torch.long)
        order = torch.argsort(self.keys)
        pos = torch.searchsorted(self.keys[order], keys).clamp_max(self.size - 1)
        idx = order[pos]
        flat = self.x.transpose(0, 1).reshape(self.size, -1)
        found = (self.keys[idx] == keys) & (flat[idx] == rows).all(-1)
        return torch.where(found, idx, torch.full_like(idx, -1))

    def add(self, x: Tensor, keys: Tensor, outputs: Sequence[Tensor], jacobians) -> None:
        """Remember `B x k x d` rows ``x`` with their keys, outputs and (optional) Jacobians."""
        if self.size + keys.numel() > MAX_MEMO_ROWS or keys.numel() == 0:
            return
        outputs = [o.detach() for o in outputs]
        if self.size == 0:
            self.outputs, self.jacobians = outputs, None if jacobians is None else list(jacobians)
        else:
            self.outputs = [torch.cat(pair, 1) for pair in zip(self.outputs, outputs, strict=True)]
            if self.jacobians is None or jacobians is None:
                self.jacobians = None  # recomputed for all rows when next needed
            else:
                pairs = zip(self.jacobians, jacobians, strict=True)
                self.jacobians = [torch.cat(pair, 1) for pair in pairs]
        self.x = torch.cat([self.x, x.detach()], dim=1)
        self.keys = torch.cat([self.keys, keys])

    def ensure_jacobians(self, predict: Predict) -> None:
        """Compute the Jacobians of every remembered row (once, when gradients are needed)."""
        if self.jacobians is not None or self.size == 0:
            return
        _, self.jacobians = _predict_with_jacobians(predict, self.x)


def _predict_with_jacobians(predict: Predict, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs of `B x k x d` rows and their Jacobians `B x k x d` (zeros where unused)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = list(predict(x))
        jacobians = []
        for out in outputs:
            jac = None
            if out.requires_grad:
                (jac,) = torch.autograd.grad(out.sum(), x, retain_graph=True, allow_unused=True)
            jacobians.append(torch.zeros_like(x) if jac is None else jac)
    return outputs, jacobians


def predict_rows(
    predict: Predict,
    xt: Tensor,
    cache: object,
    memo: PredictionMemo | None,
    cache_has_grad: bool,
) -> tuple[tuple[Tensor, ...], PredictionMemo | None]:
    """``predict(xt)``, computing each distinct row once and remembering repeated rows.

    Args:
        predict: Maps `B x k x d` test inputs to a tuple of `B x k` outputs, each row's outputs
            depending on that row only.
        xt: `B x nT x d` test inputs; a row is the `B x d` slice at one ``nT`` index.
        cache: The context cache ``predict`` reads (only its identity is used).
        memo: The memo the previous call returned (or None); ignored unless it was made for
            this ``cache`` and this layout.
        cache_has_grad: Whether the context cache carries gradients (then nothing is
            remembered across calls).

    Returns:
        The outputs ``predict(xt)`` would return (same values, same first derivatives), and
        the memo to pass to the next call.
    """
    b, n, d = xt.shape
    if cache_has_grad or (memo is not None and not memo.matches(cache, xt)):
        memo = None
    usable = memo is not None and memo.size > 0
    if n < MIN_ROWS and not usable:
        return predict(xt), memo
    rows = xt.detach().transpose(0, 1).reshape(n, b * d)
    if memo is None:
        memo = PredictionMemo(cache, xt)
    keys = _hash(rows, memo.weights)
    hits = memo.lookup(rows, keys) if usable else torch.full_like(keys, -1, dtype=torch.long)
    miss = (hits < 0).nonzero().squeeze(-1)
    distinct = _Distinct.find(rows[miss], keys[miss])
    if not usable and distinct.first.numel() > MAX_UNIQUE_SHARE * n:
        return predict(xt), memo
    needs_x_grad = torch.is_grad_enabled() and xt.requires_grad
    first = miss[distinct.first]  # position in xt of each fresh distinct row
    repeated = distinct.counts > 1  # asked for more than once in this call: the baseline
    # Fresh rows in two groups: single rows (the candidates) keep the plain autograd path;
    # repeated ones are predicted detached, with Jacobians when gradients are needed.
    groups = [(~repeated).nonzero().squeeze(-1), repeated.nonzero().squeeze(-1)]
    if not needs_x_grad:
        groups = [torch.arange(first.numel(), device=xt.device), groups[1][:0]]
    fresh_x, fresh, fresh_jac = [], [], []
    for group, detached in zip(groups, (not needs_x_grad, True), strict=True):
        if group.numel() == 0:
            continue
        if detached:
            x = xt.detach()[:, first[group]]
            if needs_x_grad:
                out, jac = _predict_with_jacobians(predict, x)
            else:
                out, jac = list(predict(x)), None
        else:
            x = xt[:, first[group]]  # gradients flow to the only copy of each row
            out = list(predict(x))
            jac = [torch.zeros_like(x.detach()) for _ in out]
        fresh_x.append(x.detach())
        fresh.append(out)
        fresh_jac.append(jac)
    if needs_x_grad and usable:
        memo.ensure_jacobians(predict)
    order = torch.cat(groups)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)

    # One index per row into [remembered rows, fresh rows in group order].
    num_memo = memo.size if usable else 0
    index = hits.clone()
    index[miss] = num_memo + rank[distinct.inverse]
    parts_x = ([memo.x] if num_memo else []) + fresh_x
    source_x = torch.cat(parts_x, 1)
    outputs = []
    num_outputs = len(fresh[0]) if fresh else len(memo.outputs)
    for k in range(num_outputs):
        parts = ([memo.outputs[k]] if num_memo else []) + [out[k] for out in fresh]
        outputs.append(torch.cat(parts, 1)[:, index])
    if needs_x_grad:
        offset = xt - source_x[:, index]  # exactly zero, differentiable in xt
        for k in range(num_outputs):
            parts = ([memo.jacobians[k]] if num_memo else []) + [jac[k] for jac in fresh_jac]
            outputs[k] = outputs[k] + (offset * torch.cat(parts, 1)[:, index]).sum(-1)

    if not cache_has_grad and bool(repeated.any()):
        keep = rank[repeated.nonzero().squeeze(-1)]  # their place among the fresh rows
        fresh_all = [torch.cat([out[k] for out in fresh], 1) for k in range(num_outputs)]
        jac_all = None
        if needs_x_grad:
            jac_all = [torch.cat([jac[k] for jac in fresh_jac], 1) for k in range(num_outputs)]
        memo.add(
            torch.cat(fresh_x, 1)[:, keep],
            keys[first[repeated]],
            [o[:, keep] for o in fresh_all],
            None if jac_all is None else [j[:, keep] for j in jac_all],
        )
    return tuple(outputs), None if cache_has_grad else memo
