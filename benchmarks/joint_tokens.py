"""How should sampled points enter the history in joint (autoregressive) mode?

Measured with a shipped checkpoint on GP tasks whose exact joint posterior is known (the
oracle): pairs of test points at distances from 1e-4 to "far" (independent uniform points),
``S`` joint samples per pair, and for each variant

* ``corr``: the sample correlation of ``f(x1), f(x2)`` against the oracle GP's correlation;
* ``dmean``: |mean of the samples of ``f(x2)`` - the independent prediction| / its sd;
* ``var_ratio``: variance of the samples of ``f(x2)`` / the independent variance
  (point 1 is drawn from the independent predictive, so only point 2 can disagree).

Variants: sampled values enter as tokens with inferred noise (``unknown``) or with a known
noise of ``1e-4 y_scale^2`` (``known``), causally (the history's encoding is reused), with
or without centring (``nn.causal.sample_autoregressive(centre=True)``); ``full`` re-encodes
the history plus the sampled point for every path (exact conditioning through the network,
O(S n^2) per point: the reference the causal variants approximate).

Tasks: Matern-5/2 GPs on the unit cube, d in {1, 3}, n in {16, 64}, noise variance in
{1e-4, 1e-2} (signal variance 1); histories with inferred noise, and (d = 3) histories with
known noise (``train_Yvar``).

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/joint_tokens.py            # about 15 min
    python benchmarks/joint_tokens.py --smoke --out-dir /tmp/jt             # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._measure import machine_facts  # noqa: E402
from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.nn import TNPKR  # noqa: E402
from botorch_tnpkr.nn.causal import sample_autoregressive  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
KNOWN = 1e-4
# name -> (known noise of sampled tokens, centre)
CAUSAL = {
    "unknown": (None, False),
    "known": (KNOWN, False),
    "unknown+centre": (None, True),
    "known+centre": (KNOWN, True),
}


def matern52(x1: Tensor, x2: Tensor, lengthscale: float) -> Tensor:
    r = math.sqrt(5) * torch.cdist(x1 / lengthscale, x2 / lengthscale)
    return (1 + r + r**2 / 3) * torch.exp(-r)


def oracle_correlation(xc, yc, xq, lengthscale, noise) -> Tensor:
    """Posterior correlation of f at the two points of each pair `P x 2 x d`."""
    chol = torch.linalg.cholesky(matern52(xc, xc, lengthscale) + noise * torch.eye(len(xc)))
    out = []
    for pair in xq:
        v = torch.linalg.solve_triangular(chol, matern52(xc, pair, lengthscale), upper=False)
        cov = matern52(pair, pair, lengthscale) - v.T @ v
        out.append(cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt())
    return torch.stack(out)


def pair_stats(f1: Tensor, f2: Tensor, mean2: Tensor, var2: Tensor):
    """Correlation, |mean shift| / sd and variance ratio per pair from `P x S` samples."""
    c1, c2 = f1 - f1.mean(-1, keepdim=True), f2 - f2.mean(-1, keepdim=True)
    corr = (c1 * c2).mean(-1) / (c1.pow(2).mean(-1) * c2.pow(2).mean(-1)).sqrt()
    shift = (f2.mean(-1) - mean2).abs() / var2.sqrt()
    return corr, shift, f2.var(-1) / var2


def run_setting(net: TNPKR, d: int, n: int, noise: float, known_history: bool, args) -> list:
    lengthscale = 0.15 if d == 1 else 0.4
    gen = torch.Generator().manual_seed(1000 * d + n + int(known_history))
    xc = torch.rand(n, d, generator=gen)
    deltas: list[float | None] = [1e-4, 0.25, 0.5, 1.0, 2.0, None]  # in lengthscales
    x1 = torch.rand(args.pairs, d, generator=gen)
    pairs = []
    for delta in deltas:
        if delta is None:
            x2 = torch.rand(args.pairs, d, generator=gen)
        else:
            u = torch.randn(args.pairs, d, generator=gen)
            x2 = (x1 + delta * lengthscale * u / u.norm(dim=-1, keepdim=True)).clamp(0, 1)
        pairs.append(torch.stack([x1, x2], 1))
    xq = torch.cat(pairs)  # (P, 2, d)
    P = xq.shape[0]
    points = torch.cat([xc, xq.reshape(-1, d)])
    chol = torch.linalg.cholesky(
        matern52(points, points, lengthscale) + 1e-8 * torch.eye(len(points))
    )
    f = chol @ torch.randn(len(points), generator=gen)
    yc = f[:n] + math.sqrt(noise) * torch.randn(n, generator=gen)
    oracle = oracle_correlation(xc, yc, xq, lengthscale, noise)
    yvar = torch.full((1, n), noise) if known_history else None
    cache = net.encode(xc[None], yc[None], yvar=yvar)
    indep = net.predict(cache, xq.reshape(1, -1, d))
    mean2, var2 = indep.mean.view(P, 2)[:, 1], indep.fvar.view(P, 2)[:, 1]
    z = torch.randn(1, 1, args.samples, 2, generator=gen)
    stats: dict[str, tuple] = {}
    seconds: dict[str, float] = {}
    with torch.no_grad():
        for name, (known, centre) in CAUSAL.items():
            start = time.perf_counter()
            smp = sample_autoregressive(net, cache, xq[None], z, known_noise=known, centre=centre)
            seconds[name] = time.perf_counter() - start
            stats[name] = pair_stats(smp[0, ..., 0], smp[0, ..., 1], mean2, var2)
        # Exact conditioning: re-encode the history and (x1, f1) for every path.
        sf = min(args.samples, args.full_samples)
        start = time.perf_counter()
        mean1, sd1 = indep.mean.view(P, 2)[:, :1], indep.fvar.view(P, 2)[:, :1].sqrt()
        f1 = mean1 + sd1 * z[0, 0, :sf, 0]  # (P, sf)
        xs = torch.cat([xc.expand(P, sf, n, d), xq[:, None, :1].expand(P, sf, 1, d)], 2)
        ys = torch.cat([yc.expand(P, sf, n), f1.unsqueeze(-1)], 2)
        yvs = None
        if known_history:
            added = KNOWN * cache.y_scale.item() ** 2
            yvs = torch.cat([torch.full((P, sf, n), noise), torch.full((P, sf, 1), added)], 2)
            yvs = yvs.reshape(P * sf, n + 1)
        pred = net(
            xs.reshape(P * sf, n + 1, d),
            ys.reshape(P * sf, n + 1),
            xq[:, None, 1:].expand(P, sf, 1, d).reshape(P * sf, 1, d),
            yvar=yvs,
        )
        f2 = pred.mean.view(P, sf) + pred.fvar.sqrt().view(P, sf) * z[0, 0, :sf, 1]
        seconds["full"] = time.perf_counter() - start
        stats["full"] = pair_stats(f1, f2, mean2, var2)
    rows = []
    for name, (corr, shift, ratio) in stats.items():
        for i, delta in enumerate(deltas):
            part = slice(i * args.pairs, (i + 1) * args.pairs)
            rows.append(
                {
                    "d": d,
                    "n": n,
                    "noise": noise,
                    "history": "known" if known_history else "inferred",
                    "variant": name,
                    "delta": "far" if delta is None else delta,
                    "oracle_corr": oracle[part].mean().item(),
                    "corr": corr[part].mean().item(),
                    "corr_abs_err": (corr[part] - oracle[part]).abs().mean().item(),
                    "dmean": shift[part].mean().item(),
                    "var_ratio": ratio[part].mean().item(),
                    "seconds": seconds[name],
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over settings per (history, variant, delta), and per (history, variant)."""
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[(row["history"], row["variant"], str(row["delta"]))].append(row)
        groups[(row["history"], row["variant"], "all")].append(row)
    out = []
    for (history, variant, delta), members in groups.items():
        mean = {
            k: sum(r[k] for r in members) / len(members)
            for k in ("oracle_corr", "corr", "corr_abs_err", "dmean", "var_ratio")
        }
        out.append(
            {
                "history": history,
                "variant": variant,
                "delta": delta,
                **mean,
                "settings": len(members),
            }
        )
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| history noise | variant | corr at 1e-4 ls (oracle) | corr at 1 ls (oracle) | "
        "corr far (oracle) | mean abs corr error | mean |dmean|/sd | mean var ratio |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    table = {(s["history"], s["variant"], s["delta"]): s for s in summary}
    for history in ("inferred", "known"):
        for variant in (*CAUSAL, "full"):
            if (history, variant, "all") not in table:
                continue
            cells = []
            for delta in ("0.0001", "1.0", "far"):
                s = table[(history, variant, delta)]
                cells.append(f"{s['corr']:.2f} ({s['oracle_corr']:.2f})")
            a = table[(history, variant, "all")]
            lines.append(
                f"| {history} | {variant} | {' | '.join(cells)} | "
                f"{a['corr_abs_err']:.3f} | {a['dmean']:.3f} | {a['var_ratio']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="tnpkr-exact")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--full-samples", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--smoke", action="store_true", help="one tiny setting (seconds)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _run(args)
    finally:
        torch.set_default_dtype(previous)  # callers (the tests) keep their default


def _run(args: argparse.Namespace) -> dict[str, Any]:
    net = load_checkpoint(args.checkpoint).double().eval()
    net.requires_grad_(False)
    settings = [(d, n, noise, False) for d in (1, 3) for n in (16, 64) for noise in (1e-4, 1e-2)]
    settings += [(3, n, noise, True) for n in (16, 64) for noise in (1e-4, 1e-2)]
    if args.smoke:
        settings = [(2, 8, 1e-2, False), (2, 8, 1e-2, True)]
        args.samples, args.full_samples, args.pairs = 32, 16, 2
    rows = []
    start = time.perf_counter()
    for d, n, noise, known in settings:
        rows += run_setting(net, d, n, noise, known, args)
        print(
            f"d={d} n={n} noise={noise} known={known}: {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = summarise(rows)
    report = {
        "checkpoint": args.checkpoint,
        "samples": args.samples,
        "full_samples": args.full_samples,
        "pairs_per_distance": args.pairs,
        "known_noise": KNOWN,
        "machine": machine_facts(torch.device("cpu")),
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
        "summary": summary,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = "joint_tokens_cpu_smoke.json" if args.smoke else "joint_tokens_cpu.json"
    (args.out_dir / name).write_text(json.dumps(report, indent=1))
    print(markdown(summary))
    return report


if __name__ == "__main__":
    main()
