"""What variance calibration on the context (``nn.calibration``) does to the gap to the oracle.

For every (kernel, d, n) cell of the evaluation prior (``botorch_tnpkr.evaluate``) it scores
the network's predictive of the noisy targets three ways on the same tasks:

* ``off``: the network's variances as they are (``TNPKRModel(calibrate=False)``);
* ``on``: calibrated as the default model calibrates (``Calibration()``: 16 folds below 128
  points, ``--folds`` (4) up to 512, 128 held-out points predicted from all the others
  above), but at every size from 16 points, so that small contexts show why the default
  skips those under 32 (``--small-folds 4`` shows why 4 folds are not used below 128);
* ``subset``: the same, but above 512 points with the folds of a random 512-point subset
  (``Calibration(holdout=None)``, the default before session 19); equal to ``on`` below;
* ``bound``: every task's variances times the factor that maximises the likelihood of its
  own targets (``mean((y - mean)^2 / var)``): what a perfect per-context factor would give.

``--layout bo`` draws BO-shaped contexts instead (a pilot design, then points clustered around
its best value; half the targets near the cluster, half uniform) and also reports the gap on
each half, since calibration measures errors where the context is, not where it is not.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/variance_calibration.py            # ~15 min
    python benchmarks/variance_calibration.py --layout bo --sizes 32 128 512
    python benchmarks/variance_calibration.py --sizes 2048 --tasks 4 --name beyond  # ~45 min
    python benchmarks/variance_calibration.py --smoke --out-dir /tmp/vc

Writes ``variance_calibration_<layout>[_<name>][_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.evaluate import (  # noqa: E402
    EVAL_SEED,
    cell_tasks,
    evaluation_prior,
    network_predictive,
    oracle_logpdf,
)
from botorch_tnpkr.nn import Calibration  # noqa: E402
from botorch_tnpkr.priors import gaussian_logpdf, sample_tasks  # noqa: E402
from botorch_tnpkr.priors.sampler import TaskBatch  # noqa: E402

SETTINGS = ("off", "on", "subset", "bound")


def tasks(kernel: str, d: int, n: int, count: int, layout: str, max_dim: int) -> TaskBatch:
    prior = evaluation_prior(max_dim, kernel)
    if layout == "uniform":
        return cell_tasks(prior, kernel, d, n, count, 64, EVAL_SEED)
    gen = torch.Generator().manual_seed(EVAL_SEED + zlib.crc32(f"{kernel}-{d}-{n}".encode()))
    return sample_tasks(
        prior, count, gen, dim=d, num_context=n, bo_shaped=True, num_targets=64,
        dtype=torch.float64,
    )  # fmt: skip


def score_cell(network, batch: TaskBatch, calibration: Calibration) -> dict[str, Any]:
    """Gaps (all targets; for BO-shaped tasks also the near and far halves) per setting."""
    oracle = oracle_logpdf(batch)
    mean, var = network_predictive(network, batch, calibration=None)
    _, var_on = network_predictive(network, batch, calibration=calibration)
    var_subset = var_on
    if batch.xc.shape[1] > calibration.max_points:
        subset = replace(calibration, holdout=None)
        _, var_subset = network_predictive(network, batch, calibration=subset)
    best = ((batch.yt - mean) ** 2 / var).mean(-1, keepdim=True)
    half = batch.yt.shape[-1] // 2
    row: dict[str, Any] = {}
    for name, v in zip(SETTINGS, (var, var_on, var_subset, var * best), strict=True):
        gap = oracle - gaussian_logpdf(batch.yt, mean, v)
        row[name] = float(gap.mean())
        if batch.bo_shaped:
            row[f"{name}_near"] = float(gap[:, :half].mean())
            row[f"{name}_far"] = float(gap[:, half:].mean())
    row["factor_geomean"] = float((var_on / var)[:, 0].log().mean().exp())
    return row


def summary(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    keys = [k for k in rows[0] if k.split("_")[0] in SETTINGS]
    out = {}
    for n in sorted({r["n"] for r in rows}):
        sel = [r for r in rows if r["n"] == n]
        out[n] = {k: statistics.fmean(r[k] for r in sel) for k in keys}
        out[n]["share_better"] = sum(r["on"] < r["off"] for r in sel) / len(sel)
        out[n]["cells"] = len(sel)
    return out


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    keys = [k for k in next(iter(s.values())) if k not in ("share_better", "cells")]
    args = results["args"]
    lines = [
        f"**{results['checkpoint']}**, {results['layout']} contexts, {args['tasks']}"
        f" tasks per cell, {args['small_folds']} / {args['folds']} folds below / from 128"
        " points; mean gap to the oracle (nats per target point, lower is better)",
        "",
        "| n | " + " | ".join(keys) + " | cells better with it |",
        "|---:|" + "---:|" * (len(keys) + 1),
    ]
    for n, v in s.items():
        cells = " | ".join(f"{v[k]:.3f}" for k in keys)
        lines.append(f"| {n} | {cells} | {v['share_better']:.0%} of {v['cells']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tnpkr-exact")
    parser.add_argument("--layout", choices=["uniform", "bo"], default="uniform")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 512])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--kernels", nargs="+", default=["rbf", "matern52", "matern32"])
    parser.add_argument("--tasks", type=int, default=8, help="tasks per cell")
    parser.add_argument("--folds", type=int, default=Calibration().folds)
    parser.add_argument("--small-folds", type=int, default=Calibration().small_folds)
    parser.add_argument("--name", default="", help="suffix of the results files' names")
    parser.add_argument("--smoke", action="store_true", help="two small cells")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.dims, args.kernels, args.tasks = [24], [1, 2], ["rbf"], 2
    torch.set_num_threads(1)
    network = load_checkpoint(args.checkpoint).double().eval()
    # Every size is calibrated here (min_context at its floor), to show where it pays.
    calibration = Calibration(
        folds=args.folds, small_folds=args.small_folds, min_context=args.small_folds
    )
    rows = []
    for n in args.sizes:
        for kernel in args.kernels:
            for d in args.dims:
                batch = tasks(kernel, d, n, args.tasks, args.layout, network.config.max_dim)
                row = {"kernel": kernel, "d": d, "n": n, **score_cell(network, batch, calibration)}
                rows.append(row)
                print(
                    f"{kernel} d={d} n={n}: off {row['off']:.3f} on {row['on']:.3f} "
                    f"subset {row['subset']:.3f} bound {row['bound']:.3f}",
                    flush=True,
                )
    results = {
        "checkpoint": args.checkpoint,
        "layout": args.layout,
        "machine": machine_facts(torch.device("cpu")),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
        "summary": summary(rows),
    }
    table = markdown(results)
    print(table)
    stem = "_".join(
        ["variance_calibration", args.layout]
        + [args.name] * bool(args.name)
        + ["smoke"] * args.smoke
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
