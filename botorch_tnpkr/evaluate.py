"""``python -m botorch_tnpkr.evaluate --checkpoint NAME``: score a network against the oracle GP.

For every (kernel, d, n) cell it draws tasks from a prior broader than the training prior
(shorter and longer lengthscales, larger offsets and scales) and reports the mean predictive
log-likelihood per noisy target point of the network, of the exact GP with the true
hyperparameters (the oracle) and of BoTorch's SingleTaskGP fitted by marginal likelihood, plus
the coverage of the network's central 50% and 90% intervals. It also checks that the network
does not collapse beyond its training context size (gap at 4x the largest trained context).
The network predicts as ``TNPKRModel`` uses it by default: on standardised contexts, with its
distance scales fitted to each context (``nn.adaptation``) and variances calibrated on it
(``nn.calibration``); ``--no-adaptation`` and ``--no-calibration`` turn either off.

Kernels registered with ``botorch_tnpkr.priors.register_kernel`` are evaluated like built-in
ones (``evaluate_cell(model, "periodic", ...)``, or ``main(["--kernels", "periodic", ...])``
in the process that registered them); ``evaluate_cell(..., prior=...)`` scores on a prior of
your own (for example the one a network was trained on) instead of the broad one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from botorch_tnpkr.checkpoints import DEFAULT_CHECKPOINT, load_checkpoint
from botorch_tnpkr.errors import TNPKRError
from botorch_tnpkr.nn import TNPKR, Calibration, read_metadata
from botorch_tnpkr.nn.adaptation import DEFAULT_ADAPTATION, Adaptation, fit_distance_scale
from botorch_tnpkr.nn.calibration import DEFAULT_CALIBRATION
from botorch_tnpkr.priors import (
    KERNELS,
    PriorConfig,
    gaussian_logpdf,
    kernel_names,
    sample_tasks,
)
from botorch_tnpkr.priors.sampler import TaskBatch
from botorch_tnpkr.priors.standardize import standardize_context

EVAL_SEED = 7_777
# z-values of central 50% and 90% intervals.
Z50, Z90 = 0.6744897501960817, 1.6448536269514722


def evaluation_prior(max_dim: int, kernel: str) -> PriorConfig:
    """A prior broader than the training prior, with one kernel (built in or registered)."""
    names = KERNELS if kernel in KERNELS else (kernel,)
    weights = tuple(1.0 if k == kernel else 0.0 for k in names)
    return PriorConfig(
        max_dim=max_dim,
        kernels=names,
        kernel_weights=weights,
        lengthscale_range=(0.05, 1.5),
        ard_spread=0.5,
        outputscale_range=(0.05, 20.0),
        mean_std=3.0,
        noise_ratio_range=(1e-3, 0.3),
    )


@dataclass
class CellResult:
    kernel: str
    dim: int
    n: int
    model_ll: float
    oracle_ll: float
    gp_ll: float | None
    cover50: float
    cover90: float
    seconds: float

    @property
    def gap(self) -> float:
        return self.oracle_ll - self.model_ll

    @property
    def gp_gap(self) -> float | None:
        return None if self.gp_ll is None else self.oracle_ll - self.gp_ll


def network_predictive(
    model: TNPKR,
    batch: TaskBatch,
    known_noise: bool = False,
    calibration: Calibration | None = DEFAULT_CALIBRATION,
    adaptation: Adaptation | None = DEFAULT_ADAPTATION,
) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance of the noisy targets, as ``TNPKRModel`` computes them.

    The context is standardised first (the BoTorch model's default outcome transform) and the
    predictions are mapped back, so both are in the units of the task.

    Args:
        model: The network.
        batch: The tasks.
        known_noise: Give the network each task's true noise variance, as ``TNPKRModel``
            does with ``train_Yvar``; by default it infers the noise from the context.
        calibration: Variance calibration on each context (``TNPKR.encode``), by default
            ``TNPKRModel``'s; None for the network's variances as they are.
        adaptation: Distance scales fitted to each context (``TNPKR.encode``), by default
            ``TNPKRModel``'s; None for the network's distances.

    Returns:
        `B x nT` mean and `B x nT` variance (latent plus noise).
    """
    yc, loc, scale = standardize_context(batch.yc)
    yvar = None
    if known_noise:
        yvar = (batch.noise / scale**2).expand_as(yc)
    scales = None
    if adaptation is not None:
        # In float32, as ``TNPKRModel`` adapts (its ``encode_dtype``): 2-3x cheaper.
        light = copy.deepcopy(model).float()
        args = (batch.xc.float(), yc.float(), None if yvar is None else yvar.float())
        scales = fit_distance_scale(light, *args, adaptation=adaptation).to(yc)
    with torch.no_grad():
        cache = model.encode(
            batch.xc, yc, yvar=yvar, calibration=calibration, distance_scale=scales
        )
        pred = model.predict(cache, batch.xt)
    return pred.mean * scale + loc, pred.yvar * scale**2


