"""One BO step from fixed histories: which surrogate proposes the better next point?

Full BO runs (``bo_regret.py``) compound every step: two surrogates' trajectories part at the
first different proposal, and telling them apart takes many seeds. This benchmark fixes the
histories and scores a single LogEI step of every model from each of them, paired:

* histories: prefixes of SingleTaskGP + LogEI runs of the BO suite (``_bo.FUNCTIONS``, the
  same seeds, noise draws and budgets as ``bo_regret.py``), cut after ``--snapshots``
  iterations; they are computed once and cached in ``--histories`` (JSON), so scoring a new
  checkpoint takes minutes;
* each model (``gp`` or a TNP-KR checkpoint: a registered name or a ``.safetensors`` path;
  with ``:known`` appended, told the noise level instead of inferring it: the true one,
  floored at 1e-6 of the variance of Y, see ``known_noise``; with ``:nocal`` appended, a
  checkpoint without ``TNPKRModel``'s variance calibration, as rows made before session 18
  were; with ``:noadapt``, without its distance adaptation, as rows made before session 24
  were; suffixes combine, e.g. ``:known:nocal``) is built on the history and
  ``LogExpectedImprovement(best_f=max Y)`` is optimised with the suite's budgets, under the
  same torch seed for every model;
* scores, per history and model:

  - ``proposal``: log10 regret of the proposed point itself, ``log10(f* - f(x_new))``
    (noiseless values; lower is better); what one step of the model is worth;
  - ``gain``: decrease of log10 simple regret over the history's, ``>= 0``;
  - ``near_nll``: NLL of the noiseless values at ``--near-points`` points around the
    incumbent (Gaussian, sd ``--near-sd`` in the unit cube) under the model's posterior of
    ``f``, in units of the history's standard deviation of Y (lower is better);
  - ``far_nll``: the same at uniform points of the cube;
  - ``near_rmse`` and ``near_sd``: the posterior mean's RMSE and the mean posterior sd at the
    points around the incumbent, in the same units (a calibrated model has them about equal;
    sd above RMSE is underconfidence, which makes EI explore instead of refining);
  - ``z``: ``(f(x_new) - mean) / sd`` of the posterior at the proposal (did the model
    over-promise?), and ``step``: the distance from the incumbent to the proposal over sqrt(d).

The report gives each model's mean over histories per noise variant and function, and each
model's paired difference to the first model with its standard error.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bo_step_quality.py --models gp tnpkr-exact \\
        /tmp/old.safetensors                 # first run also makes the histories (~20 min)
    python benchmarks/bo_step_quality.py --seeds 0-3 --models tnpkr-exact /tmp/old.safetensors \\
        gp --reuse /tmp/earlier.json         # only models not scored there are scored
    python benchmarks/bo_step_quality.py --smoke --out-dir /tmp/bsq   # seconds

Writes ``bo_step_quality[_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._bo import (  # noqa: E402
    ADAPTATION_VERSION,
    FUNCTIONS,
    NOISE_VARIANTS,
    Problem,
    StepOptions,
    acquisition,
    build_model,
    log10_regret,
    run_bo,
    unit_bounds,
)
from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.checkpoints.registry import file_sha256, resolve_checkpoint  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- histories
def history_key(function: str, noise: str, seed: int) -> str:
    return f"{function}/{noise}/{seed}"


def load_histories(
    path: Path,
    functions: Sequence[str],
    noises: Sequence[str],
    seeds: Sequence[int],
    iterations: int,
    options: StepOptions,
) -> dict[str, dict[str, Any]]:
    """GP + LogEI runs of ``iterations`` steps, read from ``path`` or run and added to it.

    A cached run is reused when it is at least that long and was made with the same
    ``optimize_acqf`` budgets; otherwise it is run again and replaced.
    """
    cache: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    budgets = {"num_restarts": options.num_restarts, "raw_samples": options.raw_samples}
    for noise in noises:
        for function in functions:
            for seed in seeds:
                key = history_key(function, noise, seed)
                cached = cache.get(key, {})
                same_budgets = all(cached.get(k) == v for k, v in budgets.items())
                if same_budgets and cached.get("iterations", -1) >= iterations:
                    continue
                start = time.perf_counter()
                problem = Problem(function, noisy=noise == "noisy")
                record = run_bo(problem, "gp", "logei", seed, iterations, options, keep_points=True)
                cache[key] = {
                    k: record[k]
                    for k in ("function", "noise", "seed", "n_init", "iterations", "optimum")
                } | {k: record[k] for k in ("points", "observed", "values", "noise_std", *budgets)}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cache))
                print(
                    f"history {key}: {iterations} GP steps in {time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return cache


def snapshot(history: dict[str, Any], iteration: int) -> tuple[Tensor, Tensor, Tensor]:
    """The `n x d` points, `n x 1` observed and `n x 1` noiseless values after ``iteration``."""
    n = history["n_init"] + iteration
    X = torch.tensor(history["points"][:n], dtype=torch.float64)
    Y = torch.tensor(history["observed"][:n], dtype=torch.float64).unsqueeze(-1)
    F = torch.tensor(history["values"][:n], dtype=torch.float64).unsqueeze(-1)
    return X, Y, F


# ----------------------------------------------------------------------------- scoring
def posterior_scores(model, X: Tensor, F: Tensor, scale: float) -> tuple[float, float, float]:
    """Mean NLL, RMSE and mean sd of the posterior of ``f`` at `m x d` points with noiseless
    values `m x 1`, in units of ``scale``."""
    with torch.no_grad():
        post = model.posterior(X, observation_noise=False)
        mean = post.mean.squeeze(-1) / scale
        var = post.variance.squeeze(-1).clamp_min(1e-12) / scale**2
    err = F.squeeze(-1) / scale - mean
    nll = float((0.5 * (LOG_2PI + var.log() + err**2 / var)).mean())
    return nll, float(err.pow(2).mean().sqrt()), float(var.sqrt().mean())


def score_step(
    model_spec: str,
    problem: Problem,
    X: Tensor,
    Y: Tensor,
    F: Tensor,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, float]:
    """Build the model on the history, take one LogEI step and score it (see the module doc)."""
    from botorch.optim import optimize_acqf

    model = make_model(model_spec, X, Y, problem.noise_std)
    torch.manual_seed(seed)
    acqf = acquisition("logei", model, X, Y)
    candidate, _ = optimize_acqf(
        acqf,
        bounds=unit_bounds(X.shape[-1]),
        q=1,
        num_restarts=args.num_restarts,
        raw_samples=args.raw_samples,
    )
    candidate = candidate.detach()
    gen = torch.Generator().manual_seed(seed)
    f_new = problem.evaluate(candidate, gen)[1]
    regret_before = problem.optimum - float(F.max())
    regret_new = problem.optimum - float(f_new)
    scale = float(Y.std()) if len(Y) > 1 and float(Y.std()) > 0 else 1.0

    incumbent = X[Y.squeeze(-1).argmax()]
    near = (
        incumbent
        + args.near_sd * torch.randn(args.near_points, X.shape[-1], generator=gen, dtype=X.dtype)
    ).clamp(0.0, 1.0)
    far = torch.rand(args.near_points, X.shape[-1], generator=gen, dtype=X.dtype)
    near_nll, near_rmse, near_sd = posterior_scores(
        model, near, problem.evaluate(near, gen)[1], scale
    )
    with torch.no_grad():
        post = model.posterior(candidate, observation_noise=False)
        z = (float(f_new) - float(post.mean)) / math.sqrt(max(float(post.variance), 1e-24))
    return {
        "proposal": log10_regret(regret_new),
        "gain": log10_regret(regret_before) - log10_regret(min(regret_before, regret_new)),
        "near_nll": near_nll,
        "far_nll": posterior_scores(model, far, problem.evaluate(far, gen)[1], scale)[0],
        "near_rmse": near_rmse,
        "near_sd": near_sd,
        "z": z,
        "step": float((candidate[0] - incumbent).norm()) / math.sqrt(X.shape[-1]),
    }


def known_noise(Y: Tensor, noise_std: float) -> Tensor:
    """`n x 1` known noise variances: the true level, floored at 1e-6 of the variance of Y.

    The floor is the training prior's smallest noise (a noise/signal std ratio of 1e-3), so a
    noiseless problem is told "as noiseless as the network has seen".
    """
    floor = 1e-6 * float(Y.var()) if len(Y) > 1 else 1e-6
    return torch.full_like(Y, max(noise_std**2, floor))


MODEL_SUFFIXES = ("known", "nocal", "noadapt")


def parse_spec(spec: str) -> tuple[str, bool, bool, bool]:
    """``(base, known, calibrate, adapt)`` of a ``--models`` entry
    ``base[:known][:nocal][:noadapt]``."""
    base, *suffixes = spec.split(":")
    unknown = [s for s in suffixes if s not in MODEL_SUFFIXES]
    if unknown or len(set(suffixes)) < len(suffixes):
        raise ValueError(
            f"Bad model suffixes {suffixes} in {spec!r}; allowed, once each: "
            + ", ".join(f"':{s}'" for s in MODEL_SUFFIXES)
            + "."
        )
    for network_only in ("nocal", "noadapt"):
        if base == "gp" and network_only in suffixes:
            raise ValueError(f"{spec!r}: ':{network_only}' applies to TNP-KR checkpoints only.")
    return base, "known" in suffixes, "nocal" not in suffixes, "noadapt" not in suffixes


def make_model(spec: str, X: Tensor, Y: Tensor, noise_std: float):
    """The model of a ``--models`` entry: ``gp`` or a checkpoint, with ``:known`` for a model
    told the noise level (``known_noise``) instead of inferring it, ``:nocal`` for a
    checkpoint without variance calibration and ``:noadapt`` without distance adaptation."""
    base, known, calibrate, adapt = parse_spec(spec)
    Yvar = known_noise(Y, noise_std) if known else None
    if base == "gp":
        return build_model("gp", X, Y, StepOptions(), Yvar=Yvar)
    options = StepOptions(checkpoint=base, calibrate=calibrate, adapt=adapt)
    return build_model("tnpkr", X, Y, options, Yvar=Yvar)


def model_label(spec: str) -> str:
    """``gp`` (``gp:known``), or the checkpoint's name and the first 8 hex digits of its
    sha256, then ``:known`` if told the noise, ``:cal`` if calibrated and ``:adapt<version>``
    if adapted. Rows scored before calibration (adaptation) existed carry no ``:cal``
    (``:adapt<version>``), so ``--reuse`` matches them only to runs without it."""
    base, known, calibrate, adapt = parse_spec(spec)
    if base == "gp":
        return "gp:known" if known else "gp"
    path, _ = resolve_checkpoint(base)
    label = f"{Path(base).stem}@{file_sha256(path)[:8]}" + ":known" * known + ":cal" * calibrate
    return label + f":adapt{ADAPTATION_VERSION}" * adapt


# Settings that change a model's scores on a history; rows are reused only when they match.
SCORE_SETTINGS = ("num_restarts", "raw_samples", "near_points", "near_sd")


def reusable_rows(files: Sequence[Path], args: argparse.Namespace) -> dict[tuple, dict]:
    """Rows of earlier results files (``--reuse``), keyed by (model label, noise, function,
    seed, iteration). A model label carries its checkpoint's sha256, so a row is reused only
    for the same network; a file scored with other ``SCORE_SETTINGS`` is an error."""
    rows: dict[tuple, dict] = {}
    for path in files:
        earlier = json.loads(Path(path).read_text())
        for name in SCORE_SETTINGS:
            if earlier["settings"].get(name) != getattr(args, name):
                raise ValueError(
                    f"--reuse {path}: it was scored with {name}="
                    f"{earlier['settings'].get(name)!r}, this run uses {getattr(args, name)!r}."
                )
        for row in earlier["rows"]:
            key = (row["model"], row["noise"], row["function"], row["seed"], row["iteration"])
            rows[key] = row
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = StepOptions(num_restarts=args.num_restarts, raw_samples=args.raw_samples)
    histories = load_histories(
        args.histories, args.functions, args.noise, args.seeds, max(args.snapshots), options
    )
    labels = [model_label(spec) for spec in args.models]
    if len(set(labels)) < len(labels):
        raise ValueError(f"--models names the same model twice: {labels}")
    reused = reusable_rows(args.reuse, args)
    rows: list[dict[str, Any]] = []
    for noise in args.noise:
        for function in args.functions:
            problem = Problem(function, noisy=noise == "noisy")
            for seed in args.seeds:
                history = histories[history_key(function, noise, seed)]
                for iteration in args.snapshots:
                    X, Y, F = snapshot(history, iteration)
                    step_seed = 7_919 * seed + 104_729 * iteration + 13
                    for spec, label in zip(args.models, labels, strict=True):
                        key = (label, noise, function, seed, iteration)
                        if key in reused:
                            rows.append(reused[key])
                            continue
                        scores = score_step(spec, problem, X, Y, F, args, step_seed)
                        rows.append(
                            {
                                "function": function,
                                "noise": noise,
                                "seed": seed,
                                "iteration": iteration,
                                "n": len(X),
                                "model": label,
                            }
                            | scores
                        )
                print(f"{noise} {function} seed {seed} done", file=sys.stderr, flush=True)
    return {
        "models": labels,
        "rows": rows,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("out_dir", "reuse")
        },
        "machine": machine_facts(torch.device("cpu")),
    }


# ----------------------------------------------------------------------------- report
METRICS = ("proposal", "gain", "near_nll", "far_nll", "near_rmse", "near_sd", "z", "step")


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per noise variant: each model's mean of every metric (and per function for the
    proposal), and each model's paired difference to the first model with its SE."""
    models = result["models"]
    by_case: dict[tuple, dict[str, dict[str, float]]] = defaultdict(dict)
    for row in result["rows"]:
        case = (row["noise"], row["function"], row["seed"], row["iteration"])
        by_case[case][row["model"]] = row
    summary: dict[str, Any] = {}
    for noise in sorted({case[0] for case in by_case}):
        cases = [c for c in by_case if c[0] == noise and all(m in by_case[c] for m in models)]
        block: dict[str, Any] = {
            "histories": len(cases),
            "mean": {},
            "median": {},
            "paired": {},
            "by_function": {},
        }
        for model in models:
            block["mean"][model] = {
                metric: statistics.fmean(by_case[c][model][metric] for c in cases)
                for metric in METRICS
            }
            block["median"][model] = {
                metric: statistics.median(by_case[c][model][metric] for c in cases)
                for metric in METRICS
            }
            if model != models[0]:
                block["paired"][model] = {
                    metric: _mean_se(
                        [by_case[c][model][metric] - by_case[c][models[0]][metric] for c in cases]
                    )
                    for metric in ("proposal", "gain", "near_nll", "far_nll")
                }
        for function in sorted({c[1] for c in cases}):
            block["by_function"][function] = {
                model: statistics.fmean(
                    by_case[c][model]["proposal"] for c in cases if c[1] == function
                )
                for model in models
            }
        summary[noise] = block
    return summary


