"""Where a network's gap to the oracle comes from: by noise level, lengthscale and context size.

Scores the evaluation command's tasks (``botorch_tnpkr.evaluate``: kernels RBF / Matern-5/2 /
Matern-3/2, d 1, 2, 3, 6, n 8, 32, 128, 512, its broader prior and seed, so the cells are the
model card's) task by task, and groups the tasks three times: by their noise-to-signal ratio
``sqrt(noise / outputscale)``; by their roughness, the shortest lengthscale divided by
``sqrt(d)`` (the training prior draws this task-wide scale from 0.07 to 1.0, the evaluation
prior from 0.05 to 1.5, so the first and last groups are partly outside training); and, for
d >= 2, by their anisotropy, the standard deviation of the log lengthscales over the
dimensions (the network's kernel bias sees one isotropic distance unless ``ard_bias``). Per group
and context size it reports the mean gap per noisy target (nats), the group's share of the
total gap, and how much wider the network's predictive variance is than the oracle's
(geometric mean of the ratio): a calibrated but imprecise network has a ratio far above 1
where the oracle is precise. It also scores each task with the true noise variance given to
the network (as ``TNPKRModel`` gives ``train_Yvar``): the difference is what inferring the
noise from the context costs, the rest is the precision of the network's mean and variance.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/gap_by_noise.py --checkpoints tnpkr-exact \\
        runs/exact-std/latest.safetensors      # ~1 min per checkpoint on one thread
    python benchmarks/gap_by_noise.py --smoke --out-dir /tmp/gbn

Writes ``gap_by_noise[_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.checkpoints.registry import resolve_checkpoint  # noqa: E402
from botorch_tnpkr.evaluate import (  # noqa: E402
    EVAL_SEED,
    cell_tasks,
    evaluation_prior,
    network_predictive,
    oracle_logpdf,
)
from botorch_tnpkr.nn import read_metadata  # noqa: E402
from botorch_tnpkr.priors import gaussian_logpdf  # noqa: E402

# Upper edges of the noise-to-signal groups (the evaluation prior draws 1e-3..0.3).
EDGES = (0.003, 0.01, 0.03, 0.1, math.inf)
# Upper edges of the roughness groups (shortest lengthscale / sqrt(d)).
LENGTH_EDGES = (0.07, 0.15, 0.4, 1.0, math.inf)
# Upper edges of the anisotropy groups (standard deviation of the log lengthscales over the
# task's d dimensions: 0 for d = 1; the evaluation prior's ARD spread is 0.5, and a dimension
# made irrelevant (lengthscale x 20) adds about 3 to its log).
ANISOTROPY_EDGES = (0.2, 0.4, 0.7, math.inf)
# What each task is grouped by: (record key, table heading, group edges).
GROUPINGS = (
    ("noise_ratio", "noise / signal", EDGES),
    ("roughness", "shortest lengthscale / sqrt(d)", LENGTH_EDGES),
    ("anisotropy", "sd of log lengthscales (d >= 2)", ANISOTROPY_EDGES),
)


def group_of(ratio: float, edges: Sequence[float] = EDGES) -> str:
    lower = 0.0
    for edge in edges:
        if ratio < edge:
            if not math.isfinite(edge):
                return f">={lower:g}"
            return f"{lower:g}-{edge:g}" if lower else f"<{edge:g}"
        lower = edge
    raise AssertionError("unreachable")


def score(
    network: Any,
    kernels: Sequence[str],
    dims: Sequence[int],
    sizes: Sequence[int],
    tasks: int,
    targets: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One record per task: kernel, d, n, noise-to-signal ratio, roughness, anisotropy, gap
    (inferred and known noise) and log variance ratio."""
    records = []
    network = network.double()
    for kernel in kernels:
        prior = evaluation_prior(network.config.max_dim, kernel)
        for dim in dims:
            for n in sizes:
                batch = cell_tasks(prior, kernel, dim, n, tasks, targets, seed)
                mean, var = network_predictive(network, batch)
                oracle = oracle_logpdf(batch).mean(-1)
                gap = oracle - gaussian_logpdf(batch.yt, mean, var).mean(-1)
                known_mean, known_var = network_predictive(network, batch, known_noise=True)
                gap_known = oracle - gaussian_logpdf(batch.yt, known_mean, known_var).mean(-1)
                log_ratio = (var / (batch.oracle_var + batch.noise)).log().mean(-1)
                noise_ratio = (batch.hyper.noise / batch.hyper.outputscale).sqrt()
                roughness = batch.hyper.lengthscale.amin(-1) / math.sqrt(dim)
                anisotropy = batch.hyper.lengthscale.log().std(-1, unbiased=False)
                columns = (gap, gap_known, log_ratio, noise_ratio, roughness, anisotropy)
                for g, gk, lr, r, ls, an in zip(*(c.tolist() for c in columns), strict=True):
                    an = an if dim > 1 else None  # one dimension has no anisotropy
                    records.append(
                        {
                            "kernel": kernel,
                            "d": dim,
                            "n": n,
                            "noise_ratio": r,
                            "roughness": ls,
                            "anisotropy": an,
                            "gap": g,
                            "gap_known_noise": gk,
                            "log_var_ratio": lr,
                        }
                    )
    return records


