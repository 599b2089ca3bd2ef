"""TNP-KR: a transformer neural process built from KRBlocks, with a cached context encoding.

Shapes: ``xc`` `B x nC x d`, ``yc`` `B x nC`, ``xt`` `B x nT x d`, with ``1 <= d <= max_dim``.

Inputs are zero padded to ``max_dim``; tokens also carry a mask of the used dimensions, and the
kernel bias sees distances divided by ``sqrt(d)``.

The network standardises ``yc`` internally and maps its predictions back: ``loc`` is the mean
of the valid context values (0 for an empty context) and the scale is a shrunk standard
deviation, ``s^2 = (sum_i (y_i - loc)^2 + k) / (nC + k)`` with ``k = SCALE_PRIOR_WEIGHT``.
Predictions are therefore exactly equivariant to shifts of ``y`` and, as ``nC`` grows,
to its scale. The shrinkage towards unit scale (the scale of standardised data, which is what
the BoTorch model hands over) keeps the standardised targets of two- or three-point contexts
from heavy tails: a plain sample standard deviation of two nearly equal values is tiny and
made the training loss of such contexts unbounded. Known observation-noise variances
(``yvar``) enter the context tokens as ``log(yvar / s^2)`` with a flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from botorch_tnpkr.errors import DimensionError, InputShapeError, NonFiniteInputError
from botorch_tnpkr.nn.adaptation import Adaptation, fit_distance_scale
from botorch_tnpkr.nn.attention import ExactAttention
from botorch_tnpkr.nn.block import KRBlock
from botorch_tnpkr.nn.calibration import Calibration, variance_scale
from botorch_tnpkr.nn.config import EXACT_BACKENDS, TNPKRConfig
from botorch_tnpkr.nn.near import NearPath, near_features

# Token features besides the padded inputs and the dimension mask: y, observed, log yvar, known.
_EXTRA_FEATURES = 4
_LOG_YVAR_RANGE = (-30.0, 10.0)
# Pseudo-observations of unit variance in the internal scale estimate (see the module docstring).
SCALE_PRIOR_WEIGHT = 2.0


def context_features(y_n: Tensor, keep: Tensor, yvar_ratio: Tensor | None) -> Tensor:
    """The non-input features of context tokens: ``[y, observed, log yvar, known]``.

    Args:
        y_n: `... x n` standardised targets (zero at invalid points).
        keep: `... x n` 1.0 for valid points, 0.0 for padding.
        yvar_ratio: Optional `... x n` known noise variances divided by ``y_scale^2``;
            None for tokens whose noise the network infers.

    Returns:
        `... x n x 4`.
    """
    if yvar_ratio is None:
        log_yvar = torch.zeros_like(y_n)
        known = torch.zeros_like(y_n)
    else:
        log_yvar = yvar_ratio.clamp_min(1e-30).log().clamp(*_LOG_YVAR_RANGE) / 10.0 * keep
        known = keep.expand_as(log_yvar)
    return torch.stack(torch.broadcast_tensors(y_n, keep, log_yvar, known), dim=-1)


@dataclass
class ContextCache:
    """The encoded context: everything ``predict`` needs, nothing that grows for ``dka``.

    Attributes:
        memories: One attention memory per block.
        dim: The input dimension ``d`` of the context.
        y_loc: `B` mean used to standardise ``yc``.
        y_scale: `B` standard deviation used to standardise ``yc``.
        num_context: Number of context points per task (`B`, valid points only).
        var_scale: Optional `B` factors of the predicted variances (latent and noise) from
            ``variance_scale`` (``encode(..., calibration=...)``); None is 1.
        distance_scale: Optional `B x d` factors of each input dimension in the kernel
            bias's distances (``encode(..., adaptation=...)`` or ``distance_scale=...``);
            test inputs are scaled by them too. None is 1.
        near_keys: ``near_path`` networks: `B x nC x max_dim` context inputs in the kernel
            bias's scale (``distance_scale`` applied); None otherwise.
        near_values: ``near_path`` networks: `B x nC x 3` ``[y, log yvar, known]`` features
            of the context tokens; None otherwise.
        near_mask: ``near_path`` networks: `B x nC` bool, the valid context points.
    """

    memories: list[Any]
    dim: int
    y_loc: Tensor
    y_scale: Tensor
    num_context: Tensor
    var_scale: Tensor | None = None
    distance_scale: Tensor | None = None
    near_keys: Tensor | None = None
    near_values: Tensor | None = None
    near_mask: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.y_loc.shape[0]

    def to(self, dtype: torch.dtype) -> ContextCache:
        """The same cache with its floating tensors in ``dtype`` (differentiable casts).

        Lets a context be encoded in a cheaper dtype than the one predictions run in.
        """

        def cast(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value.to(dtype) if value.is_floating_point() else value
            if isinstance(value, (tuple, list)):
                return type(value)(cast(v) for v in value)
            return value

        return ContextCache(
            memories=[cast(m) for m in self.memories],
            dim=self.dim,
            y_loc=cast(self.y_loc),
            y_scale=cast(self.y_scale),
            num_context=cast(self.num_context),
            var_scale=cast(self.var_scale),
            distance_scale=cast(self.distance_scale),
            near_keys=cast(self.near_keys),
            near_values=cast(self.near_values),
            near_mask=self.near_mask,
        )


@dataclass
class Prediction:
    """Gaussian predictive per test point, in the units of ``yc``.

    Attributes:
        mean: `B x nT` predictive mean of the latent function (and of ``y``).
        fvar: `B x nT` variance of the latent function ``f``.
        noise_var: `B x nT` predicted observation-noise variance; ``y = f + noise``.
    """

    mean: Tensor
    fvar: Tensor
    noise_var: Tensor

    @property
    def yvar(self) -> Tensor:
        return self.fvar + self.noise_var


class TNPKR(nn.Module):
    """The TNP-KR network. ``forward(xc, yc, xt) == predict(encode(xc, yc), xt)``."""

    def __init__(self, config: TNPKRConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim_model
        in_features = 2 * config.max_dim + _EXTRA_FEATURES
        self.embed = nn.Sequential(nn.Linear(in_features, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(KRBlock(config) for _ in range(config.num_blocks))
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 3))
        self.near_path = NearPath(dim) if config.near_path else None

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        yvar: Tensor | None = None,
        mask: Tensor | None = None,
        distance_scale: Tensor | None = None,
    ) -> Prediction:
        """Predict at ``xt`` given the context; see ``encode`` and ``predict``."""
        cache = self.encode(xc, yc, yvar=yvar, mask=mask, distance_scale=distance_scale)
        return self.predict(cache, xt)

    def encode(
        self,
        xc: Tensor,
        yc: Tensor,
        yvar: Tensor | None = None,
        mask: Tensor | None = None,
        calibration: Calibration | None = None,
        adaptation: Adaptation | None = None,
        distance_scale: Tensor | None = None,
    ) -> ContextCache:
        """Encode a context once, for any number of later ``predict`` calls.

        Args:
            xc: `B x nC x d` context inputs (nC may be 0).
            yc: `B x nC` context targets.
            yvar: Optional `B x nC` known observation-noise variances (>= 0).
            mask: Optional `B x nC` bool, True for valid points; invalid points change nothing,
                so contexts of different sizes share one padded batch.
            calibration: Also calibrate the predicted variances on this context
                (``nn.calibration.variance_scale``, a constant without gradient); None
                predicts the network's variances as they are.
            adaptation: Fit per-dimension distance scales to this context first
                (``nn.adaptation.fit_distance_scale``, no gradient; the calibration then
                uses them); None keeps the network's distances.
            distance_scale: Given `B x d` positive distance scales instead (e.g. those of a
                context this one grew from); not with ``adaptation``.

        Returns:
            The context cache.
        """
        self._check_context(xc, yc, yvar, mask)
        b, n, d = xc.shape
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=xc.device)
        if adaptation is not None:
            if distance_scale is not None:
                raise InputShapeError("Give adaptation or distance_scale, not both.")
            distance_scale = fit_distance_scale(self, xc, yc, yvar, mask, adaptation)
        self._check_distance_scale(distance_scale, b, d)
        var_scale = None
        if calibration is not None:
            var_scale = variance_scale(self, xc, yc, yvar, mask, calibration, distance_scale)
        keep = mask.to(xc.dtype)
        xc = torch.where(mask.unsqueeze(-1), xc, torch.zeros_like(xc))
        yc = torch.where(mask, yc, torch.zeros_like(yc))
        count = keep.sum(-1)  # (B,)
        loc = yc.sum(-1) / count.clamp_min(1.0)
        sq_dev = ((yc - loc.unsqueeze(-1)) ** 2 * keep).sum(-1)
        scale = ((sq_dev + SCALE_PRIOR_WEIGHT) / (count + SCALE_PRIOR_WEIGHT)).sqrt()
        y_n = (yc - loc.unsqueeze(-1)) / scale.unsqueeze(-1) * keep

        if yvar is not None:
            yvar = torch.where(mask, yvar, torch.ones_like(yvar))
            yvar = yvar / scale.unsqueeze(-1) ** 2
        extra = context_features(y_n, keep, yvar)
        x_pad, x_bias = self._pad_inputs(xc, distance_scale)
        c = self.embed(torch.cat([x_pad, extra], dim=-1))  # (B, nC, D)
        near = {}
        if self.near_path is not None:
            near = {"near_keys": x_bias, "near_values": extra[..., [0, 2, 3]], "near_mask": mask}
        memories = []
        for block in self.blocks:
            c, memory = block.context_step(c, x_bias, mask)
            memories.append(memory)
        return ContextCache(
            memories=memories,
            dim=d,
            y_loc=loc,
            y_scale=scale,
            num_context=count,
            var_scale=var_scale,
            distance_scale=distance_scale,
            **near,
        )

    def predict(self, cache: ContextCache, xt: Tensor) -> Prediction:
        """Predict at test inputs from an encoded context.

        Args:
            cache: What ``encode`` returned.
            xt: `B x nT x d` test inputs (same ``B`` and ``d`` as the context).

        Returns:
            The Gaussian predictive of each test point, independent of the other test points.
        """
        self._check_test(cache, xt)
        b, n, _ = xt.shape
        x_pad, x_bias = self._pad_inputs(xt, cache.distance_scale)
        t = self.embed(torch.cat([x_pad, xt.new_zeros(b, n, _EXTRA_FEATURES)], dim=-1))
        for block, memory in zip(self.blocks, cache.memories, strict=True):
            t = block.test_step(t, x_bias, memory)
        var_scale = None if cache.var_scale is None else cache.var_scale.unsqueeze(-1)
        near = self.near_inputs(cache, xt)
        loc, scale = cache.y_loc.unsqueeze(-1), cache.y_scale.unsqueeze(-1)
        return self.readout(t, loc, scale, var_scale, near)

    def near_inputs(self, cache: ContextCache, xt: Tensor) -> Tensor | None:
        """The near path's features of test inputs `B x ... x m x d` (``nn.near``), shaped
        `B x ... x m x NEAR_FEATURES`; None for a network without the path."""
        if self.near_path is None:
            return None
        if cache.near_keys is None or cache.near_values is None or cache.near_mask is None:
            raise InputShapeError(
                "This network has a near path but the cache lacks the context points it reads; "
                "encode the context with this network."
            )
        flat = xt.reshape(xt.shape[0], -1, xt.shape[-1])
        _, x_bias = self._pad_inputs(flat, cache.distance_scale)
        features = near_features(
            x_bias,
            cache.near_keys.to(x_bias.dtype),
            cache.near_values.to(x_bias.dtype),
            cache.near_mask,
            self.config.scan_chunk,
        )
        return features.reshape(*xt.shape[:-1], features.shape[-1])

    def readout(
        self,
        t: Tensor,
        loc: Tensor,
        scale: Tensor,
        var_scale: Tensor | None = None,
        near: Tensor | None = None,
    ) -> Prediction:
        """The Gaussian head on final test tokens, mapped back to the units of ``yc``.

        Args:
            t: `... x nT x D` test tokens after the last block.
            loc, scale: The context's ``y_loc`` and ``y_scale``, broadcastable to `... x nT`.
            var_scale: Optional factor of both variances (the cache's ``var_scale``),
                broadcastable to `... x nT`.
            near: The near path's features (``near_inputs``), broadcastable to
                `... x nT x NEAR_FEATURES`; required by, and only by, ``near_path`` networks.

        Returns:
            The `... x nT` prediction.
        """
        h = self.head_norm(t)
        if self.near_path is not None:
            if near is None:
                raise InputShapeError("A near_path network's readout needs the near features.")
            near = near.expand(*h.shape[:-1], near.shape[-1])
            h = self.near_path.head_input(h, near)
        raw = self.head(h)  # (..., nT, 3)
        min_std = self.config.min_std
        f_std = min_std + (1.0 - min_std) * F.softplus(raw[..., 1])
        noise_std = min_std + (1.0 - min_std) * F.softplus(raw[..., 2])
        mean, fvar, noise_var = raw[..., 0], (scale * f_std) ** 2, (scale * noise_std) ** 2
        if self.near_path is not None:  # in standardised units
            mean, f_var = self.near_path.update(mean, f_std**2, h, near, min_std**2)
            fvar = scale**2 * f_var
        if var_scale is not None:
            fvar, noise_var = fvar * var_scale, noise_var * var_scale
        return Prediction(mean=loc + scale * mean, fvar=fvar, noise_var=noise_var)

    def with_trained_context(self, trained_context: int | None) -> TNPKR:
        """A copy with another ``config.trained_context`` (None turns log-n scaling off).

        The setting has no weights, so the copy has this network's weights, dtype and device.
        """
        param = next(self.parameters())
        other = TNPKR(self.config.replace(trained_context=trained_context))
        other = other.to(device=param.device, dtype=param.dtype).train(self.training)
        other.load_state_dict(self.state_dict())
        return other

    def set_exact_backend(self, mode: str) -> None:
        """Switch an exact-attention network between ``softmax`` and ``scan`` (same weights)."""
        if self.config.attention not in EXACT_BACKENDS or mode not in EXACT_BACKENDS:
            raise InputShapeError(
                f"Only exact-attention networks switch between {EXACT_BACKENDS}; this one uses "
                f"{self.config.attention!r} and {mode!r} was asked for."
            )
        for module in self.modules():
            if isinstance(module, ExactAttention):
                module.mode = mode

    def compile_bias(self) -> None:
        """Run the kernel bias through ``torch.compile`` (training speed; needs a C++ compiler)."""
        from botorch_tnpkr.nn.bias import KernelBias, compiled_rbf_bias

        for module in self.modules():
            if isinstance(module, KernelBias):
                module.bias_fn = compiled_rbf_bias()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ helpers
    def _pad_inputs(self, x: Tensor, distance_scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Token features `B x ... x n x 2 max_dim` (``[x, dim_mask]``) and bias inputs
        `B x ... x n x max_dim` (each dimension times its `B x d` ``distance_scale``)."""
        d, max_dim = x.shape[-1], self.config.max_dim
        x_pad = F.pad(x, (0, max_dim - d))
        dim_mask = x.new_zeros(max_dim)
        dim_mask[:d] = 1.0
        features = torch.cat([x_pad, dim_mask.expand_as(x_pad)], dim=-1)
        x_bias = x / math.sqrt(d)
        if distance_scale is not None:
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (d,)
            x_bias = x_bias * distance_scale.to(x.dtype).view(shape)
        return features, F.pad(x_bias, (0, max_dim - d))

    def _check_distance_scale(self, distance_scale: Tensor | None, b: int, d: int) -> None:
        if distance_scale is None:
            return
        if not isinstance(distance_scale, Tensor) or tuple(distance_scale.shape) != (b, d):
            raise InputShapeError(f"distance_scale must be a tensor of shape B x d = {(b, d)}.")
        if not bool((torch.isfinite(distance_scale) & (distance_scale > 0)).all()):
            raise NonFiniteInputError("distance_scale must be finite and > 0.")

    def _param_dtype(self) -> torch.dtype:
        return self.head[0].weight.dtype

    def _check_common(self, name: str, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise InputShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
        if x.dtype != self._param_dtype():
            raise InputShapeError(
                f"{name} has dtype {x.dtype} but the network's parameters are "
                f"{self._param_dtype()}; convert one with .to(dtype)."
            )

    def _check_dim(self, name: str, x: Tensor) -> None:
        if x.dim() != 3:
            raise InputShapeError(f"{name} must have shape B x n x d, got {tuple(x.shape)}.")
        d = x.shape[-1]
        if not 1 <= d <= self.config.max_dim:
            raise DimensionError(
                f"{name} has input dimension d={d}; this network accepts 1 <= d <= "
                f"max_dim={self.config.max_dim}."
            )

    def _check_context(
        self, xc: Tensor, yc: Tensor, yvar: Tensor | None, mask: Tensor | None
    ) -> None:
        self._check_common("xc", xc)
        self._check_common("yc", yc)
        self._check_dim("xc", xc)
        b, n, _ = xc.shape
        if tuple(yc.shape) != (b, n):
            raise InputShapeError(f"yc must have shape B x nC = {(b, n)}, got {tuple(yc.shape)}.")
        if mask is not None:
            if (
                not isinstance(mask, Tensor)
                or mask.dtype != torch.bool
                or tuple(mask.shape) != (b, n)
            ):
                raise InputShapeError(f"mask must be a bool tensor of shape {(b, n)}.")
        else:
            mask = torch.ones(b, n, dtype=torch.bool, device=xc.device)
        valid_x = torch.isfinite(xc).all(-1) | ~mask
        valid_y = torch.isfinite(yc) | ~mask
        if not bool(valid_x.all() & valid_y.all()):
            raise NonFiniteInputError("xc and yc must be finite at every valid (unmasked) point.")
        if yvar is not None:
            self._check_common("yvar", yvar)
            if tuple(yvar.shape) != (b, n):
                raise InputShapeError(f"yvar must have shape {(b, n)}, got {tuple(yvar.shape)}.")
            ok = (torch.isfinite(yvar) & (yvar >= 0)) | ~mask
            if not bool(ok.all()):
                raise NonFiniteInputError("yvar must be finite and >= 0 at every valid point.")

    def _check_test(self, cache: ContextCache, xt: Tensor) -> None:
        self._check_common("xt", xt)
        self._check_dim("xt", xt)
        if xt.shape[0] != cache.batch_size or xt.shape[-1] != cache.dim:
            raise InputShapeError(
                f"xt has shape {tuple(xt.shape)}; the context has batch size {cache.batch_size} "
                f"and input dimension d={cache.dim}, which xt must match."
            )
        if not bool(torch.isfinite(xt).all()):
            raise NonFiniteInputError("xt must be finite.")
