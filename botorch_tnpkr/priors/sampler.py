"""Batched, seeded samplers of GP regression tasks shaped like what BO sees.

Every task lives in ``[0, 1]^d`` (as after Ax/BoTorch normalisation). A batch shares ``d``, the
context size and the layout (uniform or BO-shaped); each task draws its own kernel, ARD
lengthscales, output scale, mean offset and noise. Every batch carries the exact GP predictive
of its targets under the true hyperparameters (the Bayes-optimal oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.priors.kernels import KERNELS, kernel_index
from botorch_tnpkr.priors.oracle import GPHyper, gp_posterior, masked_cov, task_kernel


@dataclass(frozen=True)
class PriorConfig:
    """A distribution over GP regression tasks.

    Lengthscales: a task-wide scale ``g ~ LogUniform(lengthscale_range) * d**lengthscale_dim_power``
    times per-dimension factors ``exp(ard_spread * N(0, 1))``; each dimension is irrelevant
    (lengthscale x 20) with probability ``irrelevant_prob``, one dimension always stays relevant.
    Noise: ``noise_std / signal_std ~ LogUniform(noise_ratio_range)``.
    Kernels: each task draws one of ``kernels`` with probabilities ``kernel_weights``; names
    are the built-in ``KERNELS`` or kernels added with ``register_kernel`` (register them
    before building the config).
    Targets near the data: a share ``near_share`` of each task's targets sits at a random
    context point moved by ``s * N(0, I)``, ``s ~ LogUniform(near_jitter_range)`` per target,
    so that the network learns what a GP does there (interpolate a nearly noiseless
    observation, shrink a noisy one). Uniform targets almost never fall that close: the
    networks trained without them predicted an observed point of a noiseless task with a gap
    of 1-2.5 nats against 0.1-0.5 at uniform targets (32-point contexts of the evaluation
    prior), and in BO that is the incumbent.
    Peaked tasks: a share ``peak_share`` of the tasks multiplies the kernel by an amplitude
    ``a(x) a(x')`` that rises to ``1 + height`` around a random centre (``GPHyper.peak``;
    ``height ~ LogUniform(peak_height_range)``, ``width ~ LogUniform(peak_width_range) *
    sqrt(d)``), so the function has a narrow region that stands many standard deviations above
    the rest, as Hartmann, Ackley and most BO test functions do. Plain GP draws almost never
    put a standardised value beyond 4; at 400 Sobol points of Hartmann-6 the best five stand
    4.5-6.6 standard deviations above the mean, and the networks trained without such tasks
    predicted them 1.4 standard deviations too low. The oracle stays exact (still a GP).
    """

    max_dim: int = 10
    kernel_weights: tuple[float, ...] = (0.15, 0.25, 0.3, 0.3)
    lengthscale_range: tuple[float, float] = (0.07, 1.0)
    lengthscale_dim_power: float = 0.5
    ard_spread: float = 0.4
    irrelevant_prob: float = 0.1
    outputscale_range: tuple[float, float] = (0.25, 4.0)
    mean_std: float = 1.0
    noise_ratio_range: tuple[float, float] = (1e-3, 0.3)
    max_context: int = 256
    num_targets: int = 64
    bo_share: float = 0.3
    near_share: float = 0.0
    near_jitter_range: tuple[float, float] = (1e-4, 0.05)
    peak_share: float = 0.0
    peak_height_range: tuple[float, float] = (3.0, 30.0)
    peak_width_range: tuple[float, float] = (0.08, 0.25)
    dims: tuple[int, ...] = field(default=())
    kernels: tuple[str, ...] = KERNELS

    def __post_init__(self) -> None:
        if not self.kernels:
            raise ConfigError("kernels needs at least one kernel name.")
        for name in self.kernels:
            kernel_index(name)  # ConfigError naming the known kernels
        n = len(self.kernels)
        if len(self.kernel_weights) != n or min(self.kernel_weights) < 0:
            raise ConfigError(f"kernel_weights needs {n} weights >= 0 for {self.kernels}.")
        if sum(self.kernel_weights) <= 0:
            raise ConfigError("kernel_weights must not all be zero.")
        if any(not 1 <= d <= self.max_dim for d in self.dims):
            raise ConfigError(f"dims must lie in 1..max_dim={self.max_dim}, got {self.dims}.")
        for name in (
            "lengthscale_range",
            "outputscale_range",
            "noise_ratio_range",
            "near_jitter_range",
            "peak_height_range",
            "peak_width_range",
        ):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}.")
        if not 0 <= self.bo_share <= 1:
            raise ConfigError(f"bo_share must lie in [0, 1], got {self.bo_share}.")
        if not 0 <= self.near_share <= 1:
            raise ConfigError(f"near_share must lie in [0, 1], got {self.near_share}.")
        if not 0 <= self.peak_share <= 1:
            raise ConfigError(f"peak_share must lie in [0, 1], got {self.peak_share}.")

    @property
    def allowed_dims(self) -> tuple[int, ...]:
        return self.dims or tuple(range(1, self.max_dim + 1))


@dataclass
class TaskBatch:
    """A batch of regression tasks with the oracle's predictive at the targets.

    Attributes:
        xc: `B x nC x d` context inputs; yc: `B x nC` noisy context values.
        mask: `B x nC` bool (all True from the sampler; kept for padded batches).
        xt: `B x nT x d` targets; ft: `B x nT` noiseless; yt: `B x nT` noisy.
        oracle_mean, oracle_var: `B x nT` exact GP posterior of f at the targets.
        hyper: The true hyperparameters (noise variance in ``hyper.noise``).
        bo_shaped: Whether the contexts cluster towards an optimum.
    """

    xc: Tensor
    yc: Tensor
    mask: Tensor
    xt: Tensor
    ft: Tensor
    yt: Tensor
    oracle_mean: Tensor
    oracle_var: Tensor
    hyper: GPHyper
    bo_shaped: bool

    @property
    def noise(self) -> Tensor:
        """`B x 1` observation-noise variance, broadcastable against the targets."""
        return self.hyper.noise.unsqueeze(-1)


def _log_uniform(lo: float, hi: float, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def sample_hyper(prior: PriorConfig, batch: int, dim: int, gen: torch.Generator) -> GPHyper:
    """Draw per-task hyperparameters."""
    weights = torch.tensor(prior.kernel_weights, dtype=torch.float64)
    draw = torch.multinomial(weights, batch, replacement=True, generator=gen)
    kernel_id = torch.tensor([kernel_index(k) for k in prior.kernels])[draw]
    scale = (
        _log_uniform(*prior.lengthscale_range, (batch, 1), gen) * dim**prior.lengthscale_dim_power
    )
    ard = torch.exp(prior.ard_spread * torch.randn(batch, dim, generator=gen, dtype=torch.float64))
    irrelevant = torch.rand(batch, dim, generator=gen, dtype=torch.float64) < prior.irrelevant_prob
    keep_one = torch.randint(dim, (batch,), generator=gen)
    irrelevant[torch.arange(batch), keep_one] = False
    lengthscale = scale * ard * torch.where(irrelevant, 20.0, 1.0)
    outputscale = _log_uniform(*prior.outputscale_range, (batch,), gen)
    mean = (
        prior.mean_std * outputscale.sqrt() * torch.randn(batch, generator=gen, dtype=torch.float64)
    )
    ratio = _log_uniform(*prior.noise_ratio_range, (batch,), gen)
    peak = None
    if prior.peak_share > 0:  # no extra draws otherwise: other priors' streams are unchanged
        centre = torch.rand(batch, dim, generator=gen, dtype=torch.float64)
        width = _log_uniform(*prior.peak_width_range, (batch, 1), gen) * math.sqrt(dim)
        height = _log_uniform(*prior.peak_height_range, (batch, 1), gen)
        peaked = torch.rand(batch, 1, generator=gen, dtype=torch.float64) < prior.peak_share
        peak = torch.cat([centre, width, torch.where(peaked, height, 0.0)], dim=-1)
    return GPHyper(kernel_id, lengthscale, outputscale, mean, outputscale * ratio**2, peak)


def safe_cholesky(a: Tensor, scale: Tensor) -> Tensor:
    """Cholesky factors of `B x n x n` PSD matrices, adding jitter (relative to ``scale``)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    for jitter in (1e-8, 1e-6, 1e-4, 1e-2):
        chol, info = torch.linalg.cholesky_ex(a + eye * (jitter * scale.view(-1, 1, 1)))
        if not bool(info.any()):
            return chol
    raise RuntimeError("covariance matrix is not positive definite even with 1e-2 jitter")


