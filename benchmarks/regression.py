"""Regression against the oracle GP: every shipped checkpoint and SingleTaskGP, by kernel, d, n.

Runs the evaluation command (``python -m botorch_tnpkr.evaluate``) once per checkpoint, with
its defaults in full mode (16 tasks per cell, 64 targets, kernels RBF / Matern-5/2 /
Matern-3/2, d 1, 2, 3, 6, n 8, 32, 128, 512, plus the extrapolation check). The fitted
SingleTaskGP is scored in the first checkpoint's run only: the tasks of a cell depend only on
the seed, kernel, d and n, so every checkpoint and the GP see the same tasks.

Scores are mean log-likelihoods per noisy target point; the gap is the oracle's minus the
model's (nats per point, lower is better); coverage is the share of targets inside the
network's central 50% and 90% predictive intervals.

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/regression.py     # full (~15 min, 2 cores)
    python benchmarks/regression.py --smoke --out-dir /tmp/reg         # seconds

Writes ``regression[_smoke].json`` (per checkpoint: the evaluation command's full report),
``regression[_smoke].md`` (one table: gaps and coverage by kernel, d and n) and
``regression[_smoke].png`` (gap against n per kernel, coverage against n) to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr import evaluate  # noqa: E402
from botorch_tnpkr.checkpoints import available_checkpoints, checkpoint_info  # noqa: E402

SMOKE_ARGS = [
    "--kernels",
    "rbf",
    "--dims",
    "1,2",
    "--sizes",
    "8,32",
    "--tasks",
    "1",
    "--targets",
    "16",
    "--no-extrapolation",
]


def run_checkpoint(checkpoint: str, with_gp: bool, extra: list[str]) -> dict[str, Any]:
    """The evaluation command's report for one checkpoint (its JSON file, read back)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval"
        argv = ["--checkpoint", checkpoint, "--out", str(out), *extra]
        if not with_gp:
            argv.append("--no-gp")
        start = time.perf_counter()
        code = evaluate.main(argv)
        if code != 0:
            raise RuntimeError(f"evaluate {argv} exited with {code}")
        report = json.loads(out.with_suffix(".json").read_text())
    report["wall_s"] = time.perf_counter() - start
    if checkpoint in available_checkpoints():
        info = checkpoint_info(checkpoint)
        report["step"] = info.get("step")
        report["sha256"] = info.get("sha256")
    return report


def reuse_gp(report: dict[str, Any], earlier: dict[str, Any], extra: list[str]) -> None:
    """Copy SingleTaskGP's scores from an earlier run on the same tasks into ``report``.

    The GP's scores do not depend on the checkpoint; the tasks of a cell depend only on the
    evaluation arguments, so these must match, and every cell's oracle score is checked.

    Raises:
        ValueError: Different evaluation arguments, cells or tasks, or no GP scores.
    """
    if earlier.get("evaluate_args") != extra:
        raise ValueError(
            f"--gp-from was run with {earlier.get('evaluate_args')}, this run uses {extra}."
        )
    donor = next(
        (r for r in earlier["checkpoints"].values() if r["cells"][0].get("gp_ll") is not None),
        None,
    )
    if donor is None:
        raise ValueError("--gp-from holds no SingleTaskGP scores.")
    scores = {cell_key(c): c for c in donor["cells"]}
    cells = []
    for cell in report["cells"]:
        old = scores.get(cell_key(cell))
        if old is None or not evaluate.same_tasks(old["oracle_ll"], cell["oracle_ll"]):
            raise ValueError(f"--gp-from has other tasks in cell {cell_key(cell)}.")
        cell["gp_ll"], cell["gp_gap"] = old["gp_ll"], old["gp_gap"]
        fields = {f: cell[f] for f in evaluate.CellResult.__dataclass_fields__}
        cells.append(evaluate.CellResult(**fields))
    report["summary"] = evaluate.summarise(cells)
    report["gp_from"] = "earlier run (same tasks)"


def cell_key(cell: dict[str, Any]) -> tuple[str, int, int]:
    return cell["kernel"], cell["dim"], cell["n"]