def oracle_logpdf(batch: TaskBatch) -> Tensor:
    """`B x nT` log-densities of the noisy targets under the oracle GP (true hyperparameters)."""
    return gaussian_logpdf(batch.yt, batch.oracle_mean, batch.oracle_var + batch.noise)


def _network_scores(
    model: TNPKR,
    batch: TaskBatch,
    calibration: Calibration | None,
    adaptation: Adaptation | None = DEFAULT_ADAPTATION,
) -> tuple[float, float, float]:
    """Log-likelihood and coverage of the network used as ``TNPKRModel`` uses it."""
    mean, var = network_predictive(model, batch, calibration=calibration, adaptation=adaptation)
    ll = gaussian_logpdf(batch.yt, mean, var).mean()
    err = (batch.yt - mean).abs()
    std = var.sqrt()
    c50 = (err <= Z50 * std).double().mean()
    return float(ll), float(c50), float((err <= Z90 * std).double().mean())


def _gp_loglik(batch: TaskBatch) -> float:
    """Mean log-likelihood of the noisy targets under SingleTaskGPs fitted by MLL.

    One GP per task, fitted with BoTorch's defaults (``Standardize``, ``fit_gpytorch_mll``
    with its retries), as a user would fit it.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if batch.xc.shape[1] == 0:
        return float("nan")
    total = 0.0
    for i in range(batch.xc.shape[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp = SingleTaskGP(
                batch.xc[i], batch.yc[i].unsqueeze(-1), outcome_transform=Standardize(m=1)
            )
            # A failed fit keeps its initial hyperparameters, as a user would get.
            with contextlib.suppress(Exception):
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            gp.eval()
            with torch.no_grad():
                post = gp.posterior(batch.xt[i], observation_noise=True)
                mean, var = post.mean.squeeze(-1), post.variance.squeeze(-1).clamp_min(1e-12)
                total += float(gaussian_logpdf(batch.yt[i], mean, var).mean())
    return total / batch.xc.shape[0]


def _kernel_seed(kernel: str) -> int:
    """A per-kernel seed offset that does not depend on the order of registration."""
    if kernel in KERNELS:
        return KERNELS.index(kernel)
    return len(KERNELS) + zlib.crc32(kernel.encode()) % 10_000


def cell_tasks(
    prior: PriorConfig, kernel: str, dim: int, n: int, tasks: int, targets: int, seed: int
) -> TaskBatch:
    """The tasks of one (kernel, d, n) cell: uniform contexts, float64, seeded by the cell.

    ``prior`` must already draw only ``kernel`` (``kernel`` enters the seed). The same
    arguments give the same tasks in every process, so scores of different models (and
    reused GP scores) are comparable.
    """
    cell_seed = seed * 1_000_003 + _kernel_seed(kernel) * 10_007 + dim * 101 + n
    gen = torch.Generator().manual_seed(cell_seed)
    return sample_tasks(
        prior,
        tasks,
        gen,
        dim=dim,
        num_context=n,
        bo_shaped=False,
        num_targets=targets,
        dtype=torch.float64,
    )


def evaluate_cell(
    model: TNPKR,
    kernel: str,
    dim: int,
    n: int,
    tasks: int,
    targets: int,
    with_gp: bool,
    seed: int,
    prior: PriorConfig | None = None,
    calibration: Calibration | None = DEFAULT_CALIBRATION,
    adaptation: Adaptation | None = DEFAULT_ADAPTATION,
) -> CellResult:
    """Score one (kernel, d, n) cell on ``tasks`` fresh tasks.

    Args:
        model: The network.
        kernel: A built-in kernel or one registered with ``register_kernel``.
        dim: Input dimension ``d``.
        n: Context size.
        tasks: Tasks in the cell.
        targets: Target points per task.
        with_gp: Also score a ``SingleTaskGP`` fitted to each task.
        seed: Seed of the evaluation (the cell's tasks depend on it, the kernel, d and n).
        prior: The task distribution; default ``evaluation_prior(model.config.max_dim,
            kernel)`` (broader than the training prior). When given, only its kernels are
            replaced by ``kernel``.
        calibration: The network's variance calibration (``network_predictive``).
        adaptation: The network's distance adaptation (``network_predictive``).
    """
    start = time.monotonic()
    if prior is None:
        prior = evaluation_prior(model.config.max_dim, kernel)
    else:
        prior = dataclasses.replace(prior, kernels=(kernel,), kernel_weights=(1.0,))
    batch = cell_tasks(prior, kernel, dim, n, tasks, targets, seed)
    model_ll, c50, c90 = _network_scores(model, batch, calibration, adaptation)
    oracle_ll = float(oracle_logpdf(batch).mean())
    gp_ll = _gp_loglik(batch) if with_gp else None
    return CellResult(
        kernel, dim, n, model_ll, oracle_ll, gp_ll, c50, c90, time.monotonic() - start
    )


def read_gp_scores(path: Path) -> dict[tuple[str, int, int], tuple[float, float]]:
    """SingleTaskGP scores of an earlier evaluation report (``--out``'s JSON), by cell.

    Returns ``{(kernel, d, n): (oracle_ll, gp_ll)}``. The GP's score does not depend on the
    checkpoint, and a cell's tasks depend only on the evaluation's arguments and the
    network's ``max_dim``; the oracle's score identifies them when the scores are reused.

    Raises:
        TNPKRError: Unreadable file or no SingleTaskGP scores in it.
    """
    try:
        cells = json.loads(Path(path).read_text())["cells"]
        scores = {
            (c["kernel"], int(c["dim"]), int(c["n"])): (float(c["oracle_ll"]), float(c["gp_ll"]))
            for c in cells
            if c.get("gp_ll") is not None
        }
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TNPKRError(f"--gp-from {str(path)!r} is not an evaluation report: {err}") from err
    if not scores:
        raise TNPKRError(f"--gp-from {str(path)!r} holds no SingleTaskGP scores.")
    return scores


def same_tasks(oracle_ll: float, other_oracle_ll: float) -> bool:
    """Whether two oracle scores of a cell come from the same tasks.

    Recomputing a cell gives the same tasks but not always the same last bits of the oracle's
    score (the Cholesky factorisations' sums run in another order under another thread
    count: differences of about 1e-9 were seen); other tasks differ by far more than the
    relative 1e-6 allowed here.
    """
    return abs(oracle_ll - other_oracle_ll) <= 1e-6 * max(1.0, abs(oracle_ll))


def reuse_gp_score(
    cell: CellResult, scores: dict[tuple[str, int, int], tuple[float, float]]
) -> CellResult:
    """``cell`` with the SingleTaskGP score of the same cell in ``scores``.

    Raises:
        TNPKRError: The cell is missing or its tasks differ (another oracle score).
    """
    old = scores.get((cell.kernel, cell.dim, cell.n))
    if old is None or not same_tasks(old[0], cell.oracle_ll):
        raise TNPKRError(
            f"--gp-from has no scores for the tasks of cell ({cell.kernel}, d={cell.dim}, "
            f"n={cell.n}); it must come from a run with the same --tasks, --targets and --seed."
        )
    return dataclasses.replace(cell, gp_ll=old[1])


def summarise(cells: list[CellResult]) -> dict[str, Any]:
    gaps = [c.gap for c in cells]
    out: dict[str, Any] = {
        "cells": len(cells),
        "mean_gap": sum(gaps) / len(gaps),
        "cover50": sum(c.cover50 for c in cells) / len(cells),
        "cover90": sum(c.cover90 for c in cells) / len(cells),
    }
    with_gp = [c for c in cells if c.gp_ll is not None and math.isfinite(c.gp_ll)]
    if with_gp:
        out["gp_mean_gap"] = sum(c.gp_gap for c in with_gp) / len(with_gp)
        out["share_at_least_gp"] = sum(c.model_ll >= c.gp_ll for c in with_gp) / len(with_gp)
    return out


def markdown_table(cells: list[CellResult]) -> str:
    lines = [
        "| kernel | d | n | TNP-KR | oracle | SingleTaskGP | gap | GP gap | cov50 | cov90 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        gp = "-" if c.gp_ll is None else f"{c.gp_ll:.3f}"
        gp_gap = "-" if c.gp_gap is None else f"{c.gp_gap:.3f}"
        lines.append(
            f"| {c.kernel} | {c.dim} | {c.n} | {c.model_ll:.3f} | {c.oracle_ll:.3f} | {gp} | "
            f"{c.gap:.3f} | {gp_gap} | {c.cover50:.2f} | {c.cover90:.2f} |"
        )
    return "\n".join(lines)


def checkpoint_trained_context(path_or_name: str) -> int | None:
    """Largest training context of a checkpoint: its config's ``trained_context``, else its
    preset's ``max_context`` (older files), else None."""
    from botorch_tnpkr.checkpoints.registry import resolve_checkpoint
    from botorch_tnpkr.train.presets import PRESETS

    path, _ = resolve_checkpoint(path_or_name)
    meta = read_metadata(path)
    if meta["config"].trained_context is not None:
        return meta["config"].trained_context
    extra = meta["extra"]
    preset = extra.get("preset") if isinstance(extra, dict) else None
    return PRESETS[preset].prior.max_context if preset in PRESETS else None


def _positive_ints(flag: str, text: str) -> list[int]:
    """A comma-separated list of positive integers, or a ``TNPKRError`` naming the flag."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise TNPKRError(f"{flag} must be comma-separated positive integers, got {text!r}.")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnpkr-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", default=DEFAULT_CHECKPOINT, help="name or .safetensors path"
    )
    parser.add_argument("--kernels", default="rbf,matern52,matern32")
    parser.add_argument("--dims", default="1,2,3,6")
    parser.add_argument("--sizes", default="8,32,128,512")
    parser.add_argument("--tasks", type=int, default=16, help="tasks per cell")
    parser.add_argument("--targets", type=int, default=64, help="target points per task")
    parser.add_argument("--no-gp", action="store_true", help="skip the fitted SingleTaskGP")
    parser.add_argument("--no-extrapolation", action="store_true")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="score the network's variances as they are (TNPKRModel(calibrate=False))",
    )
    parser.add_argument(
        "--no-adaptation",
        action="store_true",
        help="keep the network's distances (TNPKRModel(adapt=False))",
    )
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="write <out>.json and <out>.md")
    parser.add_argument(
        "--gp-from",
        type=Path,
        help="reuse SingleTaskGP scores from an earlier report (its JSON) on the same tasks",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads is not None and args.threads < 1:
            raise TNPKRError(f"--threads must be a positive integer, got {args.threads}.")
        if args.threads:
            torch.set_num_threads(args.threads)
        model = load_checkpoint(args.checkpoint).double()
        kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
        unknown = sorted(set(kernels) - set(kernel_names()))
        if unknown or not kernels:
            raise TNPKRError(f"Unknown kernels {unknown}; allowed: {list(kernel_names())}.")
        dims = _positive_ints("--dims", args.dims)
        sizes = _positive_ints("--sizes", args.sizes)
        for name in ("tasks", "targets", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise TNPKRError(f"--{name} must be a positive integer, got {value}.")
        too_big = [d for d in dims if not 1 <= d <= model.config.max_dim]
        if too_big:
            raise TNPKRError(f"--dims {too_big} outside 1..max_dim={model.config.max_dim}.")
        gp_scores = None
        if args.gp_from is not None and not args.no_gp:
            gp_scores = read_gp_scores(args.gp_from)
    except (TNPKRError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    fit_gp = not args.no_gp and gp_scores is None
    calibration = None if args.no_calibration else DEFAULT_CALIBRATION
    adaptation = None if args.no_adaptation else DEFAULT_ADAPTATION
    cells = []
    for kernel in kernels:
        for dim in dims:
            for n in sizes:
                cell = evaluate_cell(
                    model,
                    kernel,
                    dim,
                    n,
                    args.tasks,
                    args.targets,
                    fit_gp,
                    args.seed,
                    calibration=calibration,
                    adaptation=adaptation,
                )
                if gp_scores is not None:
                    try:
                        cell = reuse_gp_score(cell, gp_scores)
                    except TNPKRError as err:
                        print(f"error: {err}", file=sys.stderr)
                        return 2
                cells.append(cell)
                gp = "" if cell.gp_gap is None else f" gp_gap={cell.gp_gap:.3f}"
                print(
                    f"{kernel:9s} d={dim} n={n:4d} gap={cell.gap:.3f}{gp} cov90={cell.cover90:.2f}",
                    flush=True,
                )
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "summary": summarise(cells),
        "evaluate_args": {
            "tasks": args.tasks,
            "targets": args.targets,
            "seed": args.seed,
            "calibration": calibration is not None,
            "adaptation": adaptation is not None,
            # Which adaptation: a re-tuned default scores differently.
            "adaptation_settings": None if adaptation is None else dataclasses.asdict(adaptation),
        },
        "cells": [dict(c.__dict__, gap=c.gap, gp_gap=c.gp_gap) for c in cells],
    }
    if gp_scores is not None:
        report["gp_from"] = str(args.gp_from)
    trained = None if args.no_extrapolation else checkpoint_trained_context(args.checkpoint)
    if trained:
        gaps = {}
        for n in (trained, 4 * trained):
            extra = [
                evaluate_cell(
                    model,
                    k,
                    d,
                    n,
                    max(4, args.tasks // 2),
                    args.targets,
                    False,
                    args.seed,
                    calibration=calibration,
                    adaptation=adaptation,
                )
                for k in kernels
                for d in dims
            ]
            gaps[n] = sum(c.gap for c in extra) / len(extra)
        report["extrapolation"] = {
            "trained_context": trained,
            "gap_at_trained": gaps[trained],
            "gap_at_4x": gaps[4 * trained],
            "degradation": gaps[4 * trained] - gaps[trained],
        }
    table = markdown_table(cells)
    print(table)
    print(json.dumps({k: v for k, v in report.items() if k != "cells"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
