"""BO regret on BoTorch's synthetic functions: TNPKRModel vs SingleTaskGP vs Sobol.

The suite: Branin, Hartmann-6, Ackley-4, Levy-5, Rosenbrock-4, StyblinskiTang-3,
Michalewicz-5, each noiseless and noisy (see ``benchmarks/_bo.py`` for the noise levels),
with 2d+2 Sobol points then ``--iterations`` (50) BO iterations of q=1 LogEI or q=4 qLogNEI,
over ``--seeds`` (0-9). Both models use the same acquisition with the same ``optimize_acqf``
budgets (``--num-restarts`` 4, ``--raw-samples`` 128); TNPKRModel uses ``--checkpoint``
("auto": the exact-attention network at these history sizes).

The full suite is far more than one session on a small machine, so the runner is resumable:

* every finished run (function, noise, acquisition, method, seed) is appended as one JSON line
  to ``--results`` (``benchmarks/results/bo_regret.jsonl``); a run that is already there
  (same budgets, for TNP-KR the same checkpoint file, at least as many iterations) is skipped;
* ``--budget-minutes`` stops before starting a run once that much time has passed; a killed
  runner loses only the run in progress;
* runs are ordered seed by seed across functions and methods, so a partial suite has the same
  seeds in every cell.

``--report`` aggregates whatever the JSONL holds into ``bo_regret_summary.json``, one PNG of
regret curves (median and quartiles over seeds) per acquisition and noise variant, and a
markdown table (``bo_regret.md``: mean log10 simple regret per function and method at equal
evaluations over the seeds all methods share, and model seconds), stating the seeds and
iterations of every cell.

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bo_regret.py --acq logei --noise noiseless \\
        --budget-minutes 120                       # continue the q=1 LogEI noiseless suite
    python benchmarks/bo_regret.py --report        # tables and plots of what has run
    python benchmarks/bo_regret.py --compare 7a16235e 4c014125   # checkpoints, paired runs
    python benchmarks/bo_regret.py --smoke --out-dir /tmp/bo   # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._bo import (  # noqa: E402
    ACQ_LABELS,
    ACQUISITIONS,
    ADAPTATION_VERSION,
    FUNCTIONS,
    LABELS,
    METHODS,
    NOISE_VARIANTS,
    Problem,
    StepOptions,
    log10_regret,
    run_bo,
)
from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.errors import CheckpointError  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_JSONL = RESULTS / "bo_regret.jsonl"
TARGET_MARGIN = 0.1  # TNP-KR's mean log10 regret may exceed the GP's by this much
SIDE_BY_SIDE_S = 1800  # runs finished this close in time saw the same machine load


# ----------------------------------------------------------------------------- records
def checkpoint_sha(checkpoint: str) -> str:
    """sha256 of the file TNPKRModel loads for a BO-suite history (``auto``: the exact one).

    Hashes the file itself, so that a checkpoint replaced while a runner is going is noticed.
    """
    from botorch_tnpkr.checkpoints import DEFAULT_CHECKPOINT, resolve_checkpoint
    from botorch_tnpkr.checkpoints.registry import file_sha256

    name = DEFAULT_CHECKPOINT if checkpoint == "auto" else checkpoint
    path, _ = resolve_checkpoint(name)
    return file_sha256(path)


# The version of TNPKRModel's default variance calibration that calibrated runs record: 1 (no
# field) is session 18's (contexts of 64 points or more: it never acted in this suite's
# histories), 2 session 19's (from 32 points, with 16 folds below 128).
CALIBRATION_VERSION = 2


def calibration_label(record: dict[str, Any]) -> str:
    """``""`` for a run without calibration, else ``+cal`` (version 1) or ``+cal<version>``."""
    if not record.get("calibrated", False):
        return ""
    version = record.get("calibration_version", 1)
    return "+cal" + (str(version) if version != 1 else "")


def adaptation_label(record: dict[str, Any]) -> str:
    """``""`` for a run without distance adaptation (all runs before session 24), else
    ``+adapt<version>``."""
    if not record.get("adapted", False):
        return ""
    return f"+adapt{record.get('adaptation_version', ADAPTATION_VERSION)}"


def tnpkr_identity(record: dict[str, Any]) -> str:
    """The TNP-KR surrogate of a run: its checkpoint's sha256, with ``calibration_label`` when
    the variances were calibrated (``TNPKRModel(calibrate=True)``; runs from before the setting
    existed were not) and ``adaptation_label`` when the distances were adapted."""
    sha = record.get("checkpoint_sha256") or ""
    return sha + calibration_label(record) + adaptation_label(record)


def run_key(record: dict[str, Any]) -> tuple:
    """What makes two runs the same run (iterations aside)."""
    sha = tnpkr_identity(record) if record["method"] == "tnpkr" else None
    return (
        record["function"],
        record["noise"],
        record["acq"],
        record["method"],
        record["seed"],
        record["num_restarts"],
        record["raw_samples"],
        record["n_init"],
        sha,
    )


def load_records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of the results file (a line cut short by a kill is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` (O_APPEND), then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def finished_runs(path: Path) -> dict[tuple, int]:
    """Iterations of every finished run in the results file, by ``run_key``."""
    done: dict[tuple, int] = {}
    for record in load_records(path):
        key = run_key(record)
        done[key] = max(done.get(key, 0), record["iterations"])
    return done


def planned_runs(args: argparse.Namespace) -> Iterable[tuple[str, str, str, int, str]]:
    """(acq, noise, function, seed, method), seed by seed so partial suites stay balanced."""
    for acq in args.acq:
        for noise in args.noise:
            for seed in args.seeds:
                for function in args.functions:
                    for method in args.methods:
                        yield acq, noise, function, seed, method


# ----------------------------------------------------------------------------- running
def run_suite(args: argparse.Namespace) -> list[dict[str, Any]]:
    options = StepOptions(
        num_restarts=args.num_restarts,
        raw_samples=args.raw_samples,
        checkpoint=args.checkpoint,
        calibrate=not args.no_calibration,
        adapt=not args.no_adaptation,
    )
    sha = checkpoint_sha(args.checkpoint)
    # What identifies the TNP-KR surrogate of a run (``tnpkr_identity``).
    surrogate: dict[str, Any] = {
        "checkpoint_sha256": sha,
        "calibrated": options.calibrate,
        "adapted": options.adapt,
    }
    if options.calibrate:
        surrogate["calibration_version"] = CALIBRATION_VERSION
    if options.adapt:
        surrogate["adaptation_version"] = ADAPTATION_VERSION
    done = finished_runs(args.results)
    facts = machine_facts(torch.device("cpu"))
    started = time.monotonic()
    new: list[dict[str, Any]] = []
    skipped = 0
    for acq, noise, function, seed, method in planned_runs(args):
        problem = Problem(function, noisy=noise == "noisy")
        probe = {
            "function": function,
            "noise": noise,
            "acq": acq,
            "method": method,
            "seed": seed,
            "num_restarts": args.num_restarts,
            "raw_samples": args.raw_samples,
            "n_init": 2 * problem.dim + 2,
            **surrogate,
        }
        if done.get(run_key(probe), -1) < args.iterations:
            done = finished_runs(args.results)  # another runner may have done it meanwhile
        if done.get(run_key(probe), -1) >= args.iterations:
            skipped += 1
            continue
        elapsed_min = (time.monotonic() - started) / 60
        if args.budget_minutes is not None and elapsed_min >= args.budget_minutes:
            print(f"budget of {args.budget_minutes} min spent: stopping", file=sys.stderr)
            break
        if method == "tnpkr" and checkpoint_sha(args.checkpoint) != sha:
            print(
                "the checkpoint file changed since this runner started: stopping (start it "
                "again to continue with the new checkpoint)",
                file=sys.stderr,
            )
            break
        try:
            record = run_bo(problem, method, acq, seed, args.iterations, options)
        except CheckpointError as err:  # replaced while this run went on
            print(f"stopping: {err}", file=sys.stderr)
            break
        if method == "tnpkr":
            record.update(surrogate)
        record.update(machine=facts, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        append_record(args.results, record)
        new.append(record)
        print(
            f"{acq:8s} {noise:9s} {function:16s} {method:6s} seed {seed:2d}: "
            f"log10 regret {log10_regret(record['regret'][-1]):7.3f}  "
            f"model {record['model_s']:7.1f} s  wall {record['wall_s']:7.1f} s",
            file=sys.stderr,
            flush=True,
        )
    print(f"{len(new)} runs done, {skipped} already there", file=sys.stderr)
    return new


# ----------------------------------------------------------------------------- report
def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def select_records(
    records: list[dict[str, Any]],
    sha: str | None,
    calibrated: bool | None = None,
    adapted: bool | None = None,
) -> list[dict[str, Any]]:
    """One record per run (the longest), TNP-KR runs only of the checkpoint ``sha``, the
    calibration setting ``calibrated`` and the adaptation setting ``adapted`` where given
    (True: the current version)."""
    wanted_cal = wanted_adapt = None
    if calibrated is not None:
        current = {"calibrated": True, "calibration_version": CALIBRATION_VERSION}
        wanted_cal = calibration_label(current) if calibrated else ""
    if adapted is not None:
        wanted_adapt = adaptation_label({"adapted": adapted})
    best: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if record["method"] == "tnpkr" and (
            (sha and not (record.get("checkpoint_sha256") or "").startswith(sha))
            or (wanted_cal is not None and calibration_label(record) != wanted_cal)
            or (wanted_adapt is not None and adaptation_label(record) != wanted_adapt)
        ):
            continue
        key = run_key(record)
        if key not in best or record["iterations"] > best[key]["iterations"]:
            best[key] = record
    return list(best.values())


def _order(item: tuple[tuple, Any]) -> tuple:
    """Sort key of grouped records: acquisition, noise, then functions and methods as listed."""
    acq, noise, function, *method = item[0]
    rank = list(FUNCTIONS).index(function) if function in FUNCTIONS else len(FUNCTIONS)
    return (acq, noise, rank, function, *[METHODS.index(m) for m in method])


def side_by_side(
    groups: dict[tuple, list[dict[str, Any]]], rows: list[dict[str, Any]]
) -> tuple[int, dict[str, float]]:
    """Model seconds of TNP-KR and GP runs of one (function, seed) finished close in time.

    Runs of a seed are made one after the other, but a resumed suite (for instance after a
    new checkpoint) can redo one method's runs under another machine load; model time is
    only compared over pairs that finished within ``SIDE_BY_SIDE_S`` of each other.

    Returns:
        The number of such pairs and the model seconds of each method over them (runs cut at
        each comparison's common iteration count).
    """
    totals = {"tnpkr": 0.0, "gp": 0.0}
    pairs = 0
    for row in rows:
        key = (row["acq"], row["noise"], row["function"])
        by_seed = {m: {r["seed"]: r for r in groups.get((*key, m), [])} for m in ("tnpkr", "gp")}
        for seed, tnpkr in by_seed["tnpkr"].items():
            gp = by_seed["gp"].get(seed)
            if gp is None or "finished" not in tnpkr or "finished" not in gp:
                continue
            gap = abs(_timestamp(tnpkr["finished"]) - _timestamp(gp["finished"]))
            if gap > SIDE_BY_SIDE_S:
                continue
            pairs += 1
            iters = row["iterations"]
            for method, record in (("tnpkr", tnpkr), ("gp", gp)):
                totals[method] += sum(record["build_s"][:iters]) + sum(record["acq_s"][:iters])
    return pairs, totals


def _timestamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Cells per (acq, noise, function, method), comparisons and suite means per (acq, noise)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["acq"], record["noise"], record["function"], record["method"])].append(
            record
        )
    cells = []
    for (acq, noise, function, method), runs in sorted(groups.items(), key=_order):
        iters = min(r["iterations"] for r in runs)
        curves = [[log10_regret(v) for v in r["regret"][: iters + 1]] for r in runs]
        q = ACQUISITIONS[acq]
        quarts = [_quantiles([c[i] for c in curves]) for i in range(iters + 1)]
        cells.append(
            {
                "acq": acq,
                "noise": noise,
                "function": function,
                "method": method,
                "seeds": sorted(r["seed"] for r in runs),
                "iterations": iters,
                "evaluations": [runs[0]["n_init"] + q * i for i in range(iters + 1)],
                "log10_regret_q25": [x[0] for x in quarts],
                "log10_regret_median": [x[1] for x in quarts],
                "log10_regret_q75": [x[2] for x in quarts],
                "mean_model_s_per_run": statistics.fmean(r["model_s"] for r in runs),
                "mean_build_s_per_step": statistics.fmean(
                    s for r in runs for s in r["build_s"][:iters]
                )
                if iters
                else 0.0,
                "mean_acq_s_per_step": statistics.fmean(s for r in runs for s in r["acq_s"][:iters])
                if iters
                else 0.0,
            }
        )
    comparisons = []
    by_problem: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for (acq, noise, function, method), runs in groups.items():
        by_problem[(acq, noise, function)][method] = runs
    for (acq, noise, function), methods in sorted(by_problem.items(), key=_order):
        seeds = set.intersection(*({r["seed"] for r in runs} for runs in methods.values()))
        iters = min(r["iterations"] for runs in methods.values() for r in runs)
        row: dict[str, Any] = {
            "acq": acq,
            "noise": noise,
            "function": function,
            "seeds": len(seeds),
            "iterations": iters,
            "evaluations": None,
            "mean_log10_regret": {},
            "model_s": {},
        }
        for method, runs in methods.items():
            paired = [r for r in runs if r["seed"] in seeds]
            if not paired:
                continue
            row["evaluations"] = paired[0]["n_init"] + ACQUISITIONS[acq] * iters
            row["mean_log10_regret"][method] = statistics.fmean(
                log10_regret(r["regret"][iters]) for r in paired
            )
            row["model_s"][method] = sum(
                sum(r["build_s"][:iters]) + sum(r["acq_s"][:iters]) for r in paired
            )
        comparisons.append(row)
    suite = []
    for acq in ACQUISITIONS:
        for noise in NOISE_VARIANTS:
            rows = [
                c
                for c in comparisons
                if c["acq"] == acq
                and c["noise"] == noise
                and c["seeds"] > 0
                and {"tnpkr", "gp"} <= set(c["mean_log10_regret"])
            ]
            if not rows:
                continue
            mean = {
                m: statistics.fmean(c["mean_log10_regret"][m] for c in rows)
                for m in METHODS
                if all(m in c["mean_log10_regret"] for c in rows)
            }
            model_s = {m: sum(c["model_s"].get(m, 0.0) for c in rows) for m in ("tnpkr", "gp")}
            delta = mean["tnpkr"] - mean["gp"]
            regret_ok = delta <= TARGET_MARGIN
            pairs, paired_s = side_by_side(groups, rows)
            if pairs:
                time_ok = "met" if paired_s["tnpkr"] < paired_s["gp"] else "NOT met"
            else:
                time_ok = "not judged (no TNP-KR and GP runs side by side)"
            suite.append(
                {
                    "acq": acq,
                    "noise": noise,
                    "functions": [c["function"] for c in rows],
                    "seeds": [c["seeds"] for c in rows],
                    "iterations": [c["iterations"] for c in rows],
                    "mean_log10_regret": mean,
                    "delta_tnpkr_minus_gp": delta,
                    "model_s": model_s,
                    "side_by_side_pairs": pairs,
                    "side_by_side_model_s": paired_s,
                    "target_regret": "met" if regret_ok else "NOT met",
                    "target_model_time": time_ok,
                    "complete": len(rows) == len(FUNCTIONS),
                }
            )
    return {"cells": cells, "comparisons": comparisons, "suite": suite}


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _secs(value: float | None) -> str:
    return _fmt(value, ".0f" if value is not None and value >= 100 else ".1f")


def markdown(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    for acq in ACQUISITIONS:
        for noise in NOISE_VARIANTS:
            rows = [c for c in summary["comparisons"] if c["acq"] == acq and c["noise"] == noise]
            if not rows:
                continue
            lines += [
                f"**{ACQ_LABELS[acq]}, {noise}**: mean log10 simple regret at equal evaluations "
                "over the seeds all methods share (lower is better); model seconds summed "
                "over those runs",
                "",
                "| function | seeds | iterations | evaluations | TNPKRModel | SingleTaskGP | "
                "Sobol | TNP-KR - GP | TNP-KR model s | GP model s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for c in rows:
                r = c["mean_log10_regret"]
                delta = r["tnpkr"] - r["gp"] if {"tnpkr", "gp"} <= set(r) else None
                lines.append(
                    f"| {c['function']} | {c['seeds']} | {c['iterations']} | "
                    f"{c['evaluations'] or '-'} | {_fmt(r.get('tnpkr'))} | {_fmt(r.get('gp'))} | "
                    f"{_fmt(r.get('sobol'))} | {_fmt(delta, '+.2f')} | "
                    f"{_secs(c['model_s'].get('tnpkr'))} | {_secs(c['model_s'].get('gp'))} |"
                )
            for s in summary["suite"]:
                if s["acq"] != acq or s["noise"] != noise:
                    continue
                m = s["mean_log10_regret"]
                lines.append(
                    f"| **mean over {len(s['functions'])} functions** | | | | "
                    f"**{_fmt(m.get('tnpkr'))}** | **{_fmt(m.get('gp'))}** | "
                    f"**{_fmt(m.get('sobol'))}** | **{_fmt(s['delta_tnpkr_minus_gp'], '+.2f')}** | "
                    f"**{_secs(s['model_s']['tnpkr'])}** | **{_secs(s['model_s']['gp'])}** |"
                )
                lines += [
                    "",
                    f"Target (TNP-KR - GP <= +{TARGET_MARGIN}): {s['target_regret']}; "
                    f"less total model time than the GP: {s['target_model_time']}"
                    + (
                        f" (over the {s['side_by_side_pairs']} (function, seed) pairs run side "
                        f"by side: TNP-KR {_secs(s['side_by_side_model_s']['tnpkr'])} s, GP "
                        f"{_secs(s['side_by_side_model_s']['gp'])} s)"
                        if s["side_by_side_pairs"]
                        else ""
                    )
                    + ("" if s["complete"] else " (partial suite)"),
                ]
            lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], acq: str, noise: str, path: Path) -> bool:
    """Median and quartiles of the simple regret against evaluations, one panel per function."""
    cells = [c for c in summary["cells"] if c["acq"] == acq and c["noise"] == noise]
    if not cells:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = [f for f in FUNCTIONS if any(c["function"] == f for c in cells)]
    cols = min(4, len(functions))
    rows = math.ceil(len(functions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    colors = {"tnpkr": "C0", "gp": "C1", "sobol": "C7"}
    for ax, function in zip(axes.flat, functions, strict=False):
        for method in METHODS:
            cell = next(
                (c for c in cells if c["function"] == function and c["method"] == method), None
            )
            if cell is None:
                continue
            x = cell["evaluations"]
            median = [10**v for v in cell["log10_regret_median"]]
            low = [10**v for v in cell["log10_regret_q25"]]
            high = [10**v for v in cell["log10_regret_q75"]]
            label = f"{LABELS[method]} ({len(cell['seeds'])})"
            ax.plot(x, median, color=colors[method], label=label)
            ax.fill_between(x, low, high, color=colors[method], alpha=0.2, linewidth=0)
        ax.set(yscale="log", title=function, xlabel="evaluations")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(functions) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("simple regret")
    fig.suptitle(
        f"{ACQ_LABELS[acq]}, {noise}\nmedian and quartiles over seeds (seeds in brackets)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(args: argparse.Namespace) -> dict[str, Any]:
    sha = None if args.all_checkpoints else (args.checkpoint_sha or checkpoint_sha(args.checkpoint))
    records = load_records(args.results)
    calibrated = None if args.all_checkpoints else not args.no_calibration
    adapted = None if args.all_checkpoints else not args.no_adaptation
    selected = select_records(records, sha, calibrated, adapted)
    summary = aggregate(selected)
    summary.update(
        benchmark="bo_regret",
        results_file=str(args.results),
        records=len(records),
        runs_used=len(selected),
        checkpoint=args.checkpoint,
        checkpoint_sha256=sha,
        calibrated=calibrated,
        adapted=adapted,
        machines=sorted(
            {json.dumps(r.get("machine", {}), sort_keys=True) for r in selected}, key=len
        ),
    )
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = args.results.stem
    plots = []
    for acq in ACQUISITIONS:
        for noise in NOISE_VARIANTS:
            path = out / f"{stem}_{acq}_{noise}.png"
            if plot(summary, acq, noise, path):
                plots.append(str(path))
    summary["plots"] = plots
    (out / f"{stem}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary)
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    return summary


def _matches(identity: str, label: str) -> bool:
    """Whether a run's ``tnpkr_identity`` is the one a ``--compare`` label names: a sha256
    prefix, with ``+cal`` (version 1) or ``+cal<version>`` for calibrated runs."""
    sha, _, version = identity.partition("+")
    label_sha, _, label_version = label.partition("+")
    return version == label_version and sha.startswith(label_sha)


def compare_checkpoints(records: list[dict[str, Any]], shas: Sequence[str]) -> str:
    """TNP-KR checkpoints side by side on the runs they all have (and the GP's on those seeds).

    For every (acquisition, noise) variant, the (function, seed) runs that every checkpoint
    in ``shas`` (sha256 prefixes) finished are paired: a table of mean final log10 regret per
    function, the suite mean, and each checkpoint's mean paired difference to the first one
    with its standard error over the pairs. Every run of a pair is cut to the pair's shortest
    iteration count (equal evaluations); the longest record of each run is used.
    """
    curves: dict[tuple, dict[str, list[float]]] = defaultdict(dict)
    for record in select_records(records, None):
        if record["method"] == "gp":
            label = "gp"
        elif record["method"] == "tnpkr":
            ident = tnpkr_identity(record)
            label = next((s for s in shas if _matches(ident, s)), None)
            if label is None:
                continue
        else:
            continue
        key = (record["acq"], record["noise"], record["function"], record["seed"])
        curves[key][label] = record["regret"]
    finals = {
        key: {label: log10_regret(c[min(map(len, runs.values())) - 1]) for label, c in runs.items()}
        for key, runs in curves.items()
    }
    lines: list[str] = []
    for acq in ACQUISITIONS:
        for noise in NOISE_VARIANTS:
            pairs = {
                k: v for k, v in finals.items() if k[:2] == (acq, noise) and set(shas) <= set(v)
            }
            if not pairs:
                continue
            functions = [f for f in FUNCTIONS if any(k[2] == f for k in pairs)]
            with_gp = all("gp" in v for v in pairs.values())
            head = list(shas) + (["SingleTaskGP"] if with_gp else [])
            lines += [
                f"**{ACQ_LABELS[acq]}, {noise}**: mean final log10 simple regret over the "
                f"(function, seed) runs every checkpoint finished ({len(pairs)} pairs)",
                "",
                "| function | seeds | " + " | ".join(head) + " |",
                "|---|---:|" + "---:|" * len(head),
            ]
            means: dict[str, list[float]] = defaultdict(list)
            for function in functions:
                runs = [v for k, v in pairs.items() if k[2] == function]
                row = []
                for label in head:
                    key = "gp" if label == "SingleTaskGP" else label
                    mean = statistics.fmean(r[key] for r in runs)
                    means[label].append(mean)
                    row.append(f"{mean:.2f}")
                lines.append(f"| {function} | {len(runs)} | " + " | ".join(row) + " |")
            suite = " | ".join(f"**{statistics.fmean(means[label]):.2f}**" for label in head)
            lines.append(f"| **mean over {len(functions)} functions** | | {suite} |")
            lines.append("")
            for sha in shas[1:]:
                diffs = [v[sha] - v[shas[0]] for v in pairs.values()]
                se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
                better = sum(d < 0 for d in diffs) / len(diffs)
                lines.append(
                    f"- {sha} - {shas[0]}: {statistics.fmean(diffs):+.3f} +- {se:.3f} "
                    f"(standard error over {len(diffs)} pairs); lower in {better:.0%} of them"
                )
            lines.append("")
    return "\n".join(lines) if lines else "no (function, seed) runs shared by all checkpoints"


# ----------------------------------------------------------------------------- CLI
def _seeds(text: str) -> list[int]:
    """``0-9`` or ``0,3,5`` or ``0-4,7``."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return seeds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", nargs="+", choices=list(FUNCTIONS), default=None)
    parser.add_argument("--seeds", type=_seeds, default=None, help="e.g. 0-9 (default)")
    parser.add_argument("--iterations", type=int, default=None, help="default 50")
    parser.add_argument("--acq", nargs="+", choices=list(ACQUISITIONS), default=None)
    parser.add_argument("--noise", nargs="+", choices=NOISE_VARIANTS, default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--num-restarts", type=int, default=None, help="default 4")
    parser.add_argument("--raw-samples", type=int, default=None, help="default 128")
    parser.add_argument("--checkpoint", default="auto")
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--results", type=Path, default=None, help="the JSONL of runs")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="summary, table, plots")
    parser.add_argument("--report", action="store_true", help="aggregate, plot, print; no runs")
    parser.add_argument(
        "--all-checkpoints",
        action="store_true",
        help="report TNP-KR runs of every checkpoint file, not only the current one",
    )
    parser.add_argument(
        "--checkpoint-sha",
        default=None,
        help="report TNP-KR runs of the checkpoint file with this sha256 (a prefix will do)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="SHA",
        help="compare the TNP-KR runs of these checkpoint files (sha256 prefixes; add +cal2 "
        "for runs with the current calibration, +cal for session 18's, then +adapt3 for runs "
        "with the current distance adaptation) on the runs they all finished; no runs",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="TNPKRModel(calibrate=False): run, or report, the network's variances as they are",
    )
    parser.add_argument(
        "--no-adaptation",
        action="store_true",
        help="TNPKRModel(adapt=False): run, or report, the network's distances as they are "
        "(all runs before session 24)",
    )
    parser.add_argument("--smoke", action="store_true", help="Branin, 1 seed, 2 iterations")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "functions": ["branin"] if smoke else list(FUNCTIONS),
        "seeds": [0] if smoke else list(range(10)),
        "iterations": 2 if smoke else 50,
        "acq": ["logei"] if smoke else list(ACQUISITIONS),
        "noise": ["noiseless"] if smoke else list(NOISE_VARIANTS),
        "num_restarts": 2 if smoke else 4,
        "raw_samples": 16 if smoke else 128,
        "results": (args.out_dir / "bo_regret_smoke.jsonl") if smoke else DEFAULT_JSONL,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.compare:
        table = compare_checkpoints(load_records(args.results), args.compare)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / f"{args.results.stem}_compare.md").write_text(table + "\n")
        print(table)
        return {"compare": args.compare, "table": table}
    if not args.report:
        run_suite(args)
    return report(args)


if __name__ == "__main__":
    main()
