"""What standardising the context costs a network: gap to the oracle, raw vs standardised.

``TNPKRModel`` (with BoTorch's default ``Standardize``) and the evaluation command hand the
network a context of sample mean 0 and standard deviation 1; training presets without
``standardize=True`` show it raw GP draws (output scales 0.25-4, offsets). For each context
size this script scores the same tasks both ways (the gap to the oracle is a KL, so both are
in the same units) and reports the mean gap per target point of the noisy targets.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/presentation_gap.py --checkpoints tnpkr-exact \\
        runs/exact-std/best.safetensors        # ~1 min per checkpoint on one thread
    python benchmarks/presentation_gap.py --smoke --out-dir /tmp/pg

Writes ``presentation_gap[_smoke].json`` and ``.md`` to ``--out-dir``.
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
from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.checkpoints.registry import resolve_checkpoint  # noqa: E402
from botorch_tnpkr.nn import read_metadata  # noqa: E402
from botorch_tnpkr.priors import PriorConfig, sample_tasks, standardize_batch  # noqa: E402
from botorch_tnpkr.train.objective import oracle_gap  # noqa: E402

SIZES = (2, 3, 5, 8, 16, 32, 64, 128, 256, 512)


def score(network: Any, sizes: Sequence[int], batches: int, tasks: int, seed: int) -> list[dict]:
    """Per context size: median and mean gap (noisy targets) of raw and standardised tasks.

    Tasks come from the default training prior restricted to the network's ``max_dim``; each
    size draws ``batches`` batches of ``tasks`` tasks (a batch shares d), the same for every
    network (a fixed seed per size).
    """
    rows = []
    prior = PriorConfig(max_dim=network.config.max_dim, max_context=max(sizes))
    for n in sizes:
        gen = torch.Generator().manual_seed(seed * 10_007 + n)
        raw_gaps, std_gaps = [], []
        for _ in range(batches):
            batch = sample_tasks(prior, tasks, gen, num_context=n)
            for view, out in ((batch, raw_gaps), (standardize_batch(batch), std_gaps)):
                with torch.no_grad():
                    pred = network(view.xc, view.yc, view.xt, mask=view.mask)
                out.append(float(oracle_gap(pred, view).gap_y))
        rows.append(
            {
                "n": n,
                "raw_mean": statistics.fmean(raw_gaps),
                "std_mean": statistics.fmean(std_gaps),
                "raw_median": statistics.median(raw_gaps),
                "std_median": statistics.median(std_gaps),
            }
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    names = list(results["checkpoints"])
    head = ["n"] + [f"{name} {view}" for name in names for view in ("raw", "standardised")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    sizes = [row["n"] for row in results["checkpoints"][names[0]]["rows"]]
    for i, n in enumerate(sizes):
        cells = [str(n)]
        for name in names:
            row = results["checkpoints"][name]["rows"][i]
            cells += [f"{row['raw_median']:.3f}", f"{row['std_median']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", default=["tnpkr-exact"])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--batches", type=int, default=8, help="batches per size")
    parser.add_argument("--tasks", type=int, default=16, help="tasks per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="2 sizes, 2 small batches")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.batches, args.tasks = [3, 16], 2, 4
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": machine_facts(torch.device("cpu")),
        "args": vars(args) | {"out_dir": ""},
    }
    results["checkpoints"] = {}
    for name in args.checkpoints:
        network = load_checkpoint(name).eval()
        extra = read_metadata(resolve_checkpoint(name)[0])["extra"]
        rows = score(network, args.sizes, args.batches, args.tasks, args.seed)
        results["checkpoints"][name] = {"step": extra.get("step"), "rows": rows}
        for row in rows:
            print(
                f"{name} n={row['n']:4d} median gap raw {row['raw_median']:.3f} "
                f"standardised {row['std_median']:.3f}",
                flush=True,
            )
    suffix = "_smoke" if args.smoke else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"presentation_gap{suffix}.json").write_text(
        json.dumps(results, indent=2, default=str)
    )
    table = markdown(results)
    (args.out_dir / f"presentation_gap{suffix}.md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