def markdown(reports: dict[str, dict[str, Any]]) -> str:
    """One row per (kernel, d, n): oracle log-likelihood, every gap, every coverage."""
    names = list(reports)
    gp_from = next((n for n in names if reports[n]["summary"].get("gp_mean_gap") is not None), None)
    head = ["kernel", "d", "n", "oracle LL"]
    head += [f"{n} gap" for n in names] + (["SingleTaskGP gap"] if gp_from else [])
    head += [f"{n} cov50 / cov90" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:" + "|---:" * (len(head) - 3) + "|"]
    cells = {n: {cell_key(c): c for c in reports[n]["cells"]} for n in names}
    for key in cells[names[0]]:
        first = cells[names[0]][key]
        row = [key[0], str(key[1]), str(key[2]), f"{first['oracle_ll']:.3f}"]
        row += [f"{cells[n][key]['gap']:.3f}" if key in cells[n] else "-" for n in names]
        if gp_from:
            row.append(f"{cells[gp_from][key]['gp_gap']:.3f}")
        row += [
            f"{cells[n][key]['cover50']:.2f} / {cells[n][key]['cover90']:.2f}"
            if key in cells[n]
            else "-"
            for n in names
        ]
        lines.append("| " + " | ".join(row) + " |")
    mean = ["**mean**", "", "", ""]
    mean += [f"**{reports[n]['summary']['mean_gap']:.3f}**" for n in names]
    if gp_from:
        mean.append(f"**{reports[gp_from]['summary']['gp_mean_gap']:.3f}**")
    mean += [
        f"**{reports[n]['summary']['cover50']:.2f} / {reports[n]['summary']['cover90']:.2f}**"
        for n in names
    ]
    lines.append("| " + " | ".join(mean) + " |")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_table(reports: dict[str, dict[str, Any]]) -> str:
    """One row per checkpoint: mean gap, the GP's, share of cells >= GP, coverage, 4x context."""
    lines = [
        "| model | training step | mean gap | cells >= SingleTaskGP | cov50 | cov90 | "
        "gap at trained context | at 4x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gp_gap = None
    for name, report in reports.items():
        s = report["summary"]
        gp_gap = s.get("gp_mean_gap", gp_gap)
        share = s.get("share_at_least_gp")
        ex = report.get("extrapolation") or {}
        lines.append(
            f"| {name} | {report.get('step') or '-'} | {s['mean_gap']:.3f} | "
            f"{'-' if share is None else f'{share:.0%}'} | {s['cover50']:.2f} | "
            f"{s['cover90']:.2f} | {_num(ex.get('gap_at_trained'))} | "
            f"{_num(ex.get('gap_at_4x'))} |"
        )
    if gp_gap is not None:
        lines.append(f"| SingleTaskGP (fitted by MLL) | - | {gp_gap:.3f} | - | - | - | - | - |")
    return "\n".join(lines)


def by_kernel_and_n(reports: dict[str, dict[str, Any]]) -> str:
    """Gaps and coverage averaged over d: one row per (kernel, n)."""
    names = list(reports)
    first = reports[names[0]]["cells"]
    has_gp = first[0].get("gp_gap") is not None
    head = ["kernel", "n"] + [f"{n} gap" for n in names] + (["SingleTaskGP gap"] if has_gp else [])
    head += [f"{n} cov50 / cov90" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|---|---:" + "|---:" * (len(head) - 2) + "|"]

    def mean(name: str, kernel: str, n: int, field: str) -> float:
        cells = reports[name]["cells"]
        return statistics.fmean(c[field] for c in cells if c["kernel"] == kernel and c["n"] == n)

    for kernel, n in dict.fromkeys((c["kernel"], c["n"]) for c in first):
        row = [kernel, str(n)] + [f"{mean(m, kernel, n, 'gap'):.3f}" for m in names]
        if has_gp:
            row.append(f"{mean(names[0], kernel, n, 'gp_gap'):.3f}")
        row += [
            f"{mean(m, kernel, n, 'cover50'):.2f} / {mean(m, kernel, n, 'cover90'):.2f}"
            for m in names
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(reports: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean gap (over d) against n, one panel per kernel; coverage against n in the last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(reports.values()))["cells"]
    kernels = list(dict.fromkeys(c["kernel"] for c in first))
    fig, axes = plt.subplots(1, len(kernels) + 1, figsize=(3.8 * (len(kernels) + 1), 3.4))

    def mean_by_n(cells: list[dict[str, Any]], field: str) -> tuple[list[int], list[float]]:
        ns = sorted({c["n"] for c in cells})
        return ns, [statistics.fmean(c[field] for c in cells if c["n"] == n) for n in ns]

    gp_drawn = False
    for i, (name, report) in enumerate(reports.items()):
        for ax, kernel in zip(axes, kernels, strict=False):
            cells = [c for c in report["cells"] if c["kernel"] == kernel]
            ax.plot(*mean_by_n(cells, "gap"), marker="o", color=f"C{i}", label=name)
            if not gp_drawn and cells and cells[0].get("gp_gap") is not None:
                ax.plot(*mean_by_n(cells, "gp_gap"), marker="s", color="k", label="SingleTaskGP")
        gp_drawn = gp_drawn or report["cells"][0].get("gp_gap") is not None
        ns, c90 = mean_by_n(report["cells"], "cover90")
        axes[-1].plot(ns, c90, marker="o", color=f"C{i}", label=f"{name} 90%")
        axes[-1].plot(*mean_by_n(report["cells"], "cover50"), marker="o", linestyle="--",
                      color=f"C{i}", label=f"{name} 50%")  # fmt: skip
    for ax, kernel in zip(axes, kernels, strict=False):
        ax.set(xscale="log", xlabel="context points n", title=kernel)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("gap to oracle (nats/point, mean over d)")
    for level in (0.5, 0.9):
        axes[-1].axhline(level, color="grey", linestyle=":", linewidth=0.8)
    axes[-1].set(xscale="log", xlabel="context points n", ylabel="coverage", title="coverage")
    axes[-1].grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        default=None,
        help="names or paths (default: every shipped checkpoint, tnpkr-exact first)",
    )
    parser.add_argument("--no-gp", action="store_true", help="skip SingleTaskGP")
    parser.add_argument(
        "--gp-from",
        type=Path,
        default=None,
        help="reuse SingleTaskGP's scores from an earlier regression JSON with the same "
        "evaluation arguments (checked task by task) instead of fitting the GPs again",
    )
    parser.add_argument("--smoke", action="store_true", help="1 task per cell on a subset")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="redraw the table and plot from the JSON of an earlier run in --out-dir",
    )
    parser.add_argument(
        "--evaluate-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="passed on to the evaluation command (after the smoke subset, if any)",
    )
    args = parser.parse_args(argv)
    if args.checkpoints is None:
        names = available_checkpoints()
        args.checkpoints = sorted(names, key=lambda n: n != "tnpkr-exact")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    stem = "regression" + ("_smoke" if args.smoke else "")
    if args.report_only:
        result = json.loads((args.out_dir / f"{stem}.json").read_text())
        reports = result["checkpoints"]
    else:
        extra = (SMOKE_ARGS if args.smoke else []) + list(args.evaluate_args)
        started = time.time()
        reports = {}
        score_gp = not args.no_gp and args.gp_from is None
        for i, checkpoint in enumerate(args.checkpoints):
            reports[checkpoint] = run_checkpoint(checkpoint, i == 0 and score_gp, extra)
        if args.gp_from is not None:
            reuse_gp(reports[args.checkpoints[0]], json.loads(args.gp_from.read_text()), extra)
        result = {
            "benchmark": "regression",
            **machine_facts(torch.device("cpu")),
            "smoke": args.smoke,
            "evaluate_args": extra,
            "wall_s": time.time() - started,
            "checkpoints": reports,
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = "\n\n".join([summary_table(reports), by_kernel_and_n(reports), markdown(reports)])
    text += "\n"
    (args.out_dir / f"{stem}.md").write_text(text)
    plot(reports, args.out_dir / f"{stem}.png")
    print(text)
    return result


if __name__ == "__main__":
    main()
