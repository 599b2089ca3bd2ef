"""CPU cost of exact attention when its bias needs a gradient: our batched path against SDPA.

When the kernel bias requires a gradient (training; BoTorch's gradients with respect to the
candidate inputs), ``ExactAttention`` on the CPU computes ``softmax(q k^T / sqrt(Dh) + bias) v``
with ``baddbmm``/``softmax``/``bmm``, skips the mask fill when every key is valid and skips
log-n scaling when no read exceeds the trained context. The reference is what it did before:
the bias multiplied by log-n factors of exactly 1, the fill, then
``scaled_dot_product_attention``, which falls back to its math path (masking and
safe-softmax passes) for a bias with a gradient. Both compute the same function
(``tests/nn/test_biased_attention.py``).

Two workloads, each timed ``--repeats`` times with the two variants interleaved (medians and
their ratio, measured side by side):

* ``train``: forward + backward of one training batch of ``--preset``'s network (its batch
  size and number of targets; d = ``--dim`` or the prior's largest) at each of ``--sizes``
  context sizes, randomly initialised weights (speed does not depend on them);
* ``posterior``: a BO step's gradient call: ``TNPKRModel`` with the shipped ``tnpkr-exact``
  on ``--history`` points in d = ``--dim`` (float64), the posterior mean and variance of
  ``--restarts`` x q=1 candidates and their gradient with respect to the candidates.

Usage:
    python benchmarks/train_step.py                          # exact-deeper, nC = 64, 256, 512
    python benchmarks/train_step.py --quick --out-dir /tmp/ts

Writes ``train_step_cpu[_quick].json`` and ``.md`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr import TNPKRModel  # noqa: E402
from botorch_tnpkr.nn import TNPKR  # noqa: E402
from botorch_tnpkr.nn.attention.exact import (  # noqa: E402
    ExactAttention,
    masked_fill_value,
)
from botorch_tnpkr.priors import sample_tasks, standardize_batch  # noqa: E402
from botorch_tnpkr.train.objective import oracle_gap  # noqa: E402
from botorch_tnpkr.train.presets import get_preset  # noqa: E402

VARIANTS = ("ours", "sdpa")


def _sdpa_softmax(self, q, k, v, xq, xk, mask, scale, geometry=None):
    """The reference read, as the code did before: log-n factors of 1 up to the trained size
    multiplied in, the bias always mask-filled, then SDPA (the bias's distances, isotropic or
    ARD, as the network computes them)."""
    bias = self.bias(self.distance(xq, xk, geometry))
    if scale is None and self.trained_context is not None:
        scale = torch.ones(bias.shape[0], dtype=bias.dtype)
    if scale is not None:
        bias = bias * scale.view(-1, 1, 1, 1)
    bias = bias.masked_fill(~mask[:, None, None, :], masked_fill_value(bias.dtype))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Run exact attention as shipped (``ours``) or through the reference (``sdpa``)."""
    if name == "ours":
        yield
        return
    original = ExactAttention._softmax
    ExactAttention._softmax = _sdpa_softmax
    try:
        yield
    finally:
        ExactAttention._softmax = original


def time_interleaved(fn: Callable[[], None], repeats: int) -> dict[str, float]:
    """Median seconds of ``fn`` under each variant, the variants alternating (one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for repeat in range(repeats + 1):
        for name in VARIANTS:
            with variant(name):
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
            if repeat:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        **{f"{n}_s": v for n, v in medians.items()},
        "speedup": medians["sdpa"] / medians["ours"],
    }


def train_records(preset_name: str, sizes: Sequence[int], dim: int, repeats: int) -> list[dict]:
    preset = get_preset(preset_name)
    dim = min(dim, preset.prior.max_dim)
    torch.manual_seed(0)
    network = TNPKR(preset.network_config).train()
    network.compile_bias()  # as scripts/pretrain.sh trains
    records = []
    for size in sizes:
        gen = torch.Generator().manual_seed(size)
        batch = sample_tasks(preset.prior, preset.batch_size, gen, dim=dim, num_context=size)
        batch = standardize_batch(batch) if preset.standardize else batch

        def step(batch=batch) -> None:
            network.zero_grad(set_to_none=True)
            pred = network(batch.xc, batch.yc, batch.xt, mask=batch.mask)
            oracle_gap(pred, batch, preset.f_weight, preset.gap_cap).loss.backward()

        record = {"workload": "train", "preset": preset_name, "nc": size, "dim": dim}
        records.append({**record, **time_interleaved(step, repeats)})
        print(json.dumps(records[-1]), flush=True)
    return records


def posterior_record(history: int, dim: int, restarts: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    train_x = torch.rand(history, dim, generator=gen, dtype=torch.float64)
    train_y = torch.sin(6.0 * train_x).sum(-1, keepdim=True)
    model = TNPKRModel(train_x, train_y, checkpoint="tnpkr-exact")
    candidates = torch.rand(restarts, 1, dim, generator=gen, dtype=torch.float64)

    def call() -> None:
        x = candidates.clone().requires_grad_(True)
        posterior = model.posterior(x)
        (posterior.mean.sum() + posterior.variance.sum()).backward()

    record = {"workload": "posterior", "history": history, "dim": dim, "restarts": restarts}
    return {**record, **time_interleaved(call, repeats)}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Exact attention with a bias gradient on the CPU: batched path vs SDPA",
        "",
        "Machine: {cpu_count} CPU cores ({device_name}), {torch_threads} torch thread(s), torch "
        "{torch}.".format(**report["machine"]),
        f"Medians of {report['args']['repeats']} interleaved repeats; `python "
        "benchmarks/train_step.py`.",
        "",
        "| workload | size | ours (s) | SDPA (s) | SDPA / ours |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        size = f"nC = {r['nc']}" if r["workload"] == "train" else f"n = {r['history']}"
        lines.append(
            f"| {r['workload']} | {size} | {r['ours_s']:.3f} | {r['sdpa_s']:.3f} "
            f"| {r['speedup']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="exact-deeper")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny preset, small sizes")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.sizes, args.history, args.restarts, args.repeats = (
            "tiny",
            [8, 16],
            64,
            8,
            2,
        )
    torch.set_num_threads(1)
    results = train_records(args.preset, args.sizes, args.dim, args.repeats)
    results.append(posterior_record(args.history, args.dim, args.restarts, args.repeats))
    print(json.dumps(results[-1]), flush=True)
    report = {
        "machine": machine_facts(torch.device("cpu")),
        "args": vars(args) | {"out_dir": ""},
        "results": results,
    }
    suffix = "_quick" if args.quick else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"train_step_cpu{suffix}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out_dir / f"train_step_cpu{suffix}.md").write_text(table)
    print(table)
    return report


if __name__ == "__main__":
    main()
