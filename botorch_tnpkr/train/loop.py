"""The training loop: AdamW, warm-up + cosine, clipping, curriculum, validation, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from botorch_tnpkr.errors import CheckpointError, ConfigError
from botorch_tnpkr.nn import TNPKR, TNPKRConfig, read_metadata, save_network
from botorch_tnpkr.nn.grow import grow_network, growth_description
from botorch_tnpkr.priors import TaskBatch, sample_tasks, standardize_batch
from botorch_tnpkr.train.causal_batch import causal_prediction, num_added
from botorch_tnpkr.train.objective import oracle_gap
from botorch_tnpkr.train.presets import TrainPreset
from botorch_tnpkr.train.state import STATE_FILE, load_state, save_state

VAL_SEED = 20_241_118
# The validation set's layout. A run resumed from a state validated on another layout starts
# its best-so-far afresh: gaps on different sets do not compare. "diagonal" (states without
# the key) paired dimension i % len(dims) with size i % len(sizes), which for 10 dimensions and
# 5 sizes locked d = 1 and 6 to empty contexts and never met d <= 3 with more than 32 points.
VAL_LAYOUT = "grid"


@dataclass
class RunOptions:
    """How (not what) to train.

    Attributes:
        run_dir: Directory of the run's state, exports and log.
        seed: Seed of the initialisation and of every training batch.
        total_steps: Schedule length (default: the preset's). A resumed run may extend it;
            the cosine is then recomputed from the current step's position.
        stop_after: Stop at this step (default ``total_steps``), e.g. to train in bursts.
        max_minutes: Stop (after saving) once this much wall time has passed.
        save_every_minutes: Save the training state at least this often.
        resume: Continue from ``run_dir``'s state.
        threads: torch CPU threads (None leaves torch's default).
        progress: Show a progress bar.
        compile: Compile the kernel bias with ``torch.compile`` (about 3x faster steps).
        ema_decay: Decay of the exponential moving average of the weights; the average is
            what validation scores and what the exported network files hold.
        init_from: Start from the weights of this network instead of a random
            initialisation (fine-tuning): a registered checkpoint name (``"tnpkr-exact"``) or
            a ``.safetensors`` path. Its architecture must equal the preset's ``model``
            (``TrainPreset(model=load_checkpoint(name).config, ...)``). Ignored on resume:
            the run's own state wins.
    """

    run_dir: Path
    seed: int = 0
    total_steps: int | None = None
    stop_after: int | None = None
    max_minutes: float | None = None
    save_every_minutes: float = 10.0
    resume: bool = False
    threads: int | None = None
    progress: bool = True
    compile: bool = False
    ema_decay: float = 0.999
    init_from: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        """Reject impossible options before any file is touched."""
        positive_ints = {
            "total_steps": self.total_steps,
            "stop_after": self.stop_after,
            "threads": self.threads,
        }
        for name, value in positive_ints.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value}.")
        positive = {"save_every_minutes": self.save_every_minutes, "max_minutes": self.max_minutes}
        for name, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive, finite number, got {value}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}.")
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"run_dir {str(self.run_dir)!r} exists and is not a directory.")


def lr_at(step: int, preset: TrainPreset, total: int) -> float:
    """Linear warm-up to ``preset.lr``, then cosine down to ``min_lr_ratio * lr``."""
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    progress = min(1.0, (step - preset.warmup_steps) / max(1, total - preset.warmup_steps))
    floor = preset.min_lr_ratio
    return preset.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def parameter_groups(model: torch.nn.Module, preset: TrainPreset) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: one, or one per factor of ``preset.lr_scales``
    (a group's ``lr_scale`` multiplies the schedule's learning rate; empty groups dropped)."""
    groups: dict[float, list[torch.nn.Parameter]] = {1.0: []}
    for name, parameter in model.named_parameters():
        factor = next((float(f) for frag, f in preset.lr_scales if frag in name), 1.0)
        groups.setdefault(factor, []).append(parameter)
    return [{"params": params, "lr_scale": factor} for factor, params in groups.items() if params]


def context_cap(step: int, preset: TrainPreset, total: int) -> int:
    """Largest context size drawn at ``step`` (geometric growth, then constant)."""
    end = preset.prior.max_context
    start = min(preset.context_start, end)
    frac = min(1.0, step / max(1.0, preset.curriculum_frac * total))
    return round(start * (end / start) ** frac)


def batch_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one step's batch: a pure function of (seed, step, rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + rank) % (2**63))


def validation_cells(preset: TrainPreset) -> list[tuple[int, int]]:
    """(d, nC) of each validation batch: the grid of the prior's dimensions x context sizes
    {0, 8, 32, 128, max_context}, sizes fastest, cycled to ``preset.val_batches`` batches."""
    dims = preset.prior.allowed_dims
    top = preset.prior.max_context
    sizes = sorted({min(n, top) for n in (0, 8, 32, 128, top)})
    return [
        (dims[(i // len(sizes)) % len(dims)], sizes[i % len(sizes)])
        for i in range(preset.val_batches)
    ]


def validation_set(preset: TrainPreset) -> list[TaskBatch]:
    """A fixed held-out set (independent of the training seed), one batch per
    ``validation_cells`` entry; every third batch has BO-shaped contexts."""
    gen = torch.Generator().manual_seed(VAL_SEED)
    out = []
    for i, (dim, size) in enumerate(validation_cells(preset)):
        batch = sample_tasks(
            preset.prior,
            preset.batch_size,
            gen,
            dim=dim,
            num_context=size,
            bo_shaped=(i % 3 == 2),
        )
        out.append(standardize_batch(batch) if preset.standardize else batch)
    return out


def training_batch(preset: TrainPreset, gen: torch.Generator, cap: int) -> TaskBatch:
    """One step's tasks (contexts up to ``cap`` points), as the preset presents them."""
    batch = sample_tasks(preset.prior, preset.batch_size, gen, max_context=cap)
    return standardize_batch(batch) if preset.standardize else batch


def _to(batch: TaskBatch, device: torch.device) -> TaskBatch:
    if device.type == "cpu":
        return batch
    moved = {k: getattr(batch, k).to(device) for k in ("xc", "yc", "mask", "xt", "ft", "yt")}
    moved.update(oracle_mean=batch.oracle_mean.to(device), oracle_var=batch.oracle_var.to(device))
    hyper = batch.hyper
    hyper = type(hyper)(*(getattr(hyper, f).to(device) for f in hyper.__dataclass_fields__))
    return TaskBatch(hyper=hyper, bo_shaped=batch.bo_shaped, **moved)


@torch.no_grad()
def validate(model: TNPKR, batches: list[TaskBatch], device: torch.device) -> dict[str, float]:
    """Mean gaps over the validation set, in nats per target point."""
    was_training = model.training
    model.eval()
    gap_f = gap_y = 0.0
    for batch in batches:
        batch = _to(batch, device)
        pred = model(batch.xc, batch.yc, batch.xt, mask=batch.mask)
        losses = oracle_gap(pred, batch)
        gap_f += float(losses.gap_f) / len(batches)
        gap_y += float(losses.gap_y) / len(batches)
    model.train(was_training)
    return {"val_gap_f": gap_f, "val_gap_y": gap_y}


def _load_initial_weights(model: TNPKR, checkpoint: str | os.PathLike, preset: TrainPreset) -> str:
    """Copy the weights of a pretrained network into ``model`` (fine-tuning).

    A source with fewer blocks or narrower layers than the preset's network is grown into it
    first (``nn.grow``: the new capacity starts as the identity). Returns a one-line
    description of the source (name, preset, step, training hours, growth) that the run
    stores in its state and exported files, so that model cards can say what a fine-tuned
    network started from.
    """
    from botorch_tnpkr.checkpoints import load_checkpoint
    from botorch_tnpkr.checkpoints.registry import resolve_checkpoint

    source = load_checkpoint(checkpoint)
    try:
        growth = growth_description(source.config, preset.model)
    except ConfigError as err:
        raise ConfigError(
            f"init_from={str(checkpoint)!r} has the architecture {source.config} but the preset "
            f"{preset.name!r} trains {preset.model} ({err}); build the preset with "
            "model=load_checkpoint(...).config to fine-tune it."
        ) from None
    if growth:
        source = grow_network(source, preset.model)
    model.load_state_dict(source.state_dict())
    extra = read_metadata(resolve_checkpoint(checkpoint)[0])["extra"]
    extra = extra if isinstance(extra, dict) else {}
    hours = float(extra.get("train_seconds") or 0.0) / 3600
    return (
        f"{checkpoint} (preset {extra.get('preset', '?')}, step {extra.get('step', '?')}, "
        f"{hours:.2f} h of training)" + (f", grown: {growth}" if growth else "")
    )


def _trained_context(
    preset: TrainPreset, init_from: str | os.PathLike | None, state: dict[str, Any] | None
) -> int | None:
    """The ``trained_context`` of the network a run trains and exports.

    The preset's (its prior's ``max_context``) for a fresh run; a fine-tune also keeps what its
    source was trained on, so that a fine-tune on shorter contexts does not rescale attention
    where the source was trained; a resumed run keeps the value it started with.
    """
    own = preset.network_config.trained_context
    if state is not None:
        return state.get("trained_context", own)
    if init_from is None:
        return own
    from botorch_tnpkr.evaluate import checkpoint_trained_context

    source = checkpoint_trained_context(os.fspath(init_from))
    return own if source is None or own is None else max(own, source)


class _StopFlag:
    """Set by SIGTERM/SIGINT so that the loop saves and exits cleanly between steps."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.stop = True


def train(preset: TrainPreset, options: RunOptions) -> dict[str, Any]:
    """Train (or resume) a run. Returns the final record (step, losses, validation).

    Multi-process data parallel when started by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on
    CPU, NCCL on CUDA; rank 0 validates and writes files.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    if world > 1 and preset.causal_share > 0:
        raise ConfigError(
            f"Preset {preset.name!r} trains through the causal path (causal_share > 0), which "
            "runs outside DistributedDataParallel's forward; train it in a single process."
        )
    # A group this call starts, it also ends: left to interpreter shutdown, gloo's worker
    # threads now and then aborted a rank (SIGABRT, "terminate called without an active
    # exception") after training had finished.
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if options.threads:
        torch.set_num_threads(options.threads)
    run_dir = Path(options.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / STATE_FILE

    state = load_state(state_path) if options.resume else None
    network_config = preset.network_config.replace(
        trained_context=_trained_context(preset, options.init_from, state)
    )
    torch.manual_seed(options.seed)
    model = TNPKR(network_config).to(device)
    ema_model = TNPKR(network_config).to(device)
    init_note = None
    if options.init_from is not None and not options.resume:
        init_note = _load_initial_weights(model, options.init_from, preset)
    ema_model.load_state_dict(model.state_dict())
    ema_model.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, preset), lr=preset.lr, weight_decay=preset.weight_decay
    )
    step, train_seconds, best_val = 0, 0.0, math.inf
    revalidate = False
    total = options.total_steps or preset.total_steps
    if state is not None:
        saved_model = TNPKRConfig.from_dict(json.loads(state["model_config"]))
        if saved_model != preset.model or state["preset"] != preset.name:
            raise CheckpointError(
                f"The run in {str(run_dir)!r} was made with preset {state['preset']!r} and a "
                "different network; resume it with the same preset."
            )
        model.load_state_dict(state["model"])
        ema_model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        train_seconds = float(state["train_seconds"])
        best_val = float(state["best_val"])
        revalidate = state.get("val_layout", "diagonal") != VAL_LAYOUT
        options.seed = int(state["seed"])
        init_note = state.get("init_from")
        total = options.total_steps or int(state["total_steps"])
    elif state_path.exists():
        raise CheckpointError(
            f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose "
            "another --run-dir."
        )
    stop_after = min(options.stop_after or total, total)
    if options.compile:
        model.compile_bias()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    val_batches = validation_set(preset) if rank == 0 else []
    log_path = run_dir / "log.jsonl"

    def provenance() -> dict[str, Any]:
        """Plain facts about the run, stored in the state and in every exported network."""
        return {
            "preset": preset.name,
            "step": step,
            "total_steps": total,
            "seed": options.seed,
            "train_seconds": round(train_seconds, 1),
            "best_val_gap_y": best_val,
            "world_size": world,
            "device": str(device),
            **({"init_from": init_note} if init_note else {}),
        }

    def save() -> None:
        if rank != 0:
            return
        state = {
            **provenance(),
            "train_seconds": train_seconds,
            "best_val": best_val,
            "val_layout": VAL_LAYOUT,
            "preset_json": json.dumps(preset.to_dict(), default=list),
            "model_config": json.dumps(preset.model.to_dict()),
            "trained_context": network_config.trained_context,
            "model": model.state_dict(),
            "ema": ema_model.state_dict(),
            "optimizer": optimizer.state_dict(),
        }
        save_state(state_path, state)
        save_network(ema_model, run_dir / "latest.safetensors", extra=provenance())

    def log(record: dict[str, Any]) -> None:
        if rank == 0:
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    if revalidate and rank == 0:
        # Validated on another set until now: its best does not compare. The resumed network
        # is the best so far on this one.
        record = validate(ema_model, val_batches, device)
        best_val = record["val_gap_y"]
        save_network(ema_model, run_dir / "best.safetensors", extra={**provenance(), **record})
        log({"step": step, "val_layout": VAL_LAYOUT, **record})
    flag = _StopFlag()
    previous = {s: signal.signal(s, flag) for s in (signal.SIGTERM, signal.SIGINT)}
    started = last_save = time.monotonic()
    ema: dict[str, float] = {}
    bar = tqdm(total=stop_after, initial=step, disable=not options.progress or rank != 0)
    model.train()
    last: dict[str, Any] = {}
    try:
        while step < stop_after and not flag.stop:
            t0 = time.monotonic()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, preset, total) * group.get("lr_scale", 1.0)
            gen = batch_generator(options.seed, step, rank)
            cap = context_cap(step, preset, total)
            batch = _to(training_batch(preset, gen, cap), device)
            known = float(torch.rand((), generator=gen)) < preset.known_noise_prob
            yvar = batch.noise.expand_as(batch.yc) if known else None
            added = 0
            if (
                preset.causal_share > 0
                and float(torch.rand((), generator=gen)) < preset.causal_share
            ):
                added = num_added(batch.xc.shape[1], preset.causal_max_added, gen)
            with autocast:
                if added:
                    pred = causal_prediction(model, batch, added, yvar=yvar)
                else:
                    pred = net(batch.xc, batch.yc, batch.xt, yvar=yvar, mask=batch.mask)
            pred.mean, pred.fvar, pred.noise_var = (
                pred.mean.float(),
                pred.fvar.float(),
                pred.noise_var.float(),
            )
            losses = oracle_gap(pred, batch, preset.f_weight, preset.gap_cap)
            optimizer.zero_grad(set_to_none=True)
            losses.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), preset.clip)
            if torch.isfinite(grad_norm):
                optimizer.step()
                with torch.no_grad():
                    decay = min(options.ema_decay, (1 + step) / (10 + step))
                    for e, p in zip(ema_model.parameters(), model.parameters(), strict=True):
                        e.lerp_(p, 1 - decay)
            step += 1
            train_seconds += time.monotonic() - t0
            for key in ("loss", "gap_f", "gap_y"):
                value = float(getattr(losses, key).detach())
                ema[key] = value if key not in ema else 0.98 * ema[key] + 0.02 * value
            bar.update(1)
            record: dict[str, Any] = {}
            if (step % preset.val_every == 0 or step == stop_after) and rank == 0:
                record = validate(ema_model, val_batches, device)
                if record["val_gap_y"] < best_val:
                    best_val = record["val_gap_y"]
                    save_network(
                        ema_model, run_dir / "best.safetensors", extra={**provenance(), **record}
                    )
            if step % 50 == 0 or record:
                last = {
                    "step": step,
                    "lr": lr_at(step - 1, preset, total),
                    "context_cap": cap,
                    "grad_norm": float(grad_norm),
                    "train_seconds": round(train_seconds, 1),
                    **{f"ema_{k}": round(v, 4) for k, v in ema.items()},
                    **record,
                }
                log(last)
                bar.set_postfix(loss=f"{ema['loss']:.3f}", gap_y=f"{ema['gap_y']:.3f}", cap=cap)
            minutes = (time.monotonic() - started) / 60
            if options.max_minutes is not None and minutes >= options.max_minutes:
                break
            if (time.monotonic() - last_save) / 60 >= options.save_every_minutes:
                save()
                last_save = time.monotonic()
    finally:
        save()
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if world > 1:
            dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return {"step": step, "train_seconds": train_seconds, "best_val_gap_y": best_val, **last}
