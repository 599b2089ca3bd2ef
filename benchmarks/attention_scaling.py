"""Forward time and peak memory of the four attention backends against context and test size.

Every configuration runs in a fresh subprocess (``--single BACKEND NC NT`` prints one JSON line)
so that memory peaks do not carry over. The model has the default ``TNPKRConfig`` size with
random weights (time and memory do not depend on the weights), batch size 1, ``d = 2``, under
``torch.no_grad()``. On CUDA (picked automatically when available) it runs under bf16 autocast
with TF32 matmuls and reports ``torch.cuda.max_memory_allocated``; on CPU it reports the peak
resident-set increase (kernel high-water mark where it can be reset, and a sampling thread).

Usage:
    python benchmarks/attention_scaling.py --quick            # seconds: a smoke run
    OMP_NUM_THREADS=1 python benchmarks/attention_scaling.py  # the full grid (long on CPU)
    python benchmarks/attention_scaling.py --single scan 10000 1000

Writes ``benchmarks/results/attention_scaling_<device>.json`` and ``.png``, and prints a
markdown table. Configurations that would not fit (``softmax``: the dense `B x H x nq x nk`
bias over ``--memory-limit-gib``) or whose time, extrapolated from the largest smaller size
measured, exceeds ``--budget-s`` are recorded as skipped with the reason and the estimate.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import device_name, proc_status_kib  # noqa: E402
from botorch_tnpkr.nn import ATTENTION_BACKENDS, TNPKR, TNPKRConfig  # noqa: E402

GIB = 2**30
MIB = 2**20
EXACT = ("softmax", "scan")
BATCH = 1
DIM = 2
SMALL_WARMUP = 256  # context and test size of the warm-up call when a full-size one is too slow


# ----------------------------------------------------------------------------- memory
def _rss_reader() -> Callable[[], int]:
    """A function returning the current resident set size in bytes (psutil if installed)."""
    try:
        import psutil

        process = psutil.Process()
        return lambda: process.memory_info().rss
    except ImportError:
        return lambda: (proc_status_kib("VmRSS") or 0) * 1024


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return proc_status_kib("VmHWM") is not None


class PeakMemory:
    """Peak memory increase over the ``with`` block: CUDA allocator peak or CPU resident set.

    On CPU a thread samples the RSS every ``interval`` seconds; where the kernel's high-water
    mark can be reset the exact peak is taken from it as well. ``peak`` is readable while the
    block runs (for progress reports of runs that may be cut short).
    """

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = device
        self.interval = interval
        self.baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False
        self._rss = _rss_reader()

    @property
    def peak(self) -> int:
        """Bytes above the baseline at the highest point so far."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        return max(self._peak, self._hwm_bytes()) - self.baseline

    def _hwm_bytes(self) -> int:
        return (proc_status_kib("VmHWM") or 0) * 1024 if self._hwm else 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self
        self.baseline = self._rss()
        self._peak = self.baseline
        self._hwm = _reset_high_water_mark()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss())


# ----------------------------------------------------------------------------- one config
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(backend: str, device: torch.device) -> TNPKR:
    torch.manual_seed(0)
    return TNPKR(TNPKRConfig(attention=backend)).to(device).eval()


