"""Networks on a preset's fixed validation set: the gap training logs, for any checkpoint.

Scores each of ``--checkpoints`` (registered names or ``.safetensors`` files, e.g. older
shipped networks from git) on ``validation_set(preset)``, the held-out set a training run
with that preset validates on, and prints the mean gap to the oracle per noisy target (what
the log calls ``val_gap_y``) with three groups of its batches: dense low-dimensional contexts
(d <= 3, nC >= 128), dense higher-dimensional ones (d > 3, nC >= 128) and small contexts
(nC <= 32), and the densest one-dimensional contexts (d = 1, nC >= 128: neighbours closest).
The JSON record keeps every batch's cell and gap. One network's figure equals what its run
logged at that step (the EMA weights).

Usage:
    python benchmarks/validation_gap.py --preset exact-deeper --checkpoints tnpkr-exact \\
        runs/exact-deeper/best.safetensors
    python benchmarks/validation_gap.py --preset tiny --checkpoints FILE --out /tmp/v.json

Writes a JSON record per checkpoint to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from botorch_tnpkr.checkpoints import load_checkpoint  # noqa: E402
from botorch_tnpkr.nn import TNPKR, load_network  # noqa: E402
from botorch_tnpkr.train.loop import validate, validation_cells, validation_set  # noqa: E402
from botorch_tnpkr.train.presets import get_preset  # noqa: E402

GROUPS: dict[str, Callable[[int, int], bool]] = {
    "dense, d = 1": lambda d, n: d == 1 and n >= 128,
    "dense, d <= 3": lambda d, n: d <= 3 and n >= 128,
    "dense, d > 3": lambda d, n: d > 3 and n >= 128,
    "n <= 32": lambda d, n: n <= 32,
}


def load(spec: str) -> TNPKR:
    """A registered checkpoint by name, or a network file."""
    network = load_network(spec) if spec.endswith(".safetensors") else load_checkpoint(spec)
    return network.eval()


def score(network: TNPKR, preset_name: str) -> dict[str, Any]:
    """Mean ``gap_y`` over the preset's validation batches, overall and by group."""
    preset = get_preset(preset_name)
    cells = validation_cells(preset)
    device = torch.device("cpu")
    gaps = [validate(network, [batch], device)["val_gap_y"] for batch in validation_set(preset)]
    groups = {}
    for name, member in GROUPS.items():
        values = [g for g, (d, n) in zip(gaps, cells, strict=True) if member(d, n)]
        groups[name] = statistics.mean(values) if values else None
    per_batch = [
        {"d": d, "n": n, "gap_y": g} for g, (d, n) in zip(gaps, cells, strict=True)
    ]
    return {
        "val_gap_y": statistics.mean(gaps),
        "groups": groups,
        "batches": len(gaps),
        "per_batch": per_batch,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = []
    print(f"| checkpoint | val_gap_y | {' | '.join(GROUPS)} |")
    print("|---|---:|" + "---:|" * len(GROUPS))
    for spec in args.checkpoints:
        record = {"checkpoint": spec, "preset": args.preset, **score(load(spec), args.preset)}
        records.append(record)
        cols = " | ".join("-" if v is None else f"{v:.4f}" for v in record["groups"].values())
        print(f"| {spec} | {record['val_gap_y']:.4f} | {cols} |", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(records, indent=2))
    return records


if __name__ == "__main__":
    main()
