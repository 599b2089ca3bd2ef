"""The paper's scale headline: encode 100K context points, predict at 1M test points.

Times ``TNPKR.encode`` of ``--nc`` context points and ``TNPKR.predict`` at ``--nt`` test points
(in chunks of ``--test-chunk``, written into preallocated output tensors) with the shipped
networks: ``tnpkr-exact`` in ``scan`` mode (exact attention, tile by tile; ``--scan-chunk``
queries x keys per tile) and ``tnpkr-dka`` (linear attention). Inputs are those of
``benchmarks/attention_scaling.py`` (batch 1, d = 2, a noisy sine). Each precision is timed
``--repeats`` times after a small warm-up, under ``torch.no_grad()``:

* ``float32``; on CUDA with TF32 matmuls;
* ``bf16``: ``torch.autocast`` to bfloat16 (default on CUDA only); its predictions at the
  first ``--check-points`` test points are compared with the float32 ones (mean absolute
  difference of the mean in units of the context's standard deviation, and of log variance),
  so that a network that does not support bf16 shows it.

With CUDA available it runs at the headline scale (nC = 100,000, nT = 1,000,000) and checks
the target (encode + predict under 10 s); on CPU it runs at a smaller scale (nC = 10,000,
nT = 100,000) and records those figures. The JSON records the device.

Usage:
    python benchmarks/gpu_scale.py                      # GPU when available, else CPU scale
    python benchmarks/gpu_scale.py --smoke --out-dir /tmp/gpu   # seconds (CPU, bf16 path too)

Writes ``gpu_scale_<device>[_smoke].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
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
from benchmarks.attention_scaling import PeakMemory, make_inputs, pick_device  # noqa: E402
from botorch_tnpkr.checkpoints import checkpoint_info, load_checkpoint  # noqa: E402
from botorch_tnpkr.nn import TNPKR  # noqa: E402
from botorch_tnpkr.nn.attention.exact import ExactAttention  # noqa: E402

BACKENDS = {"scan": "tnpkr-exact", "dka": "tnpkr-dka"}
TARGET_S = 10.0
HEADLINE = (100_000, 1_000_000)
WARMUP = 512


def load_network(backend: str, device: torch.device, scan_chunk: int | None) -> TNPKR:
    """The shipped network of a backend, float32 on ``device``; scan tiles of ``scan_chunk``."""
    network = load_checkpoint(BACKENDS[backend]).to(device=device, dtype=torch.float32).eval()
    network.requires_grad_(False)
    if backend == "scan":
        network.set_exact_backend("scan")
        if scan_chunk is not None:
            for module in network.modules():
                if isinstance(module, ExactAttention):
                    module.chunk = scan_chunk
    return network


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encode_and_predict(
    network: TNPKR, xc: torch.Tensor, yc: torch.Tensor, xt: torch.Tensor, test_chunk: int
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """One timed pass: encode the context, predict every test point chunk by chunk.

    Returns:
        The seconds of ``encode`` and ``predict``, and the `1 x nT` mean and variance (float32).
    """
    device = xc.device
    mean = torch.empty(xt.shape[:2], device=device)
    var = torch.empty(xt.shape[:2], device=device)
    _sync(device)
    start = time.perf_counter()
    cache = network.encode(xc, yc)
    _sync(device)
    encoded = time.perf_counter()
    for lo in range(0, xt.shape[1], test_chunk):
        pred = network.predict(cache, xt[:, lo : lo + test_chunk])
        mean[:, lo : lo + test_chunk] = pred.mean.float()
        var[:, lo : lo + test_chunk] = pred.yvar.float()
    _sync(device)
    done = time.perf_counter()
    return {"encode_s": encoded - start, "predict_s": done - encoded}, mean, var


def run_config(
    backend: str,
    precision: str,
    nc: int,
    nt: int,
    device: torch.device,
    args: argparse.Namespace,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
    """Time one (backend, precision) at (nC, nT); returns the record and the checked outputs."""
    network = load_network(backend, device, args.scan_chunk)
    xc, yc, xt = make_inputs(nc, nt, device)
    record: dict[str, Any] = {
        "backend": backend,
        "checkpoint": BACKENDS[backend],
        "checkpoint_step": checkpoint_info(BACKENDS[backend]).get("step"),
        "precision": precision,
        "nc": nc,
        "nt": nt,
        "test_chunk": args.test_chunk,
        "scan_chunk": args.scan_chunk if backend == "scan" else None,
    }
    timings = []
    with torch.no_grad(), precision_context(device, precision):
        small = min(WARMUP, nc)
        network.predict(network.encode(xc[:, :small], yc[:, :small]), xt[:, :WARMUP])
        with PeakMemory(device) as memory:
            for _ in range(args.repeats):
                times, mean, var = encode_and_predict(network, xc, yc, xt, args.test_chunk)
                timings.append(times)
                if sum(times.values()) > args.budget_s:
                    break
    total = [t["encode_s"] + t["predict_s"] for t in timings]
    record.update(
        status="ok",
        repeats=len(timings),
        encode_s=statistics.median(t["encode_s"] for t in timings),
        predict_s=statistics.median(t["predict_s"] for t in timings),
        total_s=statistics.median(total),
        times=timings,
        peak_mem_bytes=int(memory.peak),
        finite=bool(torch.isfinite(mean).all() and torch.isfinite(var).all() and (var > 0).all()),
    )
    record["test_points_per_s"] = nt / record["predict_s"]
    k = min(args.check_points, nt)
    checked = (mean[:, :k].cpu(), var[:, :k].cpu())
    if reference is not None:
        scale = float(yc.float().std())
        record["vs_float32"] = {
            "points": k,
            "mean_abs_diff_in_y_std": float((checked[0] - reference[0]).abs().mean() / scale),
            "log_var_abs_diff": float((checked[1].log() - reference[1].log()).abs().mean()),
        }
    return record, checked


def evaluate_target(records: list[dict[str, Any]], device: torch.device) -> dict[str, str]:
    """The headline target per (backend, precision), or why it was not measured."""
    verdicts = {}
    for r in records:
        key = f"{r['backend']} {r['precision']}"
        if r.get("status") != "ok":
            verdicts[key] = f"not measured ({r.get('status')})"
        elif device.type != "cuda" or r["nc"] < HEADLINE[0] or r["nt"] < HEADLINE[1]:
            verdicts[key] = (
                f"not measured on a GPU at the headline scale (this run: {device.type}, "
                f"nC={r['nc']:,}, nT={r['nt']:,}, {r['total_s']:.1f} s)"
            )
        else:
            met = r["total_s"] < TARGET_S and r["finite"]
            verdicts[key] = f"{'met' if met else 'NOT met'} ({r['total_s']:.2f} s)"
    return verdicts


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['device_name']} ({report['device']}), nC = {report['nc']:,}, "
        f"nT = {report['nt']:,}, test chunk {report['test_chunk']:,}",
        "",
        "| backend | precision | encode s | predict s | total s | test points/s | peak memory "
        "| finite | vs float32 (mean diff / y std, log-var diff) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["results"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['backend']} | {r['precision']} | {r.get('status')} |||||||")
            continue
        check = r.get("vs_float32")
        diff = "-" if check is None else (
            f"{check['mean_abs_diff_in_y_std']:.2g}, {check['log_var_abs_diff']:.2g}"
        )  # fmt: skip
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r['encode_s']:.2f} | {r['predict_s']:.2f} "
            f"| {r['total_s']:.2f} | {r['test_points_per_s']:,.0f} | "
            f"{r['peak_mem_bytes'] / 2**20:,.0f} MiB | {r['finite']} | {diff} |"
        )
    lines += ["", f"Target (nC = 100K, nT = 1M in under {TARGET_S:.0f} s on a GPU):"]
    lines += [f"- {key}: {verdict}" for key, verdict in report["targets"].items()]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--nc", type=int, default=None, help="CUDA 100,000; CPU 10,000")
    parser.add_argument("--nt", type=int, default=None, help="CUDA 1,000,000; CPU 100,000")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["float32", "bf16"],
        default=None,
        help="default: float32 and bf16 on CUDA, float32 on CPU",
    )
    parser.add_argument("--test-chunk", type=int, default=None, help="default 262,144")
    parser.add_argument(
        "--scan-chunk", type=int, default=None, help="scan tile size (CUDA 8,192; CPU: network's)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="CUDA 3, CPU 1")
    parser.add_argument("--budget-s", type=float, default=300.0, help="no repeat after this")
    parser.add_argument("--check-points", type=int, default=4096)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, bf16 path on CPU")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    cuda = pick_device(args.device).type == "cuda"
    defaults = {
        "nc": 256 if args.smoke else (HEADLINE[0] if cuda else 10_000),
        "nt": 2_000 if args.smoke else (HEADLINE[1] if cuda else 100_000),
        "precisions": ["float32", "bf16"] if (cuda or args.smoke) else ["float32"],
        "test_chunk": 700 if args.smoke else 262_144,
        "scan_chunk": 8_192 if cuda else None,
        "repeats": 3 if cuda else 1,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.time()
    records = []
    for backend in args.backends:
        reference = None
        for precision in args.precisions:
            try:
                record, checked = run_config(
                    backend, precision, args.nc, args.nt, device, args, reference
                )
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                record = {"backend": backend, "precision": precision, "nc": args.nc}
                record.update(nt=args.nt, status="error", note=f"{type(err).__name__}: {err}")
                checked = None
            if precision == "float32":
                reference = checked
            records.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "times"}), file=sys.stderr)
    report = {
        "benchmark": "gpu_scale",
        **machine_facts(device),
        "nc": args.nc,
        "nt": args.nt,
        "test_chunk": args.test_chunk,
        "scan_chunk": args.scan_chunk,
        "repeats": args.repeats,
        "smoke": args.smoke,
        "wall_s": None,
        "results": records,
    }
    report["targets"] = evaluate_target(records, device)
    report["wall_s"] = time.time() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_scale_{device.type}" + ("_smoke" if args.smoke else "")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out_dir / f"{stem}.md").write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
