"""Shared BO-loop code of the benchmarks: problems, their noisy variants, one BO step per method.

Problems are BoTorch's synthetic test functions, negated (BO maximises), optimised on the unit
cube and mapped to the function's bounds. A noisy variant adds Gaussian noise of standard
deviation ``NOISE_FRACTION`` (2%) of the gap between the optimum and the median value of the
function over its domain (the median of 4,096 scrambled Sobol points, seed 0): a level that
is fixed per function, reported in every record. Simple regret is always measured on the
noiseless values of the evaluated points: ``f* - max_i f(x_i)``.

Methods (``METHODS``):

* ``tnpkr``: ``TNPKRModel(X, Y, checkpoint=...)`` (no fitting step), then ``optimize_acqf``;
* ``gp``: ``SingleTaskGP(X, Y)`` fitted with ``fit_gpytorch_mll`` (BoTorch's defaults:
  ``Standardize``, inferred noise), then the same acquisition with the same budgets;
* ``sobol``: the next points of the scrambled Sobol sequence the initial design came from.

Acquisitions (``ACQUISITIONS``): ``logei`` (``LogExpectedImprovement``, q=1, ``best_f`` = the
best observed value) and ``qlognei`` (``qLogNoisyExpectedImprovement``, q=4, baseline = all
evaluated points). Model time is the build (TNP-KR: construction, which encodes the history;
GP: construction and fit) plus the acquisition optimisation; function evaluations are timed
separately.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from botorch.test_functions import (
    Ackley,
    Branin,
    Hartmann,
    Levy,
    Michalewicz,
    Rosenbrock,
    StyblinskiTang,
    SyntheticTestFunction,
)
from torch import Tensor
from torch.quasirandom import SobolEngine

FUNCTIONS: dict[str, Callable[[], SyntheticTestFunction]] = {
    "branin": lambda: Branin(negate=True),
    "hartmann6": lambda: Hartmann(dim=6, negate=True),
    "ackley4": lambda: Ackley(dim=4, negate=True),
    "levy5": lambda: Levy(dim=5, negate=True),
    "rosenbrock4": lambda: Rosenbrock(dim=4, negate=True),
    "styblinskitang3": lambda: StyblinskiTang(dim=3, negate=True),
    "michalewicz5": lambda: Michalewicz(dim=5, negate=True),
}
NOISE_VARIANTS = ("noiseless", "noisy")
NOISE_FRACTION = 0.02
METHODS = ("tnpkr", "gp", "sobol")
LABELS = {"tnpkr": "TNPKRModel", "gp": "SingleTaskGP", "sobol": "Sobol"}
ACQUISITIONS = {"logei": 1, "qlognei": 4}  # name -> q
ACQ_LABELS = {"logei": "LogEI (q=1)", "qlognei": "qLogNEI (q=4)"}
REGRET_FLOOR = 1e-8  # log10 regret is taken of max(regret, REGRET_FLOOR)


@cache
def noise_std(function: str) -> float:
    """The noisy variant's noise level: ``NOISE_FRACTION`` x (optimum - median over the domain)."""
    f = FUNCTIONS[function]().to(torch.float64)
    X = SobolEngine(f.dim, scramble=True, seed=0).draw(4096, dtype=torch.float64)
    values = f(f.bounds[0] + (f.bounds[1] - f.bounds[0]) * X)
    return NOISE_FRACTION * float(f.optimal_value - values.median())


