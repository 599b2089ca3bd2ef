"""Ax loop cost and quality: the TNP-KR strategy against the Ax Client's default strategy.

Timing (default mode): seconds per ``Client.get_next_trials(max_trials=1)`` on Hartmann-6
(6 float parameters in [0, 1]) once ``n`` trials are completed, n = 50, 500, 2,000. The ``n``
trials are uniform random points attached to the experiment with their Hartmann-6 values;
then the strategy is set (TNP-KR: ``tnpkr_generation_strategy``; default: what
``Client.configure_generation_strategy()`` chooses, a GP under Ax's MBM), and ``--repeats``
calls are timed, each trial completed before the next call. Both use Ax's default
acquisition (qLogNEI) and, unless ``--num-restarts`` / ``--raw-samples`` / ``--maxiter`` are
given, Ax's default optimiser budgets. A strategy whose call would exceed ``--cap-s`` (600 s)
is skipped at that size and above, recorded as ``skipped``: estimated from the two largest
sizes measured (a fitted power of n, clipped to [1, 3]; never from a single size), or found
when a call in a fresh subprocess is killed at the cap.

Regret (``--regret``): the best Hartmann-6 value found within ``--trials`` (30) trials, for
both strategies over ``--seeds`` (5) seeds (each strategy with its own initialization: 5
Sobol trials for TNP-KR, Ax's default center + Sobol for the GP).

Usage:
    python benchmarks/ax_loop.py --checkpoint auto                       # timing
    python benchmarks/ax_loop.py --regret --checkpoint auto              # best value in 30
    python benchmarks/ax_loop.py --quick --checkpoint net.safetensors    # smoke run
    python benchmarks/ax_loop.py --quick --regret --checkpoint net.safetensors

Writes ``benchmarks/results/ax_loop_<device>.json`` (``ax_loop_regret_<device>.json`` with
``--regret``; a ``_quick`` suffix with ``--quick``) and a ``.png`` beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402

STRATEGIES = ("tnpkr", "default")
LABELS = {"tnpkr": "TNP-KR strategy", "default": "Ax default (GP)"}
FULL_SIZES = [50, 500, 2_000]
QUICK_SIZES = [12, 24]
DIM = 6
HARTMANN6_MIN = -3.32237
METRIC = "hartmann6"


# ----------------------------------------------------------------------------- problem
def hartmann6(parameters: dict[str, float]) -> float:
    from botorch.test_functions import Hartmann

    x = torch.tensor([[parameters[f"x{i}"] for i in range(DIM)]], dtype=torch.float64)
    return float(Hartmann(dim=DIM)(x))


def new_client(seed: int):
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig

    client = Client(random_seed=seed)
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name=f"x{i}", parameter_type="float", bounds=(0.0, 1.0))
            for i in range(DIM)
        ],
        name="hartmann6",
    )
    client.configure_optimization(objective=f"-{METRIC}")
    return client


def attach_random(client, n: int, seed: int) -> None:
    """``n`` completed trials at uniform random points."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, DIM, generator=gen, dtype=torch.float64)
    for row in X.tolist():
        parameters = {f"x{i}": value for i, value in enumerate(row)}
        index = client.attach_trial(parameters=parameters)
        client.complete_trial(index, raw_data={METRIC: hartmann6(parameters)})


