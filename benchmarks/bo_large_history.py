"""BO continuing from a large history: seconds per step and regret progress against n.

For each function (Hartmann-6, Ackley-4) and history size n (1,000, 10,000, 100,000), the
history is the first n points of a scrambled Sobol sequence with their noiseless values;
then ``--steps`` (8) BO steps of q=1 LogEI (``optimize_acqf`` with 4 restarts and 128 raw
samples) with TNPKRModel (``checkpoint="auto"``: exact attention up to 4,096 points, scan
mode above 1,024, the linear-attention network above), with SingleTaskGP where its O(n^3)
fit is feasible (``--gp-max-n``, 1,000), and with Sobol (the next points of the sequence:
what the history alone would give). Each step is timed (model build, acquisition) and the
simple regret is recorded after each step. Uses ``benchmarks/_bo.py`` (the BO-suite code).

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bo_large_history.py   # full
    python benchmarks/bo_large_history.py --smoke --out-dir /tmp/large   # seconds

Writes ``bo_large_history[_smoke].json``, ``.md`` and ``.png`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._bo import FUNCTIONS, LABELS, Problem, StepOptions, run_bo  # noqa: E402
from benchmarks._measure import machine_facts  # noqa: E402

GP_INFEASIBLE = (
    "SingleTaskGP not run above n = {gp_max_n:,}: one BO step at n = 2,000 exceeded 600 s on "
    "this machine (benchmarks/results/bo_step_scaling_cpu.json); its fit is O(n^3) in time, "
    "O(n^2) in memory"
)


def run_one(
    problem: Problem, method: str, n: int, steps: int, options: StepOptions, seed: int
) -> dict[str, Any]:
    """One continued run; the record without the per-point values (n can be 100,000)."""

    def progress(it: int, regret: float, timing) -> None:
        print(
            f"  {problem.name} n={n} {method}: step {it + 1}/{steps} regret {regret:.4g} "
            f"build {timing.build_s:.2f} s acq {timing.acq_s:.2f} s",
            file=sys.stderr,
            flush=True,
        )

    record = run_bo(problem, method, "logei", seed, steps, options, n_init=n, on_iteration=progress)
    for key in ("values", "observed"):
        record.pop(key)
    record["n"] = n
    record["status"] = "ok"
    step_s = [b + a for b, a in zip(record["build_s"], record["acq_s"], strict=True)]
    record["step_s"] = step_s
    record["median_step_s"] = statistics.median(step_s) if step_s else 0.0
    return record


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    options = StepOptions(
        num_restarts=args.num_restarts,
        raw_samples=args.raw_samples,
        checkpoint=args.checkpoint,
        linear_above=args.linear_above,
    )
    records = []
    for function in args.functions:
        problem = Problem(function)
        for n in args.sizes:
            for method in args.methods:
                base = {"function": function, "n": n, "method": method, "dim": problem.dim}
                if method == "gp" and n > args.gp_max_n:
                    note = GP_INFEASIBLE.format(gp_max_n=args.gp_max_n)
                    records.append({**base, "status": "infeasible", "note": note})
                    continue
                record = run_one(problem, method, n, args.steps, options, args.seed)
                records.append(record)
                print(_line(record), file=sys.stderr, flush=True)
    return records


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['function']:10s} n={r['n']:>7} {LABELS[r['method']]:>12}: "
        f"median step {r['median_step_s']:7.2f} s  regret {r['regret'][0]:.4g} -> "
        f"{r['regret'][-1]:.4g}  ({r.get('checkpoint', '')} {r.get('attention', '')})"
    )


def markdown(records: list[dict[str, Any]]) -> str:
    lines = [
        "| function | n | method | network | s per step (median) | build s | acquisition s "
        "| regret at start | after the steps |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        head = f"| {r['function']} | {r['n']:,} | {LABELS[r['method']]} |"
        if r["status"] != "ok":
            lines.append(f"{head} - | {r['status']} | | | | |")
            continue
        steps = len(r["step_s"])
        network = f"{r.get('checkpoint', '-')} ({r.get('attention', '-')})"
        if r["method"] != "tnpkr":
            network = "-"
        timing = (
            f"{r['median_step_s']:.2f} | {statistics.median(r['build_s']):.2f} | "
            f"{statistics.median(r['acq_s']):.2f}"
            if r["method"] != "sobol"
            else "0 | 0 | 0"
        )
        lines.append(
            f"{head} {network} | {timing} | {r['regret'][0]:.4g} | "
            f"{r['regret'][-1]:.4g} ({steps} steps) |"
        )
    notes = sorted({r["note"] for r in records if r["status"] == "infeasible"})
    return "\n".join(lines + [""] + [f"Infeasible: {note}." for note in notes])


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Seconds per step against n (left); regret after each step, per function and n (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok"]
    functions = list(dict.fromkeys(r["function"] for r in ok))
    fig, axes = plt.subplots(1, 1 + len(functions), figsize=(4.2 * (1 + len(functions)), 3.6))
    colors = {"tnpkr": "C0", "gp": "C1", "sobol": "C7"}
    for i, function in enumerate(functions):
        for method in ("tnpkr", "gp"):
            rows = [r for r in ok if r["function"] == function and r["method"] == method]
            if rows:
                axes[0].plot(
                    [r["n"] for r in rows],
                    [r["median_step_s"] for r in rows],
                    marker="os"[i % 2],
                    color=colors[method],
                    label=f"{LABELS[method]}, {function}",
                )
        ax = axes[1 + i]
        sizes = sorted({r["n"] for r in ok})
        styles = dict(zip(sizes, ["-", "--", ":", "-."] * 3, strict=False))
        for r in (r for r in ok if r["function"] == function):
            ax.plot(
                range(len(r["regret"])),
                r["regret"],
                linestyle=styles[r["n"]],
                color=colors[r["method"]],
                linewidth=3.0 if r["method"] == "sobol" else 1.5,
                alpha=0.5 if r["method"] == "sobol" else 1.0,
                zorder=1 if r["method"] == "sobol" else 2,
                label=f"{LABELS[r['method']]}, n={r['n']:,}",
            )
        ax.set(yscale="log", xlabel="BO steps after the history", ylabel="simple regret")
        ax.set_title(function)
        ax.legend(fontsize=6)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set(xscale="log", yscale="log", xlabel="history size n", ylabel="s per BO step")
    axes[0].legend(fontsize=7)
    axes[0].grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", nargs="+", choices=list(FUNCTIONS), default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    parser.add_argument("--methods", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--steps", type=int, default=None, help="BO steps (default 8)")
    parser.add_argument("--gp-max-n", type=int, default=None, help="default 1000")
    parser.add_argument("--checkpoint", default="auto")
    parser.add_argument("--linear-above", type=int, default=None, help="TNPKRModel's switch")
    parser.add_argument("--num-restarts", type=int, default=None, help="default 4")
    parser.add_argument("--raw-samples", type=int, default=None, help="default 128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and budgets")
    parser.add_argument(
        "--report-only", action="store_true", help="redraw table and plot from the JSON"
    )
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "functions": ["hartmann6"] if smoke else ["hartmann6", "ackley4"],
        "sizes": [40, 120] if smoke else [1_000, 10_000, 100_000],
        "steps": 2 if smoke else 8,
        "gp_max_n": 40 if smoke else 1_000,
        "linear_above": 64 if smoke else None,  # smoke: both networks on tiny histories
        "num_restarts": 2 if smoke else 4,
        "raw_samples": 16 if smoke else 128,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    stem = "bo_large_history" + ("_smoke" if args.smoke else "")
    if args.report_only:
        report = json.loads((args.out_dir / f"{stem}.json").read_text())
        return _write(report, args.out_dir, stem, rewrite_json=False)
    started = time.time()
    records = run_grid(args)
    report = {
        "benchmark": "bo_large_history",
        **machine_facts(torch.device("cpu")),
        "smoke": args.smoke,
        "acq": "logei",
        "steps": args.steps,
        "num_restarts": args.num_restarts,
        "raw_samples": args.raw_samples,
        "checkpoint": args.checkpoint,
        "linear_above": args.linear_above,
        "gp_max_n": args.gp_max_n,
        "wall_s": time.time() - started,
        "results": records,
    }
    return _write(report, args.out_dir, stem, rewrite_json=True)


def _write(report: dict[str, Any], out_dir: Path, stem: str, rewrite_json: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if rewrite_json:
        (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report["results"])
    (out_dir / f"{stem}.md").write_text(table + "\n")
    plot(report["results"], out_dir / f"{stem}.png")
    print(table)
    return report


if __name__ == "__main__":
    main()