def markdown(result: dict[str, Any], summary: dict[str, Any]) -> str:
    models = result["models"]
    settings = result["settings"]
    lines = [
        "# One LogEI step from fixed GP-run histories",
        "",
        f"Snapshots after {settings['snapshots']} GP iterations of seeds {settings['seeds']}; "
        f"optimize_acqf with {settings['num_restarts']} restarts, {settings['raw_samples']} raw "
        "samples; the same torch seed for every model. `proposal`: log10 regret of the proposed "
        "point (lower is better); `gain`: decrease of log10 simple regret; `near`/`far` NLL: "
        "posterior of f around the incumbent / uniform, in units of std(Y) (lower is better); "
        "`near RMSE / sd`: the posterior mean's error and sd around the incumbent (std(Y) "
        "units); `z`: (f - mean)/sd at the proposal; `step`: distance to the incumbent / "
        "sqrt(d). "
        "Command: `python benchmarks/bo_step_quality.py`.",
        "",
    ]
    for noise, block in summary.items():
        lines += [f"## {noise} ({block['histories']} histories)", ""]
        lines += [
            "| model | proposal | gain | near NLL (median) | far NLL (median) | near RMSE / sd "
            "| z | step |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model in models:
            m, med = block["mean"][model], block["median"][model]
            lines.append(
                f"| {model} | {m['proposal']:.3f} | {m['gain']:.3f} | "
                f"{m['near_nll']:.2f} ({med['near_nll']:.2f}) | "
                f"{m['far_nll']:.2f} ({med['far_nll']:.2f}) | "
                f"{m['near_rmse']:.3f} / {m['near_sd']:.3f} | {m['z']:.2f} | {m['step']:.3f} |"
            )
        if block["paired"]:
            lines += [
                "",
                f"Paired difference to {models[0]} (mean +- SE over histories):",
                "",
                "| model | proposal | gain | near NLL | far NLL |",
                "|---|---|---|---|---|",
            ]
            for model, diffs in block["paired"].items():
                cells = " | ".join(
                    f"{diffs[k][0]:+.3f} +- {diffs[k][1]:.3f}"
                    for k in ("proposal", "gain", "near_nll", "far_nll")
                )
                lines.append(f"| {model} | {cells} |")
        lines += [
            "",
            "Mean proposal log10 regret by function:",
            "",
            "| function | " + " | ".join(models) + " |",
            "|---|" + "---|" * len(models),
        ]
        for function, values in block["by_function"].items():
            lines.append(f"| {function} | " + " | ".join(f"{values[m]:.3f}" for m in models) + " |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def _ints(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(part) for part in text.split("-"))
        return list(range(low, high + 1))
    return [int(part) for part in text.split(",")]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["gp", "tnpkr-exact"],
        help="gp and/or TNP-KR checkpoints (names or .safetensors paths)",
    )
    parser.add_argument(
        "--functions", nargs="+", default=sorted(FUNCTIONS), choices=sorted(FUNCTIONS)
    )
    parser.add_argument("--noise", nargs="+", default=list(NOISE_VARIANTS), choices=NOISE_VARIANTS)
    parser.add_argument("--seeds", type=_ints, default=_ints("0-2"))
    parser.add_argument(
        "--snapshots",
        type=_ints,
        default=_ints("5,15,25,35"),
        help="GP iterations after which the history is cut",
    )
    parser.add_argument("--num-restarts", type=int, default=4)
    parser.add_argument("--raw-samples", type=int, default=128)
    parser.add_argument("--near-points", type=int, default=64)
    parser.add_argument("--near-sd", type=float, default=0.05)
    parser.add_argument("--histories", type=Path, default=RESULTS / "bo_step_histories.json")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--reuse",
        nargs="+",
        type=Path,
        default=[],
        help="earlier results JSON: take the rows of models already scored there (same "
        "checkpoint sha256, same optimiser and near-point settings) instead of rescoring",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Branin, noiseless, one seed, snapshots 1,2; histories in --out-dir",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.functions, args.noise, args.seeds, args.snapshots = (
            ["branin"],
            ["noiseless"],
            [0],
            [1, 2],
        )
        args.num_restarts, args.raw_samples, args.near_points = 2, 16, 8
        args.histories = args.out_dir / "bo_step_histories_smoke.json"
    if min(args.snapshots) < 0:
        parser.error("--snapshots must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    result["summary"] = summarise(result)
    text = markdown(result, result["summary"])
    stem = "bo_step_quality_smoke" if args.smoke else "bo_step_quality"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (args.out_dir / f"{stem}.md").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
