"""What log-n attention scaling does beyond the trained context: the same weights with and
without it (``TNPKRConfig.trained_context``), on the same histories and tasks.

Two parts, each scored with the scaling off and on:

* ``functions``: the BO suite's test functions (``benchmarks/_bo.py``) on the unit cube, a
  history of the first n points of a scrambled Sobol sequence (seeded) with Gaussian noise of
  1% of the history's standard deviation, and 256 held-out Sobol points; the score is the
  mean predictive NLL per held-out point in units of the history's standard deviation (the
  context is standardised as ``TNPKRModel`` does);
* ``prior``: the evaluation command's cells (kernels x d) at the larger sizes, gap to the
  oracle GP per target point (``botorch_tnpkr.evaluate.evaluate_cell``).

Up to the trained size both settings compute the same thing, so only larger n are scored.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/log_n_scaling.py     # ~25 min on one thread
    python benchmarks/log_n_scaling.py --no-prior            # the functions only, ~3 min
    python benchmarks/log_n_scaling.py --smoke --out-dir /tmp/lns

Writes ``log_n_scaling[_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.quasirandom import SobolEngine

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._bo import FUNCTIONS  # noqa: E402
from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.evaluate import EVAL_SEED, checkpoint_trained_context, evaluate_cell  # noqa: E402
from botorch_tnpkr.nn import TNPKR  # noqa: E402

HELD_OUT = 256
NOISE = 0.01  # observation noise, as a fraction of the history's standard deviation
SETTINGS = ("off", "on")


def variants(network: TNPKR, trained: int) -> dict[str, TNPKR]:
    """The network's weights without (``off``) and with (``on``) log-n scaling, float64."""
    network = network.double().eval()
    values = (None, trained)
    return {s: network.with_trained_context(v) for s, v in zip(SETTINGS, values, strict=True)}


def held_out_nll(net: TNPKR, xc: torch.Tensor, yc: torch.Tensor, xt, yt) -> float:
    """Mean Gaussian NLL of ``yt`` (`nT`) in units of the standardised history (`nC`)."""
    loc, scale = yc.mean(), yc.std()
    with torch.no_grad():
        pred = net(xc[None], ((yc - loc) / scale)[None], xt[None])
    z = (yt - loc) / scale
    var = pred.fvar[0] + pred.noise_var[0]
    return float((0.5 * ((z - pred.mean[0]) ** 2 / var + var.log() + math.log(2 * math.pi))).mean())


def score_functions(
    nets: dict[str, TNPKR], functions: Sequence[str], sizes: Sequence[int], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for name in functions:
        f = FUNCTIONS[name]().to(torch.float64)
        for seed in seeds:
            x = SobolEngine(f.dim, scramble=True, seed=seed).draw(max(sizes) + HELD_OUT)
            x = x.to(torch.float64)
            y = f(f.bounds[0] + (f.bounds[1] - f.bounds[0]) * x)
            gen = torch.Generator().manual_seed(seed)
            y = y + NOISE * y.std() * torch.randn(y.shape, generator=gen, dtype=y.dtype)
            xt, yt = x[-HELD_OUT:], y[-HELD_OUT:]
            for n in sizes:
                row = {"function": name, "seed": seed, "n": n}
                for setting, net in nets.items():
                    row[setting] = held_out_nll(net, x[:n], y[:n], xt, yt)
                row["diff"] = row["on"] - row["off"]
                rows.append(row)
                print(
                    f"{name} seed={seed} n={n}: NLL off {row['off']:.3f} on {row['on']:.3f} "
                    f"({row['diff']:+.3f})",
                    flush=True,
                )
    return rows


def score_prior(
    nets: dict[str, TNPKR], kernels: Sequence[str], dims: Sequence[int], sizes, tasks: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        for kernel in kernels:
            for d in dims:
                row = {"kernel": kernel, "d": d, "n": n}
                for setting, net in nets.items():
                    row[setting] = evaluate_cell(net, kernel, d, n, tasks, 64, False, EVAL_SEED).gap
                row["diff"] = row["on"] - row["off"]
                rows.append(row)
                print(
                    f"{kernel} d={d} n={n}: gap off {row['off']:.3f} on {row['on']:.3f}",
                    flush=True,
                )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per n: mean of each setting, mean and median difference, share where ``on`` is lower."""
    out = {}
    for n in sorted({r["n"] for r in rows}):
        diffs = [r["diff"] for r in rows if r["n"] == n]
        out[n] = {
            "off": statistics.fmean(r["off"] for r in rows if r["n"] == n),
            "on": statistics.fmean(r["on"] for r in rows if r["n"] == n),
            "mean_diff": statistics.fmean(diffs),
            "median_diff": statistics.median(diffs),
            "share_better": sum(d < 0 for d in diffs) / len(diffs),
            "count": len(diffs),
        }
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for part, label in (("functions", "held-out NLL"), ("prior", "gap to the oracle")):
        if part not in results:
            continue
        lines += [
            f"**{part}** ({label}, lower is better; trained context {results['trained_context']})",
            "",
            "| n | off | on | mean on - off | median on - off | share better with it | count |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n, s in results[part]["summary"].items():
            lines.append(
                f"| {n} | {s['off']:.3f} | {s['on']:.3f} | {s['mean_diff']:+.3f} | "
                f"{s['median_diff']:+.3f} | {s['share_better']:.0%} | {s['count']} |"
            )
        lines.append("")
    by_fn = {}
    for row in results.get("functions", {}).get("rows", []):
        by_fn.setdefault(row["function"], []).append(row["diff"])
    if by_fn:
        lines += ["| function | mean on - off (all n, seeds) |", "|---|---:|"]
        lines += [f"| {k} | {statistics.fmean(v):+.3f} |" for k, v in by_fn.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tnpkr-exact")
    parser.add_argument("--functions", nargs="+", choices=list(FUNCTIONS), default=None)
    parser.add_argument("--multiples", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--prior-tasks", type=int, default=4, help="tasks per prior cell")
    parser.add_argument("--no-prior", action="store_true", help="skip the prior part")
    parser.add_argument("--smoke", action="store_true", help="one size, two functions")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    network = load_checkpoint(args.checkpoint)
    trained = checkpoint_trained_context(args.checkpoint)
    if trained is None:
        parser.error(f"{args.checkpoint} records no trained context")
    sizes = [m * trained for m in args.multiples]
    functions = args.functions or list(FUNCTIONS)
    kernels, dims = ("rbf", "matern52", "matern32"), (1, 2, 3, 6)
    if args.smoke:
        sizes, functions, args.seeds = [trained + trained // 8], functions[:2], [0]
        kernels, dims, args.prior_tasks = ("rbf",), (2,), 1
    nets = variants(network, trained)
    results: dict[str, Any] = {
        "machine": machine_facts(torch.device("cpu")),
        "args": vars(args) | {"out_dir": ""},
        "trained_context": trained,
        "sizes": sizes,
    }
    rows = score_functions(nets, functions, sizes, args.seeds)
    results["functions"] = {"rows": rows, "summary": summary(rows)}
    if not args.no_prior:
        rows = score_prior(nets, kernels, dims, sizes, args.prior_tasks)
        results["prior"] = {"rows": rows, "summary": summary(rows)}
    suffix = "_smoke" if args.smoke else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"log_n_scaling{suffix}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out_dir / f"log_n_scaling{suffix}.md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