def summarise(
    records: list[dict[str, Any]], sizes: Sequence[int], key: str, edges: Sequence[float]
) -> list[dict[str, Any]]:
    """Per group of ``key`` (edges ``edges``): task count, share of the total gap, mean gap
    (all and per n), the mean gap with the noise variance known, and the geometric-mean ratio
    of the network's predictive variance to the oracle's. Each row names its group under
    ``"group"``. Records whose ``key`` is None (anisotropy at d = 1) are left out, shares
    included."""
    records = [r for r in records if r[key] is not None]
    total = sum(r["gap"] for r in records)
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r[key]):
        groups.setdefault(group_of(record[key], edges), []).append(record)
    rows = []
    for name, group in groups.items():
        by_n = {}
        for n in sizes:
            gaps = [r["gap"] for r in group if r["n"] == n]
            by_n[str(n)] = sum(gaps) / len(gaps) if gaps else None
        rows.append(
            {
                "group": name,
                "tasks": len(group),
                "share_of_gap": sum(r["gap"] for r in group) / total if total else None,
                "mean_gap": sum(r["gap"] for r in group) / len(group),
                "gap_by_n": by_n,
                "mean_gap_known_noise": sum(r["gap_known_noise"] for r in group) / len(group),
                "var_ratio": math.exp(sum(r["log_var_ratio"] for r in group) / len(group)),
            }
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for name, entry in results["checkpoints"].items():
        lines += [f"**{name}** (step {entry['step']})", ""]
        lines += [
            f"Mean gap {entry['mean_gap']:.3f}; with the true noise variance given to the "
            f"network {entry['mean_gap_known_noise']:.3f}.",
            "",
        ]
        for key, heading, _ in GROUPINGS:
            rows = entry["groups"][key]
            sizes = list(rows[0]["gap_by_n"])
            head = [heading, "tasks", "share of gap", "mean gap"]
            head += [f"gap n={n}" for n in sizes]
            head += ["mean gap, noise known", "variance / oracle's"]
            lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            for row in rows:
                cells = [row["group"], str(row["tasks"]), f"{row['share_of_gap']:.2f}"]
                cells.append(f"{row['mean_gap']:.3f}")
                cells += ["-" if v is None else f"{v:.3f}" for v in row["gap_by_n"].values()]
                cells.append(f"{row['mean_gap_known_noise']:.3f}")
                cells.append(f"{row['var_ratio']:.2f}")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", default=["tnpkr-exact"])
    parser.add_argument("--kernels", nargs="+", default=["rbf", "matern52", "matern32"])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--tasks", type=int, default=8, help="tasks per cell")
    parser.add_argument("--targets", type=int, default=64, help="target points per task")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--smoke", action="store_true", help="one kernel, d 1-2, n 8 and 32")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.smoke:
        args.kernels, args.dims, args.sizes, args.tasks = ["rbf"], [1, 2], [8, 32], 6
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": machine_facts(torch.device("cpu")),
        "args": vars(args) | {"out_dir": ""},
        "checkpoints": {},
    }
    for name in args.checkpoints:
        network = load_checkpoint(name).eval()
        extra = read_metadata(resolve_checkpoint(name)[0])["extra"]
        records = score(
            network, args.kernels, args.dims, args.sizes, args.tasks, args.targets, args.seed
        )
        results["checkpoints"][name] = {
            "step": extra.get("step"),
            "mean_gap": sum(r["gap"] for r in records) / len(records),
            "mean_gap_known_noise": sum(r["gap_known_noise"] for r in records) / len(records),
            "groups": {
                key: summarise(records, args.sizes, key, edges) for key, _, edges in GROUPINGS
            },
            "tasks": records,
        }
    suffix = "_smoke" if args.smoke else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"gap_by_noise{suffix}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out_dir / f"gap_by_noise{suffix}.md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
