"""Do a network's ARD distances respond to the task? Scales on anisotropic vs isotropic tasks.

An ARD network (``TNPKRConfig.ard_bias``) stretches each input dimension of its kernel-bias
distances by factors its key tokens compute. If those factors follow the task, a context whose
function varies along one dimension only should get a larger factor for that dimension than
an isotropic context on the same inputs. For each d, seed and block this encodes both
contexts (the same ``xc``; ``y = sin(w x_0)`` against ``y = sin(w sum_j x_j / sqrt(d))``) and
reports, per block, the largest over heads of

    log(s_0 / mean_j>0 s_j) on the anisotropic task  -  the same on the isotropic task,

the factors averaged over the context's keys. Zero means the factors ignore the task; a
network that follows the lengthscales gives clearly positive values (its relevant dimension
stretched, the others shrunk).

Usage:
    python benchmarks/ard_response.py --checkpoints tnpkr-exact runs/exact-ard-lr/best.safetensors
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

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.nn import TNPKR, load_network  # noqa: E402


def load(spec: str) -> TNPKR:
    network = load_network(spec) if spec.endswith(".safetensors") else load_checkpoint(spec)
    return network.eval()


def mean_log_ratio(network: TNPKR, xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
    """`num_blocks x H`: log of dimension 0's mean factor over the other dimensions' mean."""
    d = xc.shape[-1]
    with torch.no_grad():
        cache = network.encode(xc, yc)
    rows = []
    for memory in cache.memories:
        geometry = memory[5]  # B x H x n x (2 max_dim + 1); the first max_dim are s^2
        s = geometry[..., :d].sqrt().mean(dim=(0, 2))  # H x d
        rows.append((s[:, 0] / s[:, 1:].mean(-1)).log())
    return torch.stack(rows)


def response(network: TNPKR, dims: Sequence[int], seeds: int, n: int) -> dict[str, Any]:
    """Per d: the per-block response (largest over heads), averaged over seeds."""
    if not network.config.ard_bias:
        raise SystemExit("this network has no ARD distances (TNPKRConfig.ard_bias is False)")
    out: dict[str, Any] = {}
    for d in dims:
        per_seed = []
        for seed in range(seeds):
            gen = torch.Generator().manual_seed(seed)
            xc = torch.rand(1, n, d, generator=gen)
            freq = 6.0 + 6.0 * float(torch.rand((), generator=gen))
            aniso = torch.sin(freq * xc[..., 0])
            iso = torch.sin(freq * xc.sum(-1) / math.sqrt(d))
            diff = mean_log_ratio(network, xc, aniso) - mean_log_ratio(network, xc, iso)
            per_seed.append(diff.max(dim=-1).values)  # num_blocks
        blocks = torch.stack(per_seed).mean(0)
        out[str(d)] = [round(float(v), 4) for v in blocks]
    return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 6])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--n", type=int, default=256, help="context points per task")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = []
    for spec in args.checkpoints:
        by_dim = response(load(spec), args.dims, args.seeds, args.n)
        overall = statistics.mean(v for values in by_dim.values() for v in values)
        records.append({"checkpoint": spec, "response_by_dim": by_dim, "mean": overall})
        print(f"{spec}: mean response {overall:+.4f}")
        for d, values in by_dim.items():
            print(f"  d={d}: per block " + " ".join(f"{v:+.3f}" for v in values))
    if args.out is not None:
        args.out.write_text(json.dumps(records, indent=2))
    return records


if __name__ == "__main__":
    main()
