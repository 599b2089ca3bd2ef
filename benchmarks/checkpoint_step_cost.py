"""Cost of one BO step with several networks, side by side: is a better network worth its time?

For each history size in ``--sizes``, runs ``bo_step_scaling.run_step`` (build ``TNPKRModel``,
which encodes the history, then ``optimize_acqf`` of LogEI, q=1) once per checkpoint and
repeat, the checkpoints alternating within each repeat, after one untimed warm-up step each.
Reports the median seconds per checkpoint and their ratio to the first checkpoint's.
``--calibration both`` runs every checkpoint without and with ``TNPKRModel``'s variance
calibration (in that order, so the ratio is the cost of calibrating); ``--adaptation both``
likewise for its distance adaptation.

Usage:
    python benchmarks/checkpoint_step_cost.py --sizes 5000 20000 \\
        --checkpoints tnpkr-dka runs/dka-deep/best.safetensors
    python benchmarks/checkpoint_step_cost.py --quick --out /tmp/cost.json
    python benchmarks/checkpoint_step_cost.py --checkpoints tnpkr-exact --calibration both \
        --sizes 100 500 1000 4000 --out benchmarks/results/calibration_step_cost.json
    python benchmarks/checkpoint_step_cost.py --checkpoints tnpkr-exact --adaptation both \
        --sizes 100 1000 4000 --out benchmarks/results/adaptation_step_cost.json

Writes the records as JSON to ``--out`` (default ``benchmarks/results/checkpoint_step_cost.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from benchmarks.bo_step_scaling import run_step, warm_up  # noqa: E402


def compare(
    checkpoints: Sequence[str],
    sizes: Sequence[int],
    repeats: int,
    dim: int,
    num_restarts: int,
    raw_samples: int,
    calibration: Sequence[bool] = (True,),
    adaptation: Sequence[bool] = (True,),
) -> list[dict[str, Any]]:
    """One record per (size, checkpoint, calibration and adaptation setting): median total
    seconds and the ratio to the first."""
    device = torch.device("cpu")
    for checkpoint in checkpoints:
        warm_up("tnpkr", dim, checkpoint, device)
    variants = [(c, cal, ad) for c in checkpoints for cal in calibration for ad in adaptation]
    records = []
    for n in sizes:
        times: dict[tuple[str, bool, bool], list[float]] = {v: [] for v in variants}
        for repeat in range(repeats):
            for checkpoint, cal, ad in variants:
                step = run_step(
                    "tnpkr",
                    n,
                    dim,
                    checkpoint,
                    num_restarts,
                    raw_samples,
                    device,
                    repeat,
                    cal,
                    ad,
                )
                times[(checkpoint, cal, ad)].append(step["total_s"])
        first = statistics.median(times[variants[0]])
        for checkpoint, cal, ad in variants:
            median = statistics.median(times[(checkpoint, cal, ad)])
            records.append(
                {
                    "n": n,
                    "checkpoint": checkpoint,
                    "calibrate": cal,
                    "adapt": ad,
                    "median_s": median,
                    "ratio": median / first,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", default=["tnpkr-dka", "tnpkr-exact"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=6)
    parser.add_argument("--num-restarts", type=int, default=8)
    parser.add_argument("--raw-samples", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="n = 64, 2 repeats, small budgets")
    parser.add_argument(
        "--calibration",
        choices=["on", "off", "both"],
        default="on",
        help="TNPKRModel's variance calibration; both: off, then on, for every checkpoint",
    )
    parser.add_argument(
        "--adaptation",
        choices=["on", "off", "both"],
        default="on",
        help="TNPKRModel's distance adaptation; both: off, then on, for every checkpoint",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "checkpoint_step_cost.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.num_restarts, args.raw_samples = [64], 2, 1, 8
    torch.set_num_threads(1)
    settings = {"on": (True,), "off": (False,), "both": (False, True)}
    calibration, adaptation = settings[args.calibration], settings[args.adaptation]
    records = compare(
        args.checkpoints,
        args.sizes,
        args.repeats,
        args.dim,
        args.num_restarts,
        args.raw_samples,
        calibration,
        adaptation,
    )
    report = {
        "machine": machine_facts(torch.device("cpu")),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