def _optimizer(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.num_restarts is not None:
        kwargs["num_restarts"] = args.num_restarts
    if args.raw_samples is not None:
        kwargs["raw_samples"] = args.raw_samples
    if args.maxiter is not None:
        kwargs["options"] = {"maxiter": args.maxiter}
    return kwargs


def set_strategy(client, strategy: str, args: argparse.Namespace, seed: int) -> None:
    """The TNP-KR strategy, or the Client's default with the same optimiser budgets."""
    from ax.adapter.registry import Generators

    from botorch_tnpkr.ax import tnpkr_generation_strategy

    optimizer = _optimizer(args)
    device = None if args.device == "cpu" else args.device
    if strategy == "tnpkr":
        client.set_generation_strategy(
            tnpkr_generation_strategy(
                initialization_trials=args.init,
                checkpoint=args.checkpoint,
                num_restarts=optimizer.get("num_restarts"),
                raw_samples=optimizer.get("raw_samples"),
                optimizer_options=optimizer.get("options"),
                seed=seed,
                torch_device=device,
            )
        )
        return
    client.configure_generation_strategy(initialization_random_seed=seed, torch_device=device)
    if optimizer:
        for node in client._generation_strategy._nodes:
            for spec in node.generator_specs:
                if spec.generator_enum == Generators.BOTORCH_MODULAR:
                    spec.generator_gen_kwargs["model_gen_options"] = {"optimizer_kwargs": optimizer}


def _generated_by(client, index: int) -> str:
    """``node/generator`` of a trial, e.g. ``TNPKR/BoTorch`` or ``TNPKR/Sobol`` (fallback)."""
    run = client._experiment.trials[index].generator_run
    return f"{run._generation_node_name}/{run._generator_key}"


# ----------------------------------------------------------------------------- timing
def time_calls(strategy: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Set up ``n`` completed trials, then time ``args.repeats`` calls of get_next_trials."""
    start = time.perf_counter()
    client = new_client(seed=args.seed)
    attach_random(client, n, seed=args.seed)
    set_strategy(client, strategy, args, seed=args.seed)
    # The attached trials satisfy the initialization nodes: move past them now, so that every
    # timed call is made by the model node (else the first one comes from Sobol).
    client._generation_strategy.current_generator_run_limit()
    setup_s = time.perf_counter() - start
    times, generated = [], []
    status = "ok"
    for _ in range(args.repeats):
        start = time.perf_counter()
        trials = client.get_next_trials(max_trials=1)
        if device_is_cuda(args.device):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        for index, parameters in trials.items():
            generated.append(_generated_by(client, index))
            client.complete_trial(index, raw_data={METRIC: hartmann6(parameters)})
        if times[-1] > args.cap_s:
            status = "over_cap"
            break
    return {
        "strategy": strategy,
        "n": n,
        "status": status,
        "seconds_per_call": statistics.median(times),
        "call_s": times,
        "setup_s": setup_s,
        "generated_by": generated,
    }


def is_fallback(generated_by: str) -> bool:
    """A trial of the model node made by Ax's fallback (after 5 repeated candidates)."""
    node, _, generator = generated_by.partition("/")
    return node in ("TNPKR", "MBM") and generator != "BoTorch"


def device_is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _worker_command(args: argparse.Namespace, strategy: str, n: int) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--single", strategy, str(n)]
    command += ["--checkpoint", str(args.checkpoint), "--device", args.device]
    command += ["--repeats", str(args.repeats), "--cap-s", str(args.cap_s)]
    command += ["--seed", str(args.seed), "--init", str(args.init)]
    for flag, value in (
        ("--num-restarts", args.num_restarts),
        ("--raw-samples", args.raw_samples),
        ("--maxiter", args.maxiter),
    ):
        if value is not None:
            command += [flag, str(value)]
    return command


def measure(args: argparse.Namespace, strategy: str, n: int) -> dict[str, Any]:
    """One (strategy, n) cell: in a fresh subprocess killed past the cap, or in-process."""
    base = {"strategy": strategy, "n": n}
    if not args.isolate:
        return time_calls(strategy, n, args)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    # Setup (attaching n trials) is not part of the cap; allow it generously.
    timeout = args.repeats * args.cap_s + 120 + 0.2 * n
    try:
        done = subprocess.run(
            _worker_command(args, strategy, n),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(REPO),
            env=env,
        )
    except subprocess.TimeoutExpired:
        note = f"a get_next_trials call ran past the cap of {args.cap_s:.0f} s (killed)"
        return {**base, "status": "skipped", "note": note}
    for line in reversed(done.stdout.splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {**base, "status": "error", "note": done.stderr.strip()[-800:]}


def estimate_seconds(records: Sequence[dict[str, Any]], strategy: str, n: int) -> float | None:
    """Per-call time at ``n`` from the two largest measured sizes (power of n in [1, 3])."""
    ok = sorted(
        (r for r in records if r["strategy"] == strategy and r["status"] == "ok"),
        key=lambda r: r["n"],
    )
    if len(ok) < 2:
        return None  # one size says nothing about growth: measure (the cap still applies)
    last = ok[-1]
    power = 3.0
    if last["n"] > ok[-2]["n"]:
        ratio = last["seconds_per_call"] / max(ok[-2]["seconds_per_call"], 1e-9)
        power = math.log(max(ratio, 1e-9)) / math.log(last["n"] / ok[-2]["n"])
        power = min(max(power, 1.0), 3.0)
    return last["seconds_per_call"] * (n / last["n"]) ** power


def run_timing(args: argparse.Namespace) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    stopped: dict[str, str] = {}
    for n in args.sizes:
        for strategy in args.strategies:
            estimate = estimate_seconds(records, strategy, n)
            if strategy in stopped:
                record = {"strategy": strategy, "n": n, "status": "skipped"}
                record["note"] = stopped[strategy]
            elif strategy == "default" and estimate is not None and estimate > args.cap_s:
                note = f"estimated {estimate:.0f} s per call > cap {args.cap_s:.0f} s"
                record = {"strategy": strategy, "n": n, "status": "skipped", "note": note}
                record["estimated_s"] = estimate
                stopped[strategy] = f"skipped at n={n}: {note}"
            else:
                record = measure(args, strategy, n)
                if record["status"] != "ok":
                    stopped[strategy] = f"n={n}: {record['status']} ({record.get('note', '')})"
            records.append(record)
            print(_line(record), file=sys.stderr, flush=True)
    return records


def _line(record: dict[str, Any]) -> str:
    head = f"{LABELS[record['strategy']]:>16} n={record['n']:>6}"
    if "seconds_per_call" not in record:
        return f"{head}  {record['status']}: {record.get('note', '')}"
    fallbacks = sum(is_fallback(g) for g in record["generated_by"])
    return (
        f"{head}  {record['seconds_per_call']:9.3f} s per call ({record['status']}; setup "
        f"{record['setup_s']:.1f} s; made by {sorted(set(record['generated_by']))}"
        + (f"; {fallbacks} Sobol fallbacks" if fallbacks else "")
        + ")"
    )


def timing_table(records: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| completed trials | strategy | s per get_next_trials | status |",
        "|---|---|---|---|",
    ]
    for r in records:
        seconds = f"{r['seconds_per_call']:.3f}" if "seconds_per_call" in r else ""
        lines.append(f"| {r['n']} | {LABELS[r['strategy']]} | {seconds} | {r['status']} |")
    return "\n".join(lines)


def plot_timing(records: Sequence[dict[str, Any]], cap_s: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in STRATEGIES:
        ok = [r for r in records if r["strategy"] == strategy and "seconds_per_call" in r]
        if ok:
            ax.plot(
                [r["n"] for r in ok],
                [r["seconds_per_call"] for r in ok],
                marker="o",
                label=LABELS[strategy],
            )
        for r in records:
            if r["strategy"] == strategy and r["status"] == "skipped":
                ax.annotate(f"{LABELS[strategy]}: skipped", (r["n"], cap_s), fontsize=7)
    ax.axhline(cap_s, color="grey", linestyle=":", label=f"cap {cap_s:.0f} s")
    ax.set(xscale="log", yscale="log", xlabel="completed trials", ylabel="s per get_next_trials")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- regret
def run_regret(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for strategy in args.strategies:
            client = new_client(seed=seed)
            set_strategy(client, strategy, args, seed=seed)
            values, call_s, generated = [], [], []
            for _ in range(args.trials):
                start = time.perf_counter()
                trials = client.get_next_trials(max_trials=1)
                call_s.append(time.perf_counter() - start)
                for index, parameters in trials.items():
                    value = hartmann6(parameters)
                    values.append(value)
                    generated.append(_generated_by(client, index))
                    client.complete_trial(index, raw_data={METRIC: value})
            best = [min(values[: i + 1]) for i in range(len(values))]
            record = {
                "strategy": strategy,
                "seed": seed,
                "values": values,
                "best_so_far": best,
                "best": best[-1],
                "regret": best[-1] - HARTMANN6_MIN,
                "call_s": call_s,
                "generated_by": generated,
            }
            records.append(record)
            print(
                f"{LABELS[strategy]:>16} seed {seed}: best {best[-1]:.4f} (regret "
                f"{record['regret']:.4f}), {statistics.mean(call_s):.2f} s per call",
                file=sys.stderr,
                flush=True,
            )
    return records


def regret_summary(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary = {}
    for strategy in STRATEGIES:
        runs = [r for r in records if r["strategy"] == strategy]
        if not runs:
            continue
        regrets = [r["regret"] for r in runs]
        summary[strategy] = {
            "seeds": len(runs),
            "mean_best": statistics.mean(r["best"] for r in runs),
            "mean_regret": statistics.mean(regrets),
            "std_regret": statistics.stdev(regrets) if len(regrets) > 1 else 0.0,
            "median_regret": statistics.median(regrets),
            "mean_s_per_call": statistics.mean(s for r in runs for s in r["call_s"]),
            "sobol_fallbacks": sum(g == "TNPKR/Sobol" for r in runs for g in r["generated_by"]),
        }
    return summary


def regret_table(summary: dict[str, dict[str, float]], trials: int) -> str:
    lines = [
        f"| strategy | seeds | best in {trials} (mean) | regret mean ± std | median | s/call |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, s in summary.items():
        lines.append(
            f"| {LABELS[strategy]} | {s['seeds']} | {s['mean_best']:.4f} | "
            f"{s['mean_regret']:.4f} ± {s['std_regret']:.4f} | {s['median_regret']:.4f} | "
            f"{s['mean_s_per_call']:.2f} |"
        )
    return "\n".join(lines)


def plot_regret(records: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in STRATEGIES:
        runs = [r["best_so_far"] for r in records if r["strategy"] == strategy]
        if not runs:
            continue
        regret = np.array(runs) - HARTMANN6_MIN
        mean, std = regret.mean(0), regret.std(0)
        steps = np.arange(1, regret.shape[1] + 1)
        ax.plot(steps, mean, label=f"{LABELS[strategy]} ({len(runs)} seeds)")
        ax.fill_between(steps, np.maximum(mean - std, 1e-6), mean + std, alpha=0.2)
    ax.set(yscale="log", xlabel="trial", ylabel="simple regret (best - min)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", default="auto", help="'auto', a name or a .safetensors path"
    )
    parser.add_argument("--regret", action="store_true", help="best value in --trials trials")
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets, in-process")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default 50 500 2000")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per size (3)")
    parser.add_argument("--cap-s", type=float, default=600.0, help="skip past this s per call")
    parser.add_argument("--seeds", type=int, default=None, help="regret seeds (5)")
    parser.add_argument("--trials", type=int, default=None, help="regret trials per run (30)")
    parser.add_argument("--first-seed", type=int, default=0, help="first regret seed")
    parser.add_argument("--init", type=int, default=None, help="TNP-KR Sobol trials (5)")
    parser.add_argument("--num-restarts", type=int, default=None, help="default: Ax's (quick: 2)")
    parser.add_argument("--raw-samples", type=int, default=None, help="default: Ax's (quick: 32)")
    parser.add_argument("--maxiter", type=int, default=None, help="default: Ax's (quick: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the timing histories")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--single", nargs=2, metavar=("STRATEGY", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.sizes = args.sizes or (QUICK_SIZES if quick else FULL_SIZES)
    args.repeats = args.repeats or (2 if quick else 3)
    args.seeds = args.seeds or (2 if quick else 5)
    args.trials = args.trials or (7 if quick else 30)
    args.init = args.init or (4 if quick else 5)
    if quick:
        args.num_restarts = args.num_restarts or 2
        args.raw_samples = args.raw_samples or 32
        args.maxiter = args.maxiter or 20
    args.isolate = (not quick) if args.isolate is None else args.isolate
    return args


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    import ax
    import botorch

    device = torch.device(args.device)
    return {
        **machine_facts(device),
        "botorch": botorch.__version__,
        "ax": ax.__version__,
        "checkpoint": str(args.checkpoint),
        "num_restarts": args.num_restarts,
        "raw_samples": args.raw_samples,
        "maxiter": args.maxiter,
        "quick": args.quick,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from ax.utils.common.logger import set_ax_logger_levels

    set_ax_logger_levels(logging.WARNING)
    if args.single:
        record = time_calls(args.single[0], int(args.single[1]), args)
        print(json.dumps(record), flush=True)
        return record
    device = torch.device(args.device).type
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    if args.regret:
        records = run_regret(args)
        summary = regret_summary(records)
        name = f"ax_loop_regret_{device}{suffix}"
        report = {
            "benchmark": "ax_loop_regret",
            **_environment(args),
            "problem": "Hartmann6 (minimise), min -3.32237",
            "trials": args.trials,
            "seeds": args.seeds,
            "tnpkr_initialization_trials": args.init,
            "summary": summary,
            "results": records,
        }
        title = f"Hartmann-6, best of {args.trials} trials, {args.seeds} seeds, {device}"
        plot_regret(records, title, args.out / f"{name}.png")
        text = regret_table(summary, args.trials)
    else:
        records = run_timing(args)
        name = f"ax_loop_{device}{suffix}"
        report = {
            "benchmark": "ax_loop",
            **_environment(args),
            "problem": "Hartmann6, d=6, uniform random completed trials",
            "sizes": args.sizes,
            "repeats": args.repeats,
            "cap_s": args.cap_s,
            "isolated": args.isolate,
            "results": records,
        }
        title = f"Ax get_next_trials(max_trials=1), Hartmann-6, {device}"
        plot_timing(records, args.cap_s, title, args.out / f"{name}.png")
        text = timing_table(records)
    json_path = args.out / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=2))
    print(text)
    print(f"\n{json_path}\n{args.out / f'{name}.png'}")
    return report


if __name__ == "__main__":
    main()
