"""``python -m botorch_tnpkr.train`` / ``tnpkr-train``: pretrain or resume a TNP-KR network.

Examples:
    python -m botorch_tnpkr.train --preset exact-small --run-dir runs/exact-small --threads 1
    python -m botorch_tnpkr.train --preset exact-small --run-dir runs/exact-small --resume
    python -m botorch_tnpkr.train --preset exact-std --run-dir runs/exact-std \
        --init-from runs/exact-small/latest.safetensors
    torchrun --nproc_per_node 2 -m botorch_tnpkr.train --preset tiny --run-dir runs/ddp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from botorch_tnpkr.errors import TNPKRError
from botorch_tnpkr.train.loop import RunOptions, train
from botorch_tnpkr.train.presets import PRESETS, get_preset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnpkr-train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--total-steps", type=int, help="schedule length (default: preset's)")
    parser.add_argument("--stop-after", type=int, help="stop at this step (train in bursts)")
    parser.add_argument("--max-minutes", type=float, help="stop after this much wall time")
    parser.add_argument("--save-every-minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 on a shared machine)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the kernel bias")
    parser.add_argument(
        "--init-from",
        help="fine-tune: start from this network (a shipped name or a .safetensors path) "
        "instead of a random initialisation; ignored with --resume",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = RunOptions(
            run_dir=args.run_dir,
            seed=args.seed,
            total_steps=args.total_steps,
            stop_after=args.stop_after,
            max_minutes=args.max_minutes,
            save_every_minutes=args.save_every_minutes,
            resume=args.resume,
            threads=args.threads,
            progress=not args.no_progress,
            compile=args.compile,
            init_from=args.init_from,
        )
        result = train(get_preset(args.preset), options)
    except TNPKRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
