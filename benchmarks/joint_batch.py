"""Batch BO with joint (autoregressive) against independent TNP-KR posteriors, q = 4 and 8.

``TNPKRModel(..., joint="autoregressive")`` samples a q-batch jointly; the default samples its
points independently given the history. Both run the same BO loop: 2d+2 scrambled Sobol
points (the same per seed), then ``--iterations`` steps of qLogNEI (``prune_baseline=True``,
baseline = every evaluated point, ``--mc-samples`` Sobol base samples) optimised by
``optimize_acqf`` with the same budgets, on BoTorch's negated synthetic functions (noiseless,
``benchmarks/_bo.py``). Recorded per run: the simple regret after each step (noiseless values)
and the seconds of each step (model construction + acquisition optimisation).

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/joint_batch.py            # the full run
    python benchmarks/joint_batch.py --report                            # table + plot again
    python benchmarks/joint_batch.py --smoke --out-dir /tmp/jb           # seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._bo import Problem, best_so_far, log10_regret, sobol_engine, unit_bounds  # noqa: E402
from benchmarks._measure import machine_facts  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
MODES = ("independent", "joint")


def bo_step(X, Y, q: int, mode: str, args) -> tuple[torch.Tensor, float]:
    """One step: the model, qLogNEI and ``optimize_acqf``; returns candidates and seconds."""
    from botorch.acquisition import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    from botorch_tnpkr import TNPKRModel

    start = time.perf_counter()
    model = TNPKRModel(
        X, Y, checkpoint=args.checkpoint, joint="autoregressive" if mode == "joint" else None
    )
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([args.mc_samples]), seed=0)
    acqf = qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler, prune_baseline=True)
    candidates, _ = optimize_acqf(
        acqf,
        bounds=unit_bounds(X.shape[-1]),
        q=q,
        num_restarts=args.num_restarts,
        raw_samples=args.raw_samples,
        options={"maxiter": args.maxiter},
    )
    return candidates.detach(), time.perf_counter() - start


def run(function: str, seed: int, q: int, mode: str, args) -> dict[str, Any]:
    problem = Problem(function)
    engine = sobol_engine(problem.dim, seed)
    n_init = 2 * problem.dim + 2
    gen = torch.Generator().manual_seed(seed)
    X = engine.draw(n_init, dtype=torch.float64)
    Y, F = problem.evaluate(X, gen)
    step_s = []
    for it in range(args.iterations):
        torch.manual_seed(1000 * seed + it)
        candidates, seconds = bo_step(X, Y, q, mode, args)
        step_s.append(seconds)
        y, f = problem.evaluate(candidates, gen)
        X, Y, F = torch.cat([X, candidates]), torch.cat([Y, y]), torch.cat([F, f])
    best = best_so_far(F.squeeze(-1).tolist())
    regret = [problem.optimum - best[n_init - 1 + q * i] for i in range(args.iterations + 1)]
    # Spread of each batch: the smallest distance between two of its points (unit cube).
    spreads = []
    for i in range(args.iterations):
        batch = X[n_init + q * i : n_init + q * (i + 1)]
        dist = torch.cdist(batch, batch) + torch.eye(q, dtype=batch.dtype) * 1e9
        spreads.append(dist.min().item())
    return {
        "function": function,
        "dim": problem.dim,
        "seed": seed,
        "q": q,
        "mode": mode,
        "n_init": n_init,
        "iterations": args.iterations,
        "regret": regret,
        "step_s": step_s,
        "min_pair_distance": spreads,
    }


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (function, q, mode): mean final log10 regret over seeds and mean seconds per step."""
    cells: dict[tuple, list] = {}
    for r in records:
        cells.setdefault((r["function"], r["q"], r["mode"]), []).append(r)
    out = []
    for (function, q, mode), runs in sorted(cells.items()):
        final = [log10_regret(r["regret"][-1]) for r in runs]
        steps = [s for r in runs for s in r["step_s"]]
        spread = [s for r in runs for s in r["min_pair_distance"]]
        out.append(
            {
                "function": function,
                "q": q,
                "mode": mode,
                "seeds": sorted(r["seed"] for r in runs),
                "mean_final_log10_regret": statistics.fmean(final),
                "median_final_log10_regret": statistics.median(final),
                "mean_step_s": statistics.fmean(steps),
                "median_min_pair_distance": statistics.median(spread),
            }
        )
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| function | q | independent: log10 regret | joint: log10 regret | "
        "independent: s/step | joint: s/step | closest pair in a batch (ind. / joint) | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = {(s["function"], s["q"], s["mode"]): s for s in summary}
    for function, q in sorted({(s["function"], s["q"]) for s in summary}):
        ind, joint = table.get((function, q, "independent")), table.get((function, q, "joint"))
        if ind is None or joint is None:
            continue
        lines.append(
            f"| {function} | {q} | {ind['mean_final_log10_regret']:.2f} | "
            f"{joint['mean_final_log10_regret']:.2f} | {ind['mean_step_s']:.1f} | "
            f"{joint['mean_step_s']:.1f} | {ind['median_min_pair_distance']:.3f} / "
            f"{joint['median_min_pair_distance']:.3f} | {len(ind['seeds'])} |"
        )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = sorted({r["function"] for r in records})
    qs = sorted({r["q"] for r in records})
    fig, axes = plt.subplots(
        len(qs), len(functions), figsize=(4 * len(functions), 3.2 * len(qs)), squeeze=False
    )
    for i, q in enumerate(qs):
        for j, function in enumerate(functions):
            ax = axes[i][j]
            for mode, colour in zip(MODES, ("tab:blue", "tab:red"), strict=True):
                runs = [
                    r for r in records if (r["function"], r["q"], r["mode"]) == (function, q, mode)
                ]
                if not runs:
                    continue
                curves = [[log10_regret(v) for v in r["regret"]] for r in runs]
                steps = range(len(curves[0]))
                med = [statistics.median(c[k] for c in curves) for k in steps]
                lo = [min(c[k] for c in curves) for k in steps]
                hi = [max(c[k] for c in curves) for k in steps]
                ax.plot(steps, med, color=colour, label=f"{mode} (median of {len(runs)})")
                ax.fill_between(steps, lo, hi, color=colour, alpha=0.15)
            ax.set_title(f"{function}, qLogNEI q={q}")
            ax.set_xlabel("BO step")
            ax.set_ylabel("log10 simple regret")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(records, args, started: float, path: Path) -> dict[str, Any]:
    summary = summarise(records)
    report = {
        "what": "qLogNEI batch BO with TNPKRModel, joint='autoregressive' vs independent",
        "checkpoint": args.checkpoint,
        "functions": args.functions,
        "seeds": args.seeds,
        "qs": args.qs,
        "iterations": args.iterations,
        "num_restarts": args.num_restarts,
        "raw_samples": args.raw_samples,
        "mc_samples": args.mc_samples,
        "maxiter": args.maxiter,
        "machine": machine_facts(torch.device("cpu")),
        "wall_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "records": records,
    }
    path.write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--functions", nargs="+", default=["branin", "hartmann6"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--qs", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--num-restarts", type=int, default=2)
    parser.add_argument("--raw-samples", type=int, default=32)
    parser.add_argument("--mc-samples", type=int, default=32)
    parser.add_argument("--maxiter", type=int, default=20)
    parser.add_argument("--checkpoint", default="tnpkr-exact")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="one tiny run per mode (seconds)")
    parser.add_argument("--report", action="store_true", help="re-tabulate the saved JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.functions, args.seeds, args.qs, args.iterations = ["branin"], [0], [2], 1
        args.num_restarts, args.raw_samples, args.mc_samples, args.maxiter = 1, 8, 8, 3
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "joint_batch_cpu_smoke" if args.smoke else "joint_batch_cpu"
    json_path, png_path = args.out_dir / f"{stem}.json", args.out_dir / f"{stem}.png"
    started = time.perf_counter()
    if args.report:
        report = json.loads(json_path.read_text())
        records = report["records"]
    else:
        records = []
        # Seed by seed, so that a run cut short still compares both modes on the same seeds.
        for seed in args.seeds:
            for function in args.functions:
                for q in args.qs:
                    for mode in MODES:
                        record = run(function, seed, q, mode, args)
                        records.append(record)
                        print(
                            f"{function:10s} seed {seed} q={q} {mode:11s}: log10 regret "
                            f"{log10_regret(record['regret'][-1]):6.2f}, "
                            f"{statistics.fmean(record['step_s']):5.1f} s/step",
                            file=sys.stderr,
                            flush=True,
                        )
                        report = write(records, args, started, json_path)
        report = write(records, args, started, json_path)
    plot(records, png_path)
    print(markdown(report["summary"]))
    return report


if __name__ == "__main__":
    main()