def _max_variance(hyper: GPHyper) -> Tensor:
    """`B` largest prior variance of each task's function (the scale of its jitter)."""
    if hyper.peak is None:
        return hyper.outputscale
    return hyper.outputscale * (1.0 + hyper.peak[:, -1]) ** 2


def _sample_gp(x: Tensor, hyper: GPHyper, gen: torch.Generator) -> Tensor:
    """Joint draw of f at `B x n x d` inputs."""
    chol = safe_cholesky(task_kernel(x, x, hyper), _max_variance(hyper))
    z = torch.randn(x.shape[0], x.shape[1], 1, generator=gen, dtype=torch.float64)
    return hyper.mean.view(-1, 1) + (chol @ z).squeeze(-1)


def _sample_conditional(
    x1: Tensor, y1: Tensor, x2: Tensor, hyper: GPHyper, gen: torch.Generator
) -> Tensor:
    """Joint draw of f at ``x2`` given noisy observations ``y1`` at ``x1``."""
    k11, k21 = task_kernel(x1, x1, hyper), task_kernel(x2, x1, hyper)
    k22 = task_kernel(x2, x2, hyper)
    mask = torch.ones(y1.shape, dtype=torch.bool)
    chol11 = torch.linalg.cholesky(masked_cov(k11, mask, hyper.noise + 1e-8 * hyper.outputscale))
    resid = (y1 - hyper.mean.view(-1, 1)).unsqueeze(-1)
    mean = hyper.mean.view(-1, 1) + (k21 @ torch.cholesky_solve(resid, chol11)).squeeze(-1)
    v = torch.linalg.solve_triangular(chol11, k21.transpose(-1, -2), upper=False)
    cov = k22 - v.transpose(-1, -2) @ v
    chol = safe_cholesky(cov, _max_variance(hyper))
    z = torch.randn(x2.shape[0], x2.shape[1], 1, generator=gen, dtype=torch.float64)
    return mean + (chol @ z).squeeze(-1)


