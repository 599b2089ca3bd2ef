"""Would averaging over the task's symmetries at prediction time close part of the gap?

The evaluation prior is invariant to permutations of the input dimensions, to reflections
``x_i -> 1 - x_i`` and to the sign of ``y``, so a network that had learnt the Bayes-optimal
predictor would give the same prediction for every transformed copy of a task. A trained
network does not quite, and averaging its predictions over K transformed copies (identity
first, then random elements of the group) is a test-time ensemble that costs K forward passes.

Scored on the evaluation command's cells (gap to the oracle GP per target point, the same
tasks as ``python -m botorch_tnpkr.evaluate``), for two ways of combining the K Gaussians:

* ``moment``: one Gaussian with the mixture's mean and variance (what a BoTorch posterior
  could carry);
* ``mixture``: the mixture density itself (not Gaussian; an upper reference).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/symmetry_ensemble.py      # ~12 min on one thread
    python benchmarks/symmetry_ensemble.py --smoke --out-dir /tmp/se

Writes ``symmetry_ensemble[_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

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
from botorch_tnpkr.nn import TNPKR  # noqa: E402
from botorch_tnpkr.priors import gaussian_logpdf  # noqa: E402
from botorch_tnpkr.priors.sampler import TaskBatch  # noqa: E402

Symmetry = tuple[Tensor, Tensor, float]  # permutation `d`, reflected dims `d` (bool), y sign


def symmetries(dim: int, count: int, gen: torch.Generator) -> list[Symmetry]:
    """The identity, then ``count - 1`` random (permutation, reflection, sign) elements."""
    out: list[Symmetry] = [(torch.arange(dim), torch.zeros(dim, dtype=torch.bool), 1.0)]
    while len(out) < count:
        perm = torch.randperm(dim, generator=gen)
        flip = torch.rand(dim, generator=gen) < 0.5
        sign = -1.0 if float(torch.rand((), generator=gen)) < 0.5 else 1.0
        out.append((perm, flip, sign))
    return out


def transform_inputs(x: Tensor, symmetry: Symmetry) -> Tensor:
    """`... x d` inputs with their dimensions permuted and the chosen ones reflected."""
    perm, flip, _ = symmetry
    x = x[..., perm]
    return torch.where(flip, 1.0 - x, x)


def predictions(net: TNPKR, batch: TaskBatch, group: list[Symmetry]) -> tuple[Tensor, Tensor]:
    """`K x B x nT` means and variances of the noisy targets, one per symmetry, task units.

    Each member is the evaluation command's prediction (``network_predictive``) on the
    transformed task, its mean mapped back through the sign of ``y``.
    """
    means, variances = [], []
    for sym in group:
        sign = sym[2]
        copy = dataclasses.replace(
            batch,
            xc=transform_inputs(batch.xc, sym),
            yc=sign * batch.yc,
            xt=transform_inputs(batch.xt, sym),
        )
        mean, var = network_predictive(net, copy)
        means.append(sign * mean)
        variances.append(var)
    return torch.stack(means), torch.stack(variances)


def ensemble_gaps(
    batch: TaskBatch, means: Tensor, variances: Tensor, sizes: Sequence[int]
) -> dict[str, float]:
    """Gap to the oracle of the first k members, for each k, combined both ways."""
    oracle = float(oracle_logpdf(batch).mean())
    out = {}
    for k in sizes:
        m, v = means[:k], variances[:k]
        mix_var = v.mean(0) + m.var(0, unbiased=False)
        out[f"moment{k}"] = oracle - float(gaussian_logpdf(batch.yt, m.mean(0), mix_var).mean())
        log_mix = torch.logsumexp(gaussian_logpdf(batch.yt.unsqueeze(0), m, v), 0) - math.log(k)
        out[f"mixture{k}"] = oracle - float(log_mix.mean())
    return out


def summarise(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each key over all cells and per context size."""
    groups = {"all": rows} | {
        f"n={n}": [r for r in rows if r["n"] == n] for n in sorted({r["n"] for r in rows})
    }
    return {g: {k: statistics.fmean(r[k] for r in sub) for k in keys} for g, sub in groups.items()}


def markdown(results: dict[str, Any]) -> str:
    ks = results["ensemble_sizes"]
    head = ["cells"] + [f"moment K={k}" for k in ks] + [f"mixture K={k}" for k in ks]
    lines = [
        f"Gap to the oracle GP per target point (lower is better), {results['checkpoint']}, "
        f"{results['tasks']} tasks per cell; K=1 is the network as shipped.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for group, s in results["summary"].items():
        values = [s[f"moment{k}"] for k in ks] + [s[f"mixture{k}"] for k in ks]
        lines.append(f"| {group} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tnpkr-exact")
    parser.add_argument("--ensemble-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tasks", type=int, default=8, help="tasks per cell")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random symmetries")
    parser.add_argument("--smoke", action="store_true", help="two small cells, K up to 2")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if min(args.ensemble_sizes) < 1:
        parser.error("--ensemble-sizes must be positive")
    torch.set_num_threads(1)
    net = load_checkpoint(args.checkpoint).double().eval()
    kernels, dims, sizes = ("rbf", "matern52", "matern32"), (1, 2, 3, 6), (8, 32, 128, 512)
    if args.smoke:
        kernels, dims, sizes, args.tasks = ("rbf",), (2,), (8, 32), 2
        args.ensemble_sizes = [1, 2]
    ks = sorted(set(args.ensemble_sizes))
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for kernel in kernels:
        prior = evaluation_prior(net.config.max_dim, kernel)
        for d in dims:
            for n in sizes:
                batch = cell_tasks(prior, kernel, d, n, args.tasks, 64, EVAL_SEED)
                means, variances = predictions(net, batch, symmetries(d, max(ks), gen))
                row = {"kernel": kernel, "d": d, "n": n} | ensemble_gaps(
                    batch, means, variances, ks
                )
                rows.append(row)
                print(
                    f"{kernel} d={d} n={n}: "
                    + " ".join(f"K={k} {row[f'moment{k}']:.4f}" for k in ks),
                    flush=True,
                )
    keys = [f"{kind}{k}" for kind in ("moment", "mixture") for k in ks]
    results: dict[str, Any] = {
        "machine": machine_facts(torch.device("cpu")),
        "checkpoint": args.checkpoint,
        "tasks": args.tasks,
        "ensemble_sizes": ks,
        "rows": rows,
        "summary": summarise(rows, keys),
    }
    suffix = "_smoke" if args.smoke else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"symmetry_ensemble{suffix}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out_dir / f"symmetry_ensemble{suffix}.md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
