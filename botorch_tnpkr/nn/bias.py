"""Kernel attention bias: learnable radial basis functions of the distance between inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

# Added under the square root so that distance gradients stay finite at coincident points.
_DIST_EPS = 1e-12
# Floor of the basis functions' exponents. Sharp functions (fine_basis: widths up to ~1e5)
# reach exponents of -1e4 at ordinary distances, and exp() of those lands among float32's
# subnormal numbers (below e^-87), which x86 CPUs process 10-100x slower: a LogEI step with
# two fine functions took 2.3x as long at n = 4,000. At e^-60 (< 1e-26, times amplitudes of
# order 1) a term is nothing next to the logits; the 5 trained functions never go below -50.
EXP_FLOOR = -60.0
# Initial lengthscales (in scaled distance) of the first and last fine basis functions.
FINE_LENGTHSCALES = (0.003, 0.03)


def scaled_distance(xq: Tensor, xk: Tensor, inv_scale: float) -> Tensor:
    """Euclidean distances between two point sets, times ``inv_scale``.

    Args:
        xq: `B x nq x D` query inputs.
        xk: `B x nk x D` key inputs.
        inv_scale: Factor applied to every distance (the network uses ``1 / sqrt(d)`` so that
            distances of points in the unit cube stay comparable across dimensions).

    Returns:
        `B x nq x nk` scaled distances.
    """
    sq = (
        xq.pow(2).sum(-1, keepdim=True)
        + xk.pow(2).sum(-1).unsqueeze(-2)
        - 2.0 * torch.matmul(xq, xk.transpose(-1, -2))
    )
    dist = torch.sqrt(sq.clamp_min(0.0) + _DIST_EPS)
    return dist if inv_scale == 1.0 else dist * inv_scale


def ard_keys(xk: Tensor, scale_sq: Tensor) -> Tensor:
    """The key side of ``ard_distance``, computed once per key set (a context memory).

    Args:
        xk: `... x 1 x nk x D` key inputs.
        scale_sq: `... x H x nk x D` squared scales ``s_kj^2``.

    Returns:
        `... x H x nk x (2 D + 1)`: ``[s^2, -2 s^2 xk, sum_j s_j^2 xk_j^2]``. float64 when the
        inputs are float32 on the CPU: the scales depend on the context's values, so float32
        rounding of the expansion (up to eps * s^2 |x|^2 where the true distance is 0) made
        predictions jump by about 1e-4 under last-bit changes of ``y``.
    """
    if torch.promote_types(scale_sq.dtype, xk.dtype) == torch.float32 and xk.device.type == "cpu":
        xk, scale_sq = xk.double(), scale_sq.double()
    weighted = scale_sq * xk  # (..., H, nk, D)
    key_term = (weighted * xk).sum(-1, keepdim=True)  # (..., H, nk, 1)
    return torch.cat([scale_sq, -2.0 * weighted, key_term], dim=-1)


def ard_distance_to_keys(xq: Tensor, keys: Tensor) -> Tensor:
    """``ard_distance`` from the keys' ``ard_keys``, in the dtype of ``xq``.

    ``sum_j s^2 xq^2 - 2 s^2 xq xk + s^2 xk^2`` as one matrix product over ``[xq^2, xq, 1]``:
    the `... x H x nq x nk` result is written once (this runs for every head of every read).

    Args:
        xq: `... x 1 x nq x D` query inputs.
        keys: `... x H x nk x (2 D + 1)` from ``ard_keys``.

    Returns:
        `... x H x nq x nk` distances.
    """
    dtype = xq.dtype
    xq = xq.to(keys.dtype)
    q_aug = torch.cat([xq.square(), xq, torch.ones_like(xq[..., :1])], dim=-1)
    sq = torch.matmul(q_aug, keys.transpose(-1, -2))
    if torch.is_grad_enabled() and sq.requires_grad:
        return torch.sqrt(sq.clamp_min(0.0) + _DIST_EPS).to(dtype)
    return sq.clamp_min_(0.0).add_(_DIST_EPS).sqrt_().to(dtype)


def ard_distance(xq: Tensor, xk: Tensor, scale_sq: Tensor) -> Tensor:
    """Distances in which every key stretches the input dimensions by factors of its own.

    ``sqrt(sum_j s_kj^2 (xq_j - xk_j)^2)`` for query ``q`` and key ``k``: each key (and head)
    sees the inputs through its own diagonal metric, so the kernel bias can follow ARD
    lengthscales and ignore irrelevant dimensions. The scales belong to the keys only, so a
    read over a context plus added keys equals the read over their union.

    Args:
        xq: `... x 1 x nq x D` query inputs.
        xk: `... x 1 x nk x D` key inputs.
        scale_sq: `... x H x nk x D` squared scales ``s_kj^2`` (leading dimensions broadcast
            with the inputs').

    Returns:
        `... x H x nq x nk` distances.
    """
    return ard_distance_to_keys(xq, ard_keys(xk, scale_sq))


def rbf_bias(dist: Tensor, amplitude: Tensor, width: Tensor, centre: Tensor) -> Tensor:
    """``sum_f a_hf * exp(-|w_hf| * (dist - c_hf)^2)`` for every head (exponents floored at
    ``EXP_FLOOR``).

    Args:
        dist: `... x nq x nk` scaled distances shared by the heads, or `... x H x nq x nk`
            distances of each head (``ard_distance``), told apart by ``dist.dim()``: 3
            means shared (`B x nq x nk`), 4 or more means per head.
        amplitude, width, centre: `H x F` basis parameters.

    Returns:
        `... x H x nq x nk`.
    """
    r = _head_axis(dist)  # (B, 1 or H, nq, nk)
    out = None
    for f in range(amplitude.shape[1]):
        a = amplitude[:, f].view(1, -1, 1, 1)
        w = width[:, f].abs().view(1, -1, 1, 1)
        c = centre[:, f].view(1, -1, 1, 1)
        term = a * torch.exp((-w * (r - c) ** 2).clamp_min(EXP_FLOOR))
        out = term if out is None else out + term
    return out


def _frozen_rbf(dist: Tensor, amplitude: Tensor, width: Tensor, centre: Tensor, slope: bool):
    """``rbf_bias`` with in-place temporaries (bitwise the same values), and optionally its
    derivative in ``dist``, `B x H x nq x nk`. For frozen parameters only (no parameter grads).
    """
    r = _head_axis(dist)
    out = grad = None
    for f in range(amplitude.shape[1]):
        a = amplitude[:, f].view(1, -1, 1, 1)
        w = width[:, f].abs().view(1, -1, 1, 1)
        diff = r - centre[:, f].view(1, -1, 1, 1)
        term = diff.square().mul_(-w).clamp_min_(EXP_FLOOR).exp_().mul_(a)
        if slope:
            part = diff.mul_(term).mul_(-2.0 * w)  # d term / d r
            grad = part if grad is None else grad.add_(part)
        out = term if out is None else out.add_(term)
    return out, grad


def _head_axis(dist: Tensor) -> Tensor:
    """Distances with a head axis at -3: shared `B x nq x nk` ones get a singleton one."""
    return dist.unsqueeze(-3) if dist.dim() == 3 else dist


class _FrozenRBFBias(torch.autograd.Function):
    """``rbf_bias`` differentiable in ``dist`` only, storing one derivative tensor."""

    @staticmethod
    def forward(ctx, dist, amplitude, width, centre):
        out, grad = _frozen_rbf(dist, amplitude, width, centre, slope=True)
        ctx.save_for_backward(grad)
        ctx.shared = dist.dim() == 3
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        grad = grad_out * grad
        if ctx.shared:  # one distance fed every head
            grad = grad.sum(-3)
        return grad, None, None, None


def frozen_rbf_bias(dist: Tensor, amplitude: Tensor, width: Tensor, centre: Tensor) -> Tensor:
    """``rbf_bias`` for inference: the same values, 2-3x faster on CPU.

    The parameters must not need gradients; gradients in ``dist`` (test inputs, fantasies) are
    exact to first order (no second derivatives).
    """
    if torch.is_grad_enabled() and dist.requires_grad:
        return _FrozenRBFBias.apply(dist, amplitude, width, centre)
    with torch.no_grad():
        return _frozen_rbf(dist, amplitude, width, centre, slope=False)[0]


_COMPILED: dict[str, Callable[..., Tensor]] = {}


def compiled_rbf_bias() -> Callable[..., Tensor]:
    """``rbf_bias`` through ``torch.compile`` (one fused kernel; about 3x faster on CPU)."""
    if "rbf" not in _COMPILED:
        _COMPILED["rbf"] = torch.compile(rbf_bias, dynamic=True)
    return _COMPILED["rbf"]


class KernelBias(nn.Module):
    """Per-head bias ``b_h(r) = sum_f a_hf * exp(-|w_hf| * (r - c_hf)^2)`` of a distance ``r``.

    Each KRBlock owns a fresh one. The initialisation spreads the centres over the typical
    range of scaled distances and gives each head a different lengthscale, so that the basis
    functions do not start identical (identical ones would receive identical gradients).

    ``num_fine`` fine basis functions ``a_hg * exp(-exp(v_hg) * r^2)`` (centred at 0, log
    widths ``v``) let a head single out near neighbours at dense contexts. The ``num_basis``
    ones cannot: an optimiser step moves a raw width by about the learning rate, so their
    lengths stay near the initial 1/4 of the distance range (widths ~16 after 36k steps),
    while 512 points in one dimension lie 0.002 apart. Log widths move by factors, starting
    at lengthscales from 0.003 to 0.03 (``FINE_LENGTHSCALES``); the amplitudes start at 0,
    so adding them changes nothing until trained (``nn.grow``).
    """

    def __init__(self, num_heads: int, num_basis: int, num_fine: int = 0) -> None:
        super().__init__()
        centres = torch.linspace(0.0, 1.0, num_basis).expand(num_heads, num_basis)
        spacing = 1.0 / max(num_basis - 1, 1)
        # Head h starts close to -r^2 / (2 l_h^2) with lengthscales from 0.5 down to 0.1.
        lengthscales = torch.logspace(math.log10(0.5), -1.0, num_heads).unsqueeze(-1)
        self.amplitude = nn.Parameter(-(centres**2) / (2 * lengthscales**2) * 0.5)
        self.width = nn.Parameter(torch.full((num_heads, num_basis), 1.0 / spacing**2))
        self.centre = nn.Parameter(centres.clone())
        self.num_fine = num_fine
        if num_fine:
            low, high = (math.log10(v) for v in FINE_LENGTHSCALES)
            fine = torch.logspace(low, high, num_fine).expand(num_heads, num_fine)
            self.fine_amplitude = nn.Parameter(torch.zeros(num_heads, num_fine))
            self.fine_log_width = nn.Parameter((1.0 / (2.0 * fine**2)).log())
        self.bias_fn: Callable[..., Tensor] = rbf_bias

    def basis(self) -> tuple[Tensor, Tensor, Tensor]:
        """`H x (num_basis + num_fine)` amplitudes, widths and centres of all basis functions."""
        if not self.num_fine:
            return self.amplitude, self.width, self.centre
        return (
            torch.cat([self.amplitude, self.fine_amplitude], dim=1),
            torch.cat([self.width, self.fine_log_width.exp()], dim=1),
            torch.cat([self.centre, torch.zeros_like(self.fine_amplitude)], dim=1),
        )

    def forward(self, dist: Tensor) -> Tensor:
        """Bias for every head.

        Args:
            dist: `B x nq x nk` scaled distances shared by the heads, or per-head ones
                (`... x H x nq x nk`, ``ard_distance``).

        Returns:
            `... x H x nq x nk` additive attention bias.
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self.bias_fn(dist, *self.basis())  # training: gradients for the parameters
        with torch.no_grad():
            params = self.basis()
        return frozen_rbf_bias(dist, *params)
