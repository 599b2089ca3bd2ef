"""Time and peak memory of one BO step against the history size, TNPKRModel vs SingleTaskGP.

One BO step = build the surrogate (TNPKRModel: construct, which encodes the history;
SingleTaskGP: construct and ``fit_gpytorch_mll``) + ``optimize_acqf`` of LogExpectedImprovement
with ``--num-restarts`` (8) restarts and ``--raw-samples`` (256) raw samples, q=1, on a
``--dim``-dimensional (6) Hartmann-6 history of n uniform points, n from 100 to 100,000.

A method whose step takes longer than ``--cap-s`` (600 s) is not run at larger n (each step
runs in a fresh subprocess that is killed at the cap; with ``--no-isolate`` it runs in this
process and the cap applies after the fact). Peak memory is the CUDA allocator peak, or on
CPU the peak resident-set increase during the step (kernel high-water mark where it can be
reset, else a sampling thread).

Usage:
    python benchmarks/bo_step_scaling.py --checkpoint auto          # the full grid
    python benchmarks/bo_step_scaling.py --quick --checkpoint net.safetensors   # smoke run

Writes ``benchmarks/results/bo_step_scaling_<device>.json`` (``..._quick.json`` for ``--quick``)
and a ``.png`` next to it, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts, proc_status_kib  # noqa: E402

FULL_SIZES = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
QUICK_SIZES = [50, 200]
METHODS = ("tnpkr", "gp")
LABELS = {"tnpkr": "TNPKRModel", "gp": "SingleTaskGP"}


# ----------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator, else resident set size."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False

    @staticmethod
    def _rss() -> int:
        return (proc_status_kib("VmRSS") or 0) * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self
        self.baseline = self.peak = self._rss()
        try:  # reset the kernel's high-water mark (VmHWM) of this process
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._hwm = proc_status_kib("VmHWM") is not None
        except OSError:
            self._hwm = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())
        if self._hwm:
            self.peak = max(self.peak, (proc_status_kib("VmHWM") or 0) * 1024)

    @property
    def increase(self) -> int:
        return max(int(self.peak - self.baseline), 0)


# ----------------------------------------------------------------------------- one step
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_history(n: int, dim: int, device: torch.device, seed: int = 0):
    """n uniform points in the unit cube and negated Hartmann-6 values (or a sine sum)."""
    from botorch.test_functions import Hartmann

    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    Y = Hartmann(dim=6, negate=True)(X) if dim == 6 else torch.sin(6.0 * X).sum(-1)
    Y = Y + 0.01 * torch.randn(n, generator=gen, dtype=torch.float64)
    return X.to(device), Y.unsqueeze(-1).to(device)


def warm_up(method: str, dim: int, checkpoint: str, device: torch.device) -> None:
    """A small untimed step, so that one-off costs (lazy imports, first calls) are not timed."""
    run_step(method, 16, dim, checkpoint, 1, 8, device)


def run_step(
    method: str,
    n: int,
    dim: int,
    checkpoint: str,
    num_restarts: int,
    raw_samples: int,
    device: torch.device,
    seed: int = 0,
    calibrate: bool = True,
    adapt: bool = True,
) -> dict[str, Any]:
    """One BO step in this process; returns a JSON-serialisable record.

    ``calibrate`` and ``adapt`` are ``TNPKRModel``'s variance calibration and distance
    adaptation (on by default, as in the model).
    """
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from botorch_tnpkr.model import TNPKRModel

    X, Y = make_history(n, dim, device, seed)
    bounds = torch.stack([torch.zeros(dim), torch.ones(dim)]).to(X)
    record: dict[str, Any] = {"method": method, "n": n, "dim": dim}
    torch.manual_seed(seed)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        if method == "tnpkr":
            model = TNPKRModel(X, Y, checkpoint=checkpoint, calibrate=calibrate, adapt=adapt)
            record["checkpoint"] = model.checkpoint_source
            record["calibrate"] = calibrate
            record["attention"] = model.network.config.attention
        else:
            model = SingleTaskGP(X, Y)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        model_s = time.perf_counter() - start
        acqf = LogExpectedImprovement(model, best_f=Y.max())
        _, value = optimize_acqf(
            acqf, bounds=bounds, q=1, num_restarts=num_restarts, raw_samples=raw_samples
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total_s = time.perf_counter() - start
    record.update(
        status="ok",
        model_s=model_s,
        acq_s=total_s - model_s,
        total_s=total_s,
        peak_mem_bytes=memory.increase,
        acq_value=float(value),
        threads=torch.get_num_threads(),
    )
    return record


# ----------------------------------------------------------------------------- orchestration
def _worker_command(args: argparse.Namespace, method: str, n: int) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--single",
        method,
        str(n),
        "--dim",
        str(args.dim),
        "--checkpoint",
        str(args.checkpoint),
        "--num-restarts",
        str(args.num_restarts),
        "--raw-samples",
        str(args.raw_samples),
        "--device",
        args.device,
    ]


def measure(args: argparse.Namespace, method: str, n: int) -> dict[str, Any]:
    """One step, in a fresh subprocess killed at the cap (or in-process with --no-isolate)."""
    base = {"method": method, "n": n, "dim": args.dim}
    if not args.isolate:
        try:
            warm_up(method, args.dim, args.checkpoint, pick_device(args.device))
            record = run_step(
                method,
                n,
                args.dim,
                args.checkpoint,
                args.num_restarts,
                args.raw_samples,
                pick_device(args.device),
            )
        except (RuntimeError, ValueError) as err:
            return {**base, "status": "error", "note": f"{type(err).__name__}: {err}"[:500]}
        if record["total_s"] > args.cap_s:
            record["status"] = "over_cap"
        return record
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        done = subprocess.run(
            _worker_command(args, method, n),
            capture_output=True,
            text=True,
            timeout=args.cap_s,
            cwd=str(REPO),
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "note": f"over the cap of {args.cap_s:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {**base, "status": "error", "note": done.stderr.strip()[-500:]}


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    stopped: dict[str, int] = {}
    for n in args.sizes:
        for method in args.methods:
            if method in stopped:
                record = {"method": method, "n": n, "dim": args.dim, "status": "skipped"}
                record["note"] = f"a step at n={stopped[method]} exceeded {args.cap_s:.0f} s"
            else:
                record = measure(args, method, n)
                if record["status"] != "ok":
                    stopped[method] = n
            records.append(record)
            print(_line(record), file=sys.stderr, flush=True)
    return records


def _line(record: dict[str, Any]) -> str:
    head = f"{LABELS[record['method']]:>12} n={record['n']:>7}"
    if record.get("status") not in ("ok", "over_cap"):
        return f"{head}  {record['status']}: {record.get('note', '')}"
    mib = record["peak_mem_bytes"] / 2**20
    return (
        f"{head}  step {record['total_s']:8.2f} s (model {record['model_s']:7.2f} s, "
        f"acq {record['acq_s']:7.2f} s)  peak +{mib:8.1f} MiB"
    )


def table(records: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| n | method | step (s) | model (s) | acq (s) | peak memory (MiB) |",
        "|---" * 6 + "|",
    ]
    for r in records:
        if r.get("status") in ("ok", "over_cap"):
            cells = [
                f"{r['total_s']:.2f}",
                f"{r['model_s']:.2f}",
                f"{r['acq_s']:.2f}",
                f"{r['peak_mem_bytes'] / 2**20:.1f}",
            ]
        else:
            cells = [r.get("status", "?"), "", "", ""]
        lines.append(f"| {r['n']} | {LABELS[r['method']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], cap_s: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        ok = [r for r in records if r["method"] == method and r.get("status") in ("ok", "over_cap")]
        if not ok:
            continue
        ns = [r["n"] for r in ok]
        ax_t.plot(ns, [r["total_s"] for r in ok], marker="o", label=LABELS[method])
        ax_m.plot(
            ns, [max(r["peak_mem_bytes"], 1) / 2**20 for r in ok], marker="o", label=LABELS[method]
        )
    ax_t.axhline(cap_s, color="grey", linestyle=":", label=f"cap {cap_s:.0f} s")
    ax_t.set(xscale="log", yscale="log", xlabel="history size n", ylabel="one BO step (s)")
    ax_m.set(xscale="log", yscale="log", xlabel="history size n", ylabel="peak memory (MiB)")
    for ax in (ax_t, ax_m):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="auto", help="'auto', a name or a path")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--dim", type=int, default=6)
    parser.add_argument("--num-restarts", type=int, default=None, help="default 8 (quick: 2)")
    parser.add_argument("--raw-samples", type=int, default=None, help="default 256 (quick: 32)")
    parser.add_argument("--cap-s", type=float, default=None, help="default 600 (quick: 60)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets, in-process")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--single", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or (QUICK_SIZES if quick else FULL_SIZES)
    args.num_restarts = args.num_restarts or (2 if quick else 8)
    args.raw_samples = args.raw_samples or (32 if quick else 256)
    args.cap_s = args.cap_s or (60.0 if quick else 600.0)
    args.isolate = (not quick) if args.isolate is None else args.isolate
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.single:
        method, n = args.single[0], int(args.single[1])
        warm_up(method, args.dim, args.checkpoint, device)
        record = run_step(
            method, n, args.dim, args.checkpoint, args.num_restarts, args.raw_samples, device
        )
        print(json.dumps(record), flush=True)
        return record
    records = run_grid(args)
    name = f"bo_step_scaling_{device.type}" + ("_quick" if args.quick else "")
    report = {
        "benchmark": "bo_step_scaling",
        **machine_facts(device),
        "checkpoint": str(args.checkpoint),
        "dim": args.dim,
        "num_restarts": args.num_restarts,
        "raw_samples": args.raw_samples,
        "cap_s": args.cap_s,
        "isolated": args.isolate,
        "quick": args.quick,
        "results": records,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=2))
    title = (
        f"One BO step (LogEI, {args.num_restarts} restarts, {args.raw_samples} raw samples), "
        f"d={args.dim}, {device.type}"
    )
    plot(records, args.cap_s, title, args.out / f"{name}.png")
    print(table(records))
    print(f"\n{json_path}\n{args.out / f'{name}.png'}")
    return report


if __name__ == "__main__":
    main()