def _near_points(
    xc: Tensor, count: int, jitter: tuple[float, float], gen: torch.Generator
) -> Tensor:
    """`B x count x d` points at random rows of the `B x n x d` ``xc`` (n >= 1), each moved by
    ``s * N(0, I)`` with ``s ~ LogUniform(jitter)`` per point, clamped to [0, 1]."""
    b, n, d = xc.shape
    rows = torch.randint(n, (b, count), generator=gen)
    base = torch.gather(xc, 1, rows.unsqueeze(-1).expand(b, count, d))
    step = _log_uniform(*jitter, (b, count, 1), gen)
    move = step * torch.randn(b, count, d, generator=gen, dtype=torch.float64)
    return (base + move).clamp(0.0, 1.0)


def _noisy(f: Tensor, hyper: GPHyper, gen: torch.Generator) -> Tensor:
    eps = torch.randn(f.shape, generator=gen, dtype=torch.float64)
    return f + hyper.noise.sqrt().view(-1, 1) * eps


def sample_tasks(
    prior: PriorConfig,
    batch_size: int,
    gen: torch.Generator,
    dim: int | None = None,
    num_context: int | None = None,
    bo_shaped: bool | None = None,
    num_targets: int | None = None,
    max_context: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> TaskBatch:
    """Draw a batch of tasks.

    Args:
        prior: The task distribution.
        batch_size: Number of tasks ``B``.
        gen: Source of all randomness (CPU generator).
        dim: Input dimension; drawn from ``prior.allowed_dims`` when None.
        num_context: Context size ``nC``; drawn in ``0..prior.max_context`` when None (half the
            draws log-uniform, half uniform, so small and large contexts are both common).
        bo_shaped: Layout; drawn with probability ``prior.bo_share`` when None.
        num_targets: ``nT`` (default ``prior.num_targets``).
        max_context: Upper end of the drawn context sizes (default ``prior.max_context``);
            training curricula raise it over time.
        dtype: dtype of the returned tensors (sampling runs in float64).
    """
    if dim is None:
        dims = prior.allowed_dims
        dim = dims[int(torch.randint(len(dims), (1,), generator=gen))]
    if num_context is None:
        top = prior.max_context if max_context is None else max_context
        u = float(torch.rand((), generator=gen, dtype=torch.float64))
        if float(torch.rand((), generator=gen)) < 0.5:
            num_context = int(math.exp(u * math.log(top + 1))) - 1
        else:
            num_context = int(u * (top + 1))
        num_context = min(num_context, top)
    if bo_shaped is None:
        bo_shaped = float(torch.rand((), generator=gen)) < prior.bo_share
    bo_shaped = bool(bo_shaped) and num_context >= 4
    n_t = prior.num_targets if num_targets is None else num_targets
    hyper = sample_hyper(prior, batch_size, dim, gen)
    # Targets near the data (the first ``n_near_data`` targets; none without a context).
    n_near_data = round(prior.near_share * n_t) if num_context > 0 else 0

    def uniform(n: int) -> Tensor:
        return torch.rand(batch_size, n, dim, generator=gen, dtype=torch.float64)

    if not bo_shaped:
        x = uniform(num_context + n_t)
        if n_near_data:
            near_data = _near_points(x[:, :num_context], n_near_data, prior.near_jitter_range, gen)
            x[:, num_context : num_context + n_near_data] = near_data
        f = _sample_gp(x, hyper, gen)
        xc, xt = x[:, :num_context], x[:, num_context:]
        yc = _noisy(f[:, :num_context], hyper, gen)
        ft = f[:, num_context:]
    else:
        # A pilot design (like the initial Sobol points), then points clustered around its
        # best value (maximum or minimum, per task), as BO histories are.
        frac = 0.2 + 0.3 * float(torch.rand((), generator=gen))
        n1 = max(2, round(num_context * frac))
        x1 = uniform(n1)
        y1 = _noisy(_sample_gp(x1, hyper, gen), hyper, gen)
        sign = torch.where(torch.rand(batch_size, generator=gen) < 0.5, 1.0, -1.0).double()
        best = x1[torch.arange(batch_size), (y1 * sign.view(-1, 1)).argmax(-1)]  # (B, d)
        spread = _log_uniform(0.02, 0.3, (batch_size, 1, 1), gen)
        n2 = num_context - n1
        n_near = n_t // 2
        near = best.unsqueeze(1) + spread * torch.randn(
            batch_size, n2 + n_near, dim, generator=gen, dtype=torch.float64
        )
        x2 = torch.cat([near.clamp(0.0, 1.0), uniform(n_t - n_near)], dim=1)
        if n_near_data:
            context = torch.cat([x1, x2[:, :n2]], dim=1)
            near_data = _near_points(context, n_near_data, prior.near_jitter_range, gen)
            x2[:, n2 : n2 + n_near_data] = near_data
        f2 = _sample_conditional(x1, y1, x2, hyper, gen)
        xc = torch.cat([x1, x2[:, :n2]], dim=1)
        yc = torch.cat([y1, _noisy(f2[:, :n2], hyper, gen)], dim=1)
        xt, ft = x2[:, n2:], f2[:, n2:]
    yt = _noisy(ft, hyper, gen)
    mask = torch.ones(batch_size, num_context, dtype=torch.bool)
    o_mean, o_var = gp_posterior(xc, yc, mask, xt, hyper)
    cast = {k: v.to(dtype) for k, v in dict(xc=xc, yc=yc, xt=xt, ft=ft, yt=yt).items()}
    hyper_cast = hyper.to(dtype)
    return TaskBatch(
        mask=mask,
        oracle_mean=o_mean.to(dtype),
        oracle_var=o_var.to(dtype),
        hyper=hyper_cast,
        bo_shaped=bo_shaped,
        **cast,
    )
