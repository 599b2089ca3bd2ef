"""``python -m botorch_tnpkr.train.ship``: evaluate a run's best network and, if it beats the
shipped one, copy it into the package with its sha256 and a model card.

Example:
    python -m botorch_tnpkr.train.ship --run-dir runs/exact-small --name tnpkr-exact
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from botorch_tnpkr.checkpoints.registry import CHECKPOINT_DIR, REGISTRY_FILE, file_sha256
from botorch_tnpkr.evaluate import checkpoint_trained_context
from botorch_tnpkr.evaluate import main as evaluate_main
from botorch_tnpkr.nn import load_network, read_metadata, save_network
from botorch_tnpkr.train.presets import get_preset

MAX_BYTES = 10 * 1024 * 1024


def _card(name: str, meta: dict[str, Any], report: dict[str, Any], table: str, cmd: str) -> str:
    extra, config = meta["extra"], meta["config"]
    preset = get_preset(extra["preset"]) if extra.get("preset") else None
    s = report["summary"]
    lines = [
        f"# Model card: `{name}`",
        "",
        "A pretrained TNP-KR network for `botorch_tnpkr.TNPKRModel`.",
        "",
        "## Training",
        f"- preset: `{extra.get('preset')}`; steps: {extra.get('step')} of a "
        f"{extra.get('total_steps')}-step warm-up + cosine schedule; seed {extra.get('seed')}",
        f"- wall time in training steps: {extra.get('train_seconds', 0) / 3600:.2f} h on "
        f"{extra.get('device')} x {extra.get('world_size')} process(es); hardware: this "
        "project's 2-core CPU machine, one torch thread (shared with other work)",
        "- objective: expected NLL under the oracle GP's predictive of the noiseless and the "
        "noisy targets (a KL to the Bayes-optimal predictor); AdamW, clip, EMA weights exported",
        *([f"- fine-tuned from {extra['init_from']}"] if extra.get("init_from") else []),
        *(
            [
                f"- recipe: {preset.batch_size} tasks per step, peak lr {preset.lr:g}, contexts "
                f"up to {preset.prior.max_context} points, contexts standardised as "
                f"deployment does: {'yes' if preset.standardize else 'no'}, per-task gap cap: "
                f"{preset.gap_cap if preset.gap_cap is not None else 'none'}"
            ]
            if preset is not None
            else []
        ),
        f"- best validation gap (noisy targets, nats/point): {extra.get('best_val_gap_y'):.4f}"
        if isinstance(extra.get("best_val_gap_y"), float)
        else "- best validation gap: n/a",
        "",
        "## Architecture",
        "```json",
        json.dumps(config.to_dict(), indent=2),
        "```",
    ]
    if preset is not None:
        lines += [
            "",
            "## Training prior",
            "```json",
            json.dumps(preset.to_dict()["prior"], indent=2, default=list),
            "```",
        ]
    lines += [
        "",
        "## Evaluation against the oracle GP",
        f"Command: `{cmd}`"
        + (
            f" (SingleTaskGP scores reused from `{report['gp_from']}`, same tasks, checked by"
            " the oracle's score of every cell)"
            if report.get("gp_from")
            else ""
        ),
        "",
        "- predictions as `TNPKRModel` makes them: standardised contexts, "
        + (
            "distance scales fitted to each context (`adapt=True`, the default; `nn.adaptation`), "
            if report.get("evaluate_args", {}).get("adaptation")
            else "the network's distances (`adapt=False`), "
        )
        + "variances "
        + (
            "calibrated on each context (`calibrate=True`, the default; `nn.calibration`)"
            if report.get("evaluate_args", {}).get("calibration")
            else "as the network predicts them (`calibrate=False`)"
        ),
        f"- mean gap to the oracle: **{s['mean_gap']:.3f}** nats per target point "
        f"(SingleTaskGP: {s.get('gp_mean_gap', float('nan')):.3f})",
        f"- cells at least as good as SingleTaskGP: {s.get('share_at_least_gp', float('nan')):.0%}",
        f"- coverage of central intervals: 50% -> {s['cover50']:.3f}, 90% -> {s['cover90']:.3f}",
    ]
    if "extrapolation" in report:
        e = report["extrapolation"]
        lines.append(
            f"- beyond the trained context ({e['trained_context']}): gap {e['gap_at_trained']:.3f}"
            f" there, {e['gap_at_4x']:.3f} at 4x ({e['degradation']:+.3f})"
        )
    lines += ["", table, ""]
    return "\n".join(lines)


def _record_trained_context(path: Path) -> None:
    """Give a network exported before ``trained_context`` existed its preset's ``max_context``.

    The setting has no weights, so the file is rewritten with the same tensors and metadata;
    a file that has it, or whose preset is unknown, is left alone.
    """
    meta = read_metadata(path)
    trained = checkpoint_trained_context(str(path))  # the preset's, for such a file
    if meta["config"].trained_context is not None or trained is None:
        return
    save_network(load_network(path).with_trained_context(trained), path, extra=meta["extra"])
    print(f"{path.name}: recorded trained_context={trained} (from its preset)")


def _degradation_refusal(extrapolation: dict[str, Any] | None, limit: float | None) -> str | None:
    """Why a report fails ``--max-degradation``, or None when it passes (or no limit)."""
    if limit is None:
        return None
    if not extrapolation:
        return "--max-degradation was given but the evaluation measured no extrapolation"
    degradation = float(extrapolation["degradation"])
    if degradation > limit:
        return (
            f"the gap at 4x the trained context is {degradation:+.4f} over the trained "
            f"size's, more than --max-degradation {limit}"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tnpkr-ship", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--file", default="best.safetensors", help="file in --run-dir to ship")
    parser.add_argument(
        "--role",
        help="what the checkpoint is for, e.g. 'the default for histories up to 4,096 points' "
        "(default: the shipped entry's); the registry description is the architecture, read "
        "from the network's config, followed by this",
    )
    parser.add_argument("--force", action="store_true", help="ship even if not better")
    parser.add_argument(
        "--max-degradation",
        type=float,
        help="refuse a network whose gap at 4x the trained context exceeds its gap at the "
        "trained context by more than this (the issue's target for the default checkpoint: "
        "0.1)",
    )
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-gp", action="store_true")
    parser.add_argument("--sizes", default="8,32,128,512", help="context sizes to evaluate")
    parser.add_argument(
        "--gp-from",
        type=Path,
        help="reuse SingleTaskGP scores from an earlier evaluation report on the same tasks",
    )
    parser.add_argument(
        "--dest", type=Path, default=CHECKPOINT_DIR, help="checkpoint folder (the package's)"
    )
    args = parser.parse_args(argv)
    registry_file = args.dest / REGISTRY_FILE.name
    torch.set_num_threads(args.threads)
    source = args.run_dir / args.file
    if source.stat().st_size > MAX_BYTES:
        print(f"error: {source} is over 10 MB", file=sys.stderr)
        return 2
    out = args.run_dir / "eval" / args.file.replace(".safetensors", "")
    # A running training job may replace the file while it is evaluated: evaluate and ship
    # one snapshot of it.
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot = out.with_name(out.name + ".snapshot.safetensors")
    shutil.copyfile(source, snapshot)
    source = snapshot
    _record_trained_context(source)
    max_dim = read_metadata(source)["config"].max_dim
    dims = ",".join(str(d) for d in (1, 2, 3, 6) if d <= max_dim)
    eval_args = ["--checkpoint", str(source), "--tasks", str(args.tasks), "--out", str(out)]
    eval_args += ["--dims", dims, "--sizes", args.sizes]
    if args.no_gp:
        eval_args.append("--no-gp")
    elif args.gp_from is not None:
        eval_args += ["--gp-from", str(args.gp_from)]
    if evaluate_main(eval_args) != 0:
        return 2
    report = json.loads(out.with_suffix(".json").read_text())
    registry = json.loads(registry_file.read_text()) if registry_file.is_file() else {}
    old = registry.get(args.name, {}).get("mean_gap")
    new = report["summary"]["mean_gap"]
    evaluated = report["evaluate_args"]
    # How the predictions were made: a mean gap compares only with one made the same way.
    settings = {
        "calibrated": bool(evaluated.get("calibration", False)),
        "adapted": bool(evaluated.get("adaptation", False)),
        # The adaptation's settings (None: not adapted): a re-tuned default is another way.
        "adaptation_settings": evaluated.get("adaptation_settings"),
    }
    calibrated = settings["calibrated"]
    shipped = registry.get(args.name, {})
    # Missing, False and None all mean "not used".
    changed = [k for k, v in settings.items() if (shipped.get(k) or None) != (v or None)]
    if old is not None and changed:
        if not args.force:
            print(
                f"not shipped: the shipped {args.name}'s mean gap was measured with other "
                f"prediction settings ({', '.join(f'{k}={settings[k]}' for k in changed)} "
                "now); re-ship the shipped file with --force to measure it as the evaluation "
                "now does"
            )
            return 1
    elif old is not None and new >= old and not args.force:
        print(f"not shipped: mean gap {new:.4f} is not better than the shipped {old:.4f}")
        return 1
    refusal = _degradation_refusal(report.get("extrapolation"), args.max_degradation)
    if refusal is not None and not args.force:
        print(f"not shipped: {refusal}")
        return 1
    target = args.dest / f"{args.name}.safetensors"
    shutil.copyfile(source, target)
    meta = read_metadata(target)
    cmd = f"python -m botorch_tnpkr.evaluate --checkpoint {args.name} --tasks {args.tasks}" + (
        " --no-gp" if args.no_gp else ""
    )
    card = _card(args.name, meta, report, out.with_suffix(".md").read_text(), cmd)
    (args.dest / f"{args.name}.md").write_text(card)
    # A description is "<architecture>; <role>": the architecture is read from the network,
    # the role carried forward from the shipped entry unless --role replaces it.
    previous = str(registry.get(args.name, {}).get("description", ""))
    role = args.role if args.role is not None else previous.partition("; ")[2]
    registry[args.name] = {
        "file": target.name,
        "sha256": file_sha256(target),
        "attention": meta["config"].attention,
        "description": meta["config"].describe() + (f"; {role}" if role else ""),
        "mean_gap": new,
        "calibrated": calibrated,
        "adapted": settings["adapted"],
        "adaptation_settings": settings["adaptation_settings"],
        "summary": report["summary"],
        "extrapolation": report.get("extrapolation"),
        "step": meta["extra"].get("step"),
        "machine": platform.machine(),
    }
    registry_file.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    print(f"shipped {args.name}: mean gap {new:.4f} (was {old})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