def make_inputs(nc: int, nt: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xc = torch.rand(BATCH, nc, DIM, generator=gen)
    yc = torch.sin(6.0 * xc.sum(-1)) + 0.1 * torch.randn(BATCH, nc, generator=gen)
    xt = torch.rand(BATCH, nt, DIM, generator=gen)
    return xc.to(device), yc.to(device), xt.to(device)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _repeat(fn: Callable[[], Any], device: torch.device, repeats: int, budget_s: float) -> list:
    """Up to ``repeats`` timings; stops early once half the time budget is spent."""
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (not times or spent < budget_s / 2):
        times.append(_timed(fn, device))
        spent += times[-1]
    return times


def _progress(memory: PeakMemory, start: float, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        line = {"progress": True, "elapsed_s": time.perf_counter() - start, "peak": memory.peak}
        print(json.dumps(line), flush=True)


def run_single(
    backend: str,
    nc: int,
    nt: int,
    device: torch.device,
    repeats: int = 3,
    budget_s: float = 600.0,
    full_warmup: bool = True,
    cached: bool = False,
    progress_s: float = 0.0,
) -> dict[str, Any]:
    """Time and measure one configuration in this process.

    Args:
        backend: Attention backend.
        nc: Context points ``nC``.
        nt: Test points ``nT``.
        device: Where to run.
        repeats: Timed forward passes (fewer when half of ``budget_s`` is spent).
        budget_s: Time budget of the configuration.
        full_warmup: Warm up with a full-size call (else with a small one).
        cached: Also time ``encode`` once and ``predict`` from the cache.
        progress_s: Print a JSON progress line (peak memory so far) this often; 0 for never.

    Returns:
        A JSON-serialisable record.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = build_model(backend, device)
    xc, yc, xt = make_inputs(nc, nt, device)
    record: dict[str, Any] = {"backend": backend, "nc": nc, "nt": nt, "mode": "forward"}
    start = time.perf_counter()
    with torch.no_grad(), _autocast(device), PeakMemory(device) as memory:
        stop = threading.Event()
        if progress_s > 0:
            reporter = (memory, start, stop, progress_s)
            threading.Thread(target=_progress, args=reporter, daemon=True).start()
        if full_warmup:
            model(xc, yc, xt)
        else:
            small = min(nc, SMALL_WARMUP)
            model(xc[:, :small], yc[:, :small], xt[:, :SMALL_WARMUP])
        times = _repeat(lambda: model(xc, yc, xt), device, repeats, budget_s)
        if cached:
            record["mode"] = "cached"
            cache = model.encode(xc, yc)
            record["encode_s"] = _timed(lambda: model.encode(xc, yc), device)
            predict = _repeat(lambda: model.predict(cache, xt), device, max(repeats, 3), budget_s)
            record["predict_s"] = statistics.median(predict)
            record["predict_times_s"] = predict
        stop.set()
    record.update(
        status="ok",
        time_s=statistics.median(times),
        times_s=times,
        repeats=len(times),
        full_warmup=full_warmup,
        peak_mem_bytes=int(memory.peak),
        threads=torch.get_num_threads(),
    )
    if cached:
        record["speedup"] = record["time_s"] / record["predict_s"]
    return record


# ----------------------------------------------------------------------------- estimates
def dense_bias_bytes(nc: int, nt: int, heads: int) -> int:
    """The largest dense float32 bias softmax attention builds: `B x H x max(nC, nT) x nC`."""
    return 4 * BATCH * heads * nc * max(nc, nt)


def cost(backend: str, nc: int, nt: int) -> float:
    """Work in units that scale like the backend: attention pairs, or points for linear ones."""
    if backend in EXACT:
        return float(nc) * nc + float(nc) * nt + nc + nt
    return float(nc + nt)


def estimate_time(backend: str, nc: int, nt: int, done: list[dict[str, Any]]) -> float | None:
    """Extrapolate from the largest measured ``nC`` of the same backend and ``nT``."""
    measured = [
        r
        for r in done
        if r["backend"] == backend and r["nt"] == nt and r["status"] == "ok" and r["nc"] < nc
    ]
    if not measured:
        return None
    ref = max(measured, key=lambda r: r["nc"])
    return ref["time_s"] * cost(backend, nc, nt) / cost(backend, ref["nc"], nt)


def estimate_memory(backend: str, nc: int, nt: int, done: list[dict[str, Any]]) -> float | None:
    """Linear extrapolation in ``nC`` of the peak memory through the two largest measurements."""
    measured = sorted(
        (r for r in done if r["backend"] == backend and r["nt"] == nt and r["status"] == "ok"),
        key=lambda r: r["nc"],
    )
    if len(measured) < 2:
        return None
    a, b = measured[-2], measured[-1]
    slope = (b["peak_mem_bytes"] - a["peak_mem_bytes"]) / (b["nc"] - a["nc"])
    return b["peak_mem_bytes"] + max(slope, 0.0) * (nc - b["nc"])


# ----------------------------------------------------------------------------- orchestration
def _single_command(args: argparse.Namespace, backend: str, nc: int, nt: int, **opts) -> list:
    command = [sys.executable, str(Path(__file__).resolve()), "--single", backend, str(nc), str(nt)]
    command += ["--device", args.device, "--repeats", str(args.repeats)]
    command += ["--budget-s", str(args.budget_s)]
    if not opts.get("full_warmup", True):
        command.append("--small-warmup")
    if opts.get("cached"):
        command.append("--single-cached")
    if opts.get("progress_s"):
        command += ["--progress-s", str(opts["progress_s"])]
    return command


def _run_subprocess(command: list[str], timeout: float) -> tuple[dict | None, dict | None, str]:
    """Run one child; return its result line, its last progress line and its stderr tail."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO)
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()  # everything the child wrote, also before
    lines = (stdout or "").splitlines()
    result = progress = None
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(line)
            if data.get("progress"):
                progress = data
            else:
                result = data
    return result, progress, (stderr or "")[-2000:]


def measure(args: argparse.Namespace, backend: str, nc: int, nt: int, **opts) -> dict[str, Any]:
    """One configuration, in a fresh subprocess unless ``--no-isolate``."""
    device = pick_device(args.device)
    if not args.isolate:
        try:
            return run_single(
                backend, nc, nt, device, args.repeats, args.budget_s, **opts, progress_s=0.0
            )
        except RuntimeError as err:  # e.g. out of memory
            return {"backend": backend, "nc": nc, "nt": nt, "status": "error", "note": str(err)}
    timeout = opts.pop("timeout", 2 * args.budget_s + 120)
    command = _single_command(args, backend, nc, nt, **opts)
    result, progress, stderr = _run_subprocess(command, timeout)
    if result is not None:
        return result
    record = {"backend": backend, "nc": nc, "nt": nt, "status": "skipped"}
    if progress is not None:
        record["partial_peak_mem_bytes"] = progress["peak"]
        record["partial_s"] = progress["elapsed_s"]
    record["note"] = f"no result within {timeout:.0f} s" if not stderr else stderr.strip()[-300:]
    return record


def memory_limit_bytes(args: argparse.Namespace, device: torch.device) -> float:
    if args.memory_limit_gib is not None:
        return args.memory_limit_gib * GIB
    if device.type == "cuda":
        return 0.5 * torch.cuda.get_device_properties(device).total_memory
    return 8.0 * GIB


def run_grid(args: argparse.Namespace) -> dict[str, Any]:
    device = pick_device(args.device)
    heads = TNPKRConfig().num_heads
    limit = memory_limit_bytes(args, device)
    done: list[dict[str, Any]] = []
    for backend in args.backends:
        for nt in args.nt:
            sizes = sorted(set(args.nc + (args.dka_nc if backend == "dka" else [])))
            for nc in sizes:
                record = plan_and_measure(args, backend, nc, nt, heads, limit, done)
                done.append(record)
                print(_one_line(record), file=sys.stderr, flush=True)
    cached = []
    for backend in args.backends:
        nc, nt = args.cached
        if backend == "softmax" and dense_bias_bytes(nc, nt, heads) > limit:
            need = dense_bias_bytes(nc, nt, heads) / GIB
            record = {"backend": backend, "nc": nc, "nt": nt, "mode": "cached"}
            record.update(status="skipped", note=f"skipped: would need {need:.3g} GiB")
        else:
            forward = _find(done, backend, nc, nt)
            slow = forward is None or forward.get("status") != "ok"
            slow = slow or forward["time_s"] * (args.repeats + 1) > args.budget_s / 4
            record = measure(args, backend, nc, nt, cached=True, full_warmup=not slow)
        cached.append(record)
        print(_one_line(record), file=sys.stderr, flush=True)
    return {"results": done, "cached": cached, "memory_limit_bytes": limit}


def plan_and_measure(args, backend, nc, nt, heads, limit, done) -> dict[str, Any]:
    """Skip what cannot fit or would exceed the time budget; measure the rest."""
    base = {"backend": backend, "nc": nc, "nt": nt, "mode": "forward"}
    if backend == "softmax" and dense_bias_bytes(nc, nt, heads) > limit:
        need = dense_bias_bytes(nc, nt, heads) / GIB
        return {**base, "status": "skipped", "note": f"skipped: would need {need:.3g} GiB"}
    estimate = estimate_time(backend, nc, nt, done)
    if estimate is not None and estimate > args.budget_s:
        record = {**base, "status": "skipped", "estimate_s": estimate}
        record["note"] = f"skipped: estimated {estimate:.0f} s > budget {args.budget_s:.0f} s"
        memory = estimate_memory(backend, nc, nt, done)
        if memory is not None:
            record["estimate_peak_mem_bytes"] = memory
        if args.probe_s > 0 and args.isolate:
            # A run cut short after probe_s seconds: its peak is a lower bound.
            probe = measure(
                args, backend, nc, nt, full_warmup=False, progress_s=2.0, timeout=args.probe_s
            )
            if "partial_peak_mem_bytes" in probe:
                record["partial_peak_mem_bytes"] = probe["partial_peak_mem_bytes"]
                record["partial_s"] = probe["partial_s"]
        return record
    full_warmup = estimate is None or estimate * (args.repeats + 1) < args.budget_s / 4
    record = measure(args, backend, nc, nt, full_warmup=full_warmup)
    if estimate is not None:
        record["estimate_s"] = estimate
    return record


# ----------------------------------------------------------------------------- reporting
def _fmt_time(record: dict[str, Any]) -> str:
    if record.get("status") == "ok":
        return f"{record['time_s']:.3g}"
    if "estimate_s" in record:
        return f"(~{record['estimate_s']:.3g})"
    return "-"


def _fmt_mem(record: dict[str, Any], key: str = "peak_mem_bytes") -> str:
    if record.get("status") == "ok":
        return f"{record[key] / MIB:.0f}"
    parts = []
    if "estimate_peak_mem_bytes" in record:
        parts.append(f"(~{record['estimate_peak_mem_bytes'] / MIB:.0f})")
    if "partial_peak_mem_bytes" in record:
        parts.append(f">= {record['partial_peak_mem_bytes'] / MIB:.0f}")
    return " ".join(parts) or "-"


def _one_line(record: dict[str, Any]) -> str:
    return (
        f"{record['backend']:>9} nC={record['nc']:>8} nT={record['nt']:>6} "
        f"{record.get('status')}: time {_fmt_time(record)} s, mem {_fmt_mem(record)} MiB "
        f"{record.get('note', '')}"
    )


def markdown(report: dict[str, Any]) -> str:
    rows = [
        "| backend | nT | nC | time (s) | peak mem (MiB) | repeats | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        rows.append(
            f"| {r['backend']} | {r['nt']} | {r['nc']} | {_fmt_time(r)} | {_fmt_mem(r)} | "
            f"{r.get('repeats', '')} | {r.get('note', '')} |"
        )
    rows += [
        "",
        "| backend | nC | nT | forward (s) | encode (s) | cached predict (s) | speedup | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["cached"]:
        if r.get("status") == "ok":
            rows.append(
                f"| {r['backend']} | {r['nc']} | {r['nt']} | {r['time_s']:.3g} | "
                f"{r['encode_s']:.3g} | {r['predict_s']:.3g} | {r['speedup']:.1f}x | |"
            )
        else:
            rows.append(
                f"| {r['backend']} | {r['nc']} | {r['nt']} | - | - | - | - | {r.get('note', '')} |"
            )
    rows += ["", "Targets:"]
    rows += [f"- {k}: {v['verdict']}" for k, v in report["targets"].items()]
    rows.append("")
    rows.append("(~x): extrapolated, not measured; >= x: peak of a run cut short (lower bound).")
    return "\n".join(rows)


def _find(records, backend, nc, nt):
    for r in records:
        if (r["backend"], r["nc"], r["nt"]) == (backend, nc, nt):
            return r
    return None


def evaluate_targets(report: dict[str, Any]) -> dict[str, Any]:
    """The three targets: scan fits where softmax cannot, DKA is linear, caching pays."""
    results, targets = report["results"], {}
    scan = _find(results, "scan", 100_000, 10_000)
    soft = _find(results, "softmax", 100_000, 10_000)
    if scan is None:
        verdict = "not in this grid"
    elif scan["status"] == "ok":
        ok = scan["peak_mem_bytes"] < 4 * GIB
        verdict = f"{'met' if ok else 'NOT met'}: measured {scan['peak_mem_bytes'] / GIB:.2f} GiB"
    else:
        verdict = "not measured (" + scan.get("note", "") + ")"
        if "estimate_peak_mem_bytes" in scan:
            verdict += f"; extrapolated peak {scan['estimate_peak_mem_bytes'] / GIB:.2f} GiB"
        if "partial_peak_mem_bytes" in scan:
            verdict += (
                f"; a run cut short after {scan['partial_s']:.0f} s peaked at "
                f"{scan['partial_peak_mem_bytes'] / GIB:.2f} GiB"
            )
    if soft is not None:
        verdict += f"; softmax: {soft.get('note') or soft['status']}"
    targets["scan nC=1e5 nT=1e4 under 4 GiB"] = {"verdict": verdict}

    factors = []
    for nt in sorted({r["nt"] for r in results if r["backend"] == "dka"}):
        ok_runs = sorted(
            (r for r in results if r["backend"] == "dka" and r["nt"] == nt and r["status"] == "ok"),
            key=lambda r: r["nc"],
        )
        for a, b in itertools.pairwise(ok_runs):
            if a["nc"] >= 10_000:
                per_doubling = (b["time_s"] / a["time_s"]) ** (
                    math.log(2) / math.log(b["nc"] / a["nc"])
                )
                factors.append(
                    {"nt": nt, "from": a["nc"], "to": b["nc"], "per_doubling": per_doubling}
                )
    if factors:
        worst = max(f["per_doubling"] for f in factors)
        verdict = f"{'met' if worst <= 2.2 else 'NOT met'}: worst {worst:.2f}x per doubling of nC"
    else:
        verdict = "no DKA measurements from nC=1e4 up"
    targets["dka doubling nC costs <= 2.2x from 1e4"] = {"verdict": verdict, "factors": factors}

    speedups = {r["backend"]: r.get("speedup") for r in report["cached"] if r.get("status") == "ok"}
    if speedups:
        worst = min(speedups.values())
        listed = ", ".join(f"{k} {v:.1f}x" for k, v in speedups.items())
        verdict = f"{'met' if worst >= 5 else 'NOT met'} ({listed})"
    else:
        verdict = "no cached measurements"
    nc, nt = report["args"]["cached"]
    targets[f"cached predict >= 5x faster than forward (nC={nc}, nT={nt})"] = {
        "verdict": verdict,
        "speedups": speedups,
    }
    return targets


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = dict(zip(ATTENTION_BACKENDS, ("C0", "C1", "C2", "C3"), strict=True))
    styles = ["-", "--", ":", "-."]
    nts = sorted({r["nt"] for r in report["results"]})
    for backend in ATTENTION_BACKENDS:
        for i, nt in enumerate(nts):
            rows = sorted(
                (r for r in report["results"] if r["backend"] == backend and r["nt"] == nt),
                key=lambda r: r["nc"],
            )
            ok = [r for r in rows if r["status"] == "ok"]
            if not ok:
                continue
            style = dict(color=colors[backend], linestyle=styles[i % len(styles)])
            label = f"{backend}, nT={nt}"
            ax_t.plot([r["nc"] for r in ok], [r["time_s"] for r in ok], "o", label=label, **style)
            mem = [r["peak_mem_bytes"] / MIB for r in ok]
            ax_m.plot([r["nc"] for r in ok], mem, "o", label=label, **style)
            est = [r for r in rows if "estimate_s" in r and r["status"] != "ok"]
            if est:
                xs = [ok[-1]["nc"]] + [r["nc"] for r in est]
                ys = [ok[-1]["time_s"]] + [r["estimate_s"] for r in est]
                ax_t.plot(xs, ys, color=colors[backend], linestyle=":", marker="o", mfc="none")
            est = [r for r in rows if "estimate_peak_mem_bytes" in r]
            if est:
                xs = [ok[-1]["nc"]] + [r["nc"] for r in est]
                ys = [ok[-1]["peak_mem_bytes"] / MIB] + [
                    r["estimate_peak_mem_bytes"] / MIB for r in est
                ]
                ax_m.plot(xs, ys, color=colors[backend], linestyle=":", marker="o", mfc="none")
            for r in rows:
                if "would need" in r.get("note", ""):
                    need = dense_bias_bytes(r["nc"], r["nt"], report["config"]["num_heads"])
                    ax_m.plot(r["nc"], need / MIB, "x", color=colors[backend], ms=9)
                if "partial_peak_mem_bytes" in r:
                    ax_m.plot(
                        r["nc"], r["partial_peak_mem_bytes"] / MIB, "^", color=colors[backend]
                    )
    ax_t.set(xscale="log", yscale="log", xlabel="context points nC", ylabel="forward time (s)")
    ax_m.set(xscale="log", yscale="log", xlabel="context points nC", ylabel="peak memory (MiB)")
    ax_t.set_title(f"TNP-KR forward, {report['device_name']}")
    ax_m.axhline(4 * GIB / MIB, color="gray", linestyle="--", linewidth=1)
    ax_m.set_title(
        "peak memory (hollow: extrapolated, ^: lower bound,\n"
        "x: softmax dense bias alone; dashed: 4 GiB)",
        fontsize=10,
    )
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--single", nargs=3, metavar=("BACKEND", "NC", "NT"))
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--backends", nargs="+", default=list(ATTENTION_BACKENDS))
    parser.add_argument("--nc", nargs="+", type=int, default=None, help="context sizes")
    parser.add_argument("--dka-nc", nargs="*", type=int, default=None, help="extra DKA sizes")
    parser.add_argument("--nt", nargs="+", type=int, default=None, help="test sizes")
    parser.add_argument("--cached", nargs=2, type=int, default=None, metavar=("NC", "NT"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=600.0, help="time budget per config")
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="softmax dense-bias limit (default 8 on CPU, half the GPU on CUDA)",
    )
    parser.add_argument(
        "--probe-s",
        type=float,
        default=0.0,
        help="for configs skipped for time: a run cut short after this many "
        "seconds gives a lower bound of the peak memory (0: off)",
    )
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one subprocess per config (default: on, off with --quick)",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        default=None,
        metavar="JSON",
        help="re-evaluate targets, redraw the plot and print the table of an earlier run",
    )
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--small-warmup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--single-cached", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--progress-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single and args.single[0] not in ATTENTION_BACKENDS:
        parser.error(f"BACKEND must be one of {ATTENTION_BACKENDS}")
    unknown = set(args.backends) - set(ATTENTION_BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; allowed: {ATTENTION_BACKENDS}")
    quick = args.quick
    defaults = {
        "nc": [64, 256] if quick else [100, 1_000, 10_000, 100_000],
        "dka_nc": [1_024] if quick else [1_000_000],
        "nt": [32] if quick else [1_000, 10_000],
        "cached": [256, 32] if quick else [10_000, 1_000],
        "isolate": not quick,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.repeats = min(args.repeats, 2)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.report_only is not None:
        report = json.loads(args.report_only.read_text())
        report["targets"] = evaluate_targets(report)
        args.report_only.write_text(json.dumps(report, indent=2) + "\n")
        plot(report, args.report_only.with_suffix(".png"))
        print(markdown(report))
        return report
    device = pick_device(args.device)
    if args.single:
        backend, nc, nt = args.single[0], int(args.single[1]), int(args.single[2])
        record = run_single(
            backend,
            nc,
            nt,
            device,
            args.repeats,
            args.budget_s,
            full_warmup=not args.small_warmup,
            cached=args.single_cached,
            progress_s=args.progress_s,
        )
        print(json.dumps(record), flush=True)
        return record
    started = time.time()
    report: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        # A fixed glibc mmap threshold returns freed tensors to the OS at once, so that the
        # CPU resident set tracks live memory instead of what the allocator keeps cached.
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "bf16_autocast": device.type == "cuda",
        "config": TNPKRConfig().to_dict(),
        "batch": BATCH,
        "d": DIM,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    report.update(run_grid(args))
    report["targets"] = evaluate_targets(report)
    report["wall_s"] = time.time() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("quick" if args.quick else "")
    stem = f"attention_scaling_{device.type}{'_' + tag if tag else ''}"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out_dir / f"{stem}.png")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