@dataclass
class Problem:
    """A negated test function on the unit cube, noiseless or with a fixed noise level."""

    name: str
    noisy: bool = False
    function: SyntheticTestFunction = field(init=False)

    def __post_init__(self) -> None:
        if self.name not in FUNCTIONS:
            raise ValueError(f"Unknown function {self.name!r}; known: {sorted(FUNCTIONS)}.")
        self.function = FUNCTIONS[self.name]().to(torch.float64)

    @property
    def dim(self) -> int:
        return self.function.dim

    @property
    def optimum(self) -> float:
        return float(self.function.optimal_value)

    @property
    def noise_std(self) -> float:
        return noise_std(self.name) if self.noisy else 0.0

    @property
    def variant(self) -> str:
        return "noisy" if self.noisy else "noiseless"

    def evaluate(self, X: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Observed and noiseless values, both `n x 1`, of `n x d` points in the unit cube."""
        bounds = self.function.bounds.to(X)
        f = self.function(bounds[0] + (bounds[1] - bounds[0]) * X).unsqueeze(-1)
        if not self.noisy:
            return f, f
        noise = torch.randn(f.shape, generator=generator, dtype=f.dtype)
        return f + self.noise_std * noise.to(f), f


@dataclass
class StepOptions:
    """Budgets of ``optimize_acqf`` (the same for every model) and the TNP-KR checkpoint."""

    num_restarts: int = 4
    raw_samples: int = 128
    checkpoint: str = "auto"
    linear_above: int | None = None  # None: TNPKRModel's default
    mc_samples: int = 128  # qLogNEI's sample count (BoTorch's default)
    calibrate: bool = True  # TNPKRModel's variance calibration (its default)
    adapt: bool = True  # TNPKRModel's distance adaptation (its default since session 23)


# The version of TNPKRModel's default distance adaptation that adapted runs record: 2 is
# session 24's (step 0.1 scaled by points / 256, from 32 points), 3 session 25's (the same
# from 16 points), 4 session 26's (below 64 points 10 steps of twice the size); no benchmark
# ran with session 23's (1).
ADAPTATION_VERSION = 4


@dataclass
class StepTiming:
    """Seconds of one BO step: building the model and optimising the acquisition."""

    build_s: float = 0.0
    acq_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_s(self) -> float:
        return self.build_s + self.acq_s


def unit_bounds(dim: int) -> Tensor:
    return torch.stack([torch.zeros(dim), torch.ones(dim)]).double()


def build_model(
    method: str, X: Tensor, Y: Tensor, options: StepOptions, Yvar: Tensor | None = None
):
    """The surrogate of ``method`` on the history (`n x d`, `n x 1`), fitted if it needs it.

    ``Yvar`` (`n x 1`, optional): known noise variances, passed to the model as ``train_Yvar``
    (the noise is then not inferred).
    """
    if method == "tnpkr":
        from botorch_tnpkr.model import TNPKRModel

        kwargs: dict[str, Any] = {
            "checkpoint": options.checkpoint,
            "calibrate": options.calibrate,
            "adapt": options.adapt,
        }
        if options.linear_above is not None:
            kwargs["linear_above"] = options.linear_above
        return TNPKRModel(X, Y, train_Yvar=Yvar, **kwargs)
    if method == "gp":
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(X, Y, train_Yvar=Yvar)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model
    raise ValueError(f"{method!r} has no model; model methods: tnpkr, gp.")


def acquisition(name: str, model, X: Tensor, Y: Tensor, mc_samples: int = 128):
    """The acquisition function ``name`` (see ``ACQUISITIONS``) of a model on its history."""
    if name == "logei":
        from botorch.acquisition import LogExpectedImprovement

        return LogExpectedImprovement(model, best_f=Y.max())
    if name == "qlognei":
        from botorch.acquisition import qLogNoisyExpectedImprovement
        from botorch.sampling import SobolQMCNormalSampler

        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]))
        return qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler)
    raise ValueError(f"Unknown acquisition {name!r}; known: {sorted(ACQUISITIONS)}.")


def _sync(X: Tensor) -> None:
    if X.device.type == "cuda":
        torch.cuda.synchronize(X.device)


def model_step(
    method: str, acq: str, X: Tensor, Y: Tensor, options: StepOptions
) -> tuple[Tensor, StepTiming]:
    """One BO step of a model method: build (and fit) the model, optimise the acquisition.

    Args:
        method: ``tnpkr`` or ``gp``.
        acq: A name from ``ACQUISITIONS`` (its q is used).
        X: A `n x d` history in the unit cube.
        Y: A `n x 1` tensor of observed values.
        options: Optimiser budgets and the checkpoint.

    Returns:
        The `q x d` candidates and the timing of the step.
    """
    from botorch.optim import optimize_acqf

    timing = StepTiming()
    start = time.perf_counter()
    model = build_model(method, X, Y, options)
    _sync(X)
    timing.build_s = time.perf_counter() - start
    if method == "tnpkr":
        timing.info["checkpoint"] = model.checkpoint_source
        timing.info["attention"] = model.network.config.attention
    start = time.perf_counter()
    acqf = acquisition(acq, model, X, Y, options.mc_samples)
    candidates, _ = optimize_acqf(
        acqf,
        bounds=unit_bounds(X.shape[-1]).to(X),
        q=ACQUISITIONS[acq],
        num_restarts=options.num_restarts,
        raw_samples=options.raw_samples,
    )
    _sync(X)
    timing.acq_s = time.perf_counter() - start
    return candidates.detach(), timing


def sobol_engine(dim: int, seed: int) -> SobolEngine:
    """The scrambled Sobol sequence of a seed: its first points are the initial design."""
    return SobolEngine(dim, scramble=True, seed=seed)


def best_so_far(values: list[float]) -> list[float]:
    best, out = -math.inf, []
    for value in values:
        best = max(best, value)
        out.append(best)
    return out


def log10_regret(regret: float) -> float:
    return math.log10(max(regret, REGRET_FLOOR))


def run_bo(
    problem: Problem,
    method: str,
    acq: str,
    seed: int,
    iterations: int,
    options: StepOptions,
    n_init: int | None = None,
    on_iteration: Callable[[int, float, StepTiming], None] | None = None,
    keep_points: bool = False,
) -> dict[str, Any]:
    """One BO run: ``n_init`` (2d+2) Sobol points, then ``iterations`` steps of ``method``.

    Every method of a seed starts from the same Sobol points and sees the same noise draws
    (one generator per seed for the noise, reseeded torch global RNG per step).

    Returns:
        A JSON-serialisable record: the noiseless and observed values of every evaluation,
        the simple regret after the initial design and after each iteration, and the build,
        acquisition and evaluation seconds of every iteration; with ``keep_points``, also
        the evaluated points (``points``, `n x d` in the unit cube, in evaluation order).
    """
    q = ACQUISITIONS[acq]
    dim = problem.dim
    n_init = 2 * dim + 2 if n_init is None else n_init
    engine = sobol_engine(dim, seed)
    noise_gen = torch.Generator().manual_seed(10_000 + seed)
    X = engine.draw(n_init, dtype=torch.float64)
    Y, F = problem.evaluate(X, noise_gen)
    record: dict[str, Any] = {
        "function": problem.name,
        "noise": problem.variant,
        "noise_std": problem.noise_std,
        "acq": acq,
        "q": q,
        "method": method,
        "seed": seed,
        "dim": dim,
        "n_init": n_init,
        "iterations": iterations,
        "optimum": problem.optimum,
        "num_restarts": options.num_restarts,
        "raw_samples": options.raw_samples,
        "build_s": [],
        "acq_s": [],
        "eval_s": [],
    }
    start_run = time.perf_counter()
    for it in range(iterations):
        torch.manual_seed(seed * 1_000 + it)
        if method == "sobol":
            candidates, timing = engine.draw(q, dtype=torch.float64), StepTiming()
        else:
            candidates, timing = model_step(method, acq, X, Y, options)
            for key, value in timing.info.items():
                record.setdefault(key, value)
        start = time.perf_counter()
        y, f = problem.evaluate(candidates, noise_gen)
        record["eval_s"].append(time.perf_counter() - start)
        record["build_s"].append(timing.build_s)
        record["acq_s"].append(timing.acq_s)
        X, Y, F = torch.cat([X, candidates]), torch.cat([Y, y]), torch.cat([F, f])
        if on_iteration is not None:
            on_iteration(it, problem.optimum - F.max().item(), timing)
    values = F.squeeze(-1).tolist()
    best = best_so_far(values)
    record.update(
        values=values,
        observed=Y.squeeze(-1).tolist(),
        regret=[problem.optimum - best[n_init - 1 + q * i] for i in range(iterations + 1)],
        model_s=sum(record["build_s"]) + sum(record["acq_s"]),
        wall_s=time.perf_counter() - start_run,
    )
    if keep_points:
        record["points"] = X.tolist()
    return record
