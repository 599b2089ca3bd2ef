"""Named training presets: network, prior, optimiser and curriculum in one frozen record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKRConfig
from botorch_tnpkr.priors import PriorConfig


@dataclass(frozen=True)
class TrainPreset:
    """Everything that defines a training run besides its seed and length.

    Attributes:
        name: Preset name.
        model: Network architecture.
        prior: Task distribution (its ``max_context`` is the end of the curriculum).
        batch_size: Tasks per step and process.
        total_steps: Length of the warm-up + cosine schedule.
        lr: Peak learning rate (AdamW).
        min_lr_ratio: Floor of the cosine schedule, as a fraction of ``lr``.
        weight_decay: AdamW weight decay.
        lr_scales: ``(name fragment, factor)`` pairs: parameters whose name contains a
            fragment (the first that matches) train at ``factor`` times the schedule's
            learning rate, in a parameter group of their own. Empty: one group.
        warmup_steps: Linear warm-up steps.
        clip: Gradient-norm clip.
        context_start: Largest context size at step 0; it grows geometrically to
            ``prior.max_context`` over ``curriculum_frac`` of the schedule.
        curriculum_frac: Fraction of ``total_steps`` the context curriculum takes.
        known_noise_prob: Probability that a batch passes its true noise variance as ``yvar``.
        f_weight: Weight of the noiseless-target term of the loss (the noisy term has 1).
        standardize: Present every task as ``TNPKRModel`` with its default ``Standardize``
            outcome transform does: the context scaled to sample mean 0 and standard
            deviation 1 (targets and oracle moved with it). Validation uses the same view.
        gap_cap: Soft cap of each task's gap in the loss (``objective.soft_cap``); None
            minimises the plain mean.
        causal_share: Share of batches whose last 1..``causal_max_added`` context points are
            added through the causal path of joint predictions instead of being encoded
            (``train.causal_batch``); single-process runs only.
        causal_max_added: Most context points added causally in such a batch.
        val_every: Steps between validations.
        val_batches: Batches in the fixed validation set: one per cell of the grid of the
            prior's dimensions x context sizes {0, 8, 32, 128, max_context}, in turn (50
            cells for ``max_dim`` 10; fewer batches cover the first cells, more repeat them).
    """

    name: str
    model: TNPKRConfig
    prior: PriorConfig
    batch_size: int = 16
    total_steps: int = 150_000
    lr: float = 5e-4
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    lr_scales: tuple[tuple[str, float], ...] = ()
    warmup_steps: int = 1_000
    clip: float = 1.0
    context_start: int = 32
    curriculum_frac: float = 0.2
    known_noise_prob: float = 0.25
    f_weight: float = 1.0
    standardize: bool = False
    gap_cap: float | None = None
    causal_share: float = 0.0
    causal_max_added: int = 8
    val_every: int = 1_000
    val_batches: int = 50
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gap_cap is not None and not self.gap_cap > 0:
            raise ConfigError(f"gap_cap must be positive or None, got {self.gap_cap}.")
        if not 0.0 <= self.causal_share <= 1.0:
            raise ConfigError(f"causal_share must lie in [0, 1], got {self.causal_share}.")
        if self.causal_max_added < 1:
            raise ConfigError(f"causal_max_added must be >= 1, got {self.causal_max_added}.")
        for entry in self.lr_scales:
            if (
                len(entry) != 2
                or not isinstance(entry[0], str)
                or not entry[0]
                or not float(entry[1]) > 0
            ):
                raise ConfigError(
                    "lr_scales takes (non-empty name fragment, positive factor) pairs, "
                    f"got {entry!r}."
                )

    @property
    def network_config(self) -> TNPKRConfig:
        """The network to train: ``model`` with ``trained_context`` set to the prior's
        ``max_context`` unless ``model`` sets it (log-n attention scaling beyond it)."""
        if self.model.trained_context is not None:
            return self.model
        return self.model.replace(trained_context=self.prior.max_context)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = self.model.to_dict()
        return out


_BASE_MODEL = TNPKRConfig(
    max_dim=10, dim_model=64, num_heads=4, num_blocks=4, dim_ffn=128, num_basis=5
)


# exact-deep's network: exact-std's grown to 6 blocks with twice the FFN width (nn/grow.py).
_DEEP_MODEL = _BASE_MODEL.replace(num_blocks=6, dim_ffn=256)


def _standardised_fine_tune(name: str, model: TNPKRConfig, **changes: Any) -> TrainPreset:
    """A fine-tune (``--init-from``) on standardised contexts of up to 512 points."""
    settings: dict[str, Any] = {
        "total_steps": 5_000,
        "lr": 3e-4,
        "warmup_steps": 200,
        "context_start": 512,
        "standardize": True,
        "gap_cap": 5.0,
        **changes,
    }
    prior = settings.pop("prior", PriorConfig(max_context=512))
    return TrainPreset(name=name, model=model, prior=prior, **settings)


def _ard_restart(
    name: str, model: TNPKRConfig, lr_scales: tuple[tuple[str, float], ...]
) -> TrainPreset:
    """A restart from the shipped ARD network (exact-ard step 4k) along the learning rate
    exact-ard had left (peak 6e-5, warm-up 100, 6k-step cosine), with ``lr_scales``."""
    return _standardised_fine_tune(
        name, model, total_steps=6_000, lr=6e-5, warmup_steps=100, lr_scales=lr_scales
    )


# exact-wide's network: the exact-fine network twice as wide (tnpkr-exact since session 16).
_WIDE_MODEL = _DEEP_MODEL.replace(ard_bias=True, fine_basis=2, dim_model=128, dim_ffn=512)


def _wide_restart(name: str, lr: float) -> TrainPreset:
    """The exact-fine network grown twice as wide (``--init-from`` exact-fine step 4k, the
    ``tnpkr-exact`` of commit 9e58c3d): tokens 64 -> 128, FFN 256 -> 512; a 10k-step cosine
    from peak ``lr``, fine functions at 100x."""
    return _standardised_fine_tune(
        name,
        _WIDE_MODEL,
        total_steps=10_000,
        lr=lr,
        warmup_steps=300,
        lr_scales=((".bias.fine_", 100.0),),
    )


def _near_path_fine_tune(name: str, prior: PriorConfig) -> TrainPreset:
    """The shipped wide network grown with the near path (``--init-from
    botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``) on ``prior``: exact-near's schedule
    (peak lr 3e-5, warm-up 100, 8k-step cosine), fine functions at 100x and the path's new
    weights at 30x (they start at zero)."""
    return _standardised_fine_tune(
        name,
        _WIDE_MODEL.replace(near_path=True),
        prior=prior,
        total_steps=8_000,
        lr=3e-5,
        warmup_steps=100,
        lr_scales=((".bias.fine_", 100.0), ("near_path.", 30.0)),
    )


PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(
        name="tiny",
        model=TNPKRConfig(
            max_dim=4, dim_model=16, num_heads=2, num_blocks=1, dim_ffn=32, num_basis=3
        ),
        prior=PriorConfig(max_dim=4, max_context=16, num_targets=8),
        batch_size=4,
        total_steps=20,
        warmup_steps=5,
        context_start=8,
        val_every=10,
        val_batches=2,
    ),
    "exact-small": TrainPreset(name="exact-small", model=_BASE_MODEL, prior=PriorConfig()),
    "dka-small": TrainPreset(
        name="dka-small",
        model=_BASE_MODEL.replace(attention="dka"),
        prior=PriorConfig(max_context=512),
    ),
    # Fine-tunes exact-small's weights (``--init-from``) on tasks as deployment presents them:
    # standardised contexts (at n <= 8 the raw scale taught the network what Standardize
    # hides) and contexts up to 512 points (the largest size the evaluation scores).
    "exact-std": _standardised_fine_tune(
        "exact-std", _BASE_MODEL, context_start=256, curriculum_frac=0.3
    ),
    # The same for the linear-attention network (``--init-from runs/dka-small/...``).
    "dka-std": _standardised_fine_tune("dka-std", _BASE_MODEL.replace(attention="dka")),
    # exact-std grown (``--init-from runs/exact-std/best.safetensors``; ``nn.grow``) to 6
    # blocks with twice the FFN width: the near-noiseless tasks that carry most of the gap
    # need more precision than 4 blocks of width 64 reached in 20k fine-tuning steps. The new
    # blocks start as the identity, so the schedule warms up gently from the source's quality.
    "exact-deep": _standardised_fine_tune(
        "exact-deep",
        _DEEP_MODEL,
        total_steps=16_000,
        lr=2e-4,
        warmup_steps=500,
    ),
    # exact-deep grown again (``--init-from runs/exact-deep/best.safetensors``) to 8 blocks:
    # over its last 13k steps its validation gap fell about 0.00015 per 1k, while the 4 -> 6
    # growth had bought 0.013 of evaluation gap in 12k steps. A lower peak than exact-deep's
    # 2e-4, which first cost the grown network 0.005 of validation gap.
    "exact-deeper": _standardised_fine_tune(
        "exact-deeper",
        _DEEP_MODEL.replace(num_blocks=8),
        total_steps=20_000,
        lr=1e-4,
        warmup_steps=500,
    ),
    # exact-deep's network with ARD kernel-bias distances (``TNPKRConfig.ard_bias``), grown
    # from exact-deep's best (``--init-from``; the ARD layers start at zero, the isotropic
    # bias). On the evaluation tasks with d >= 2 the gap doubles from the most isotropic to
    # the most anisotropic lengthscales (``benchmarks/gap_by_noise.py``, anisotropy groups),
    # and an isotropic distance bias cannot follow ARD lengthscales or ignore irrelevant
    # dimensions. The peak lr of exact-deeper's warm start.
    "exact-ard": _standardised_fine_tune(
        "exact-ard",
        _DEEP_MODEL.replace(ard_bias=True),
        total_steps=12_000,
        lr=1e-4,
        warmup_steps=300,
    ),
    # exact-ard with its ARD layers at 10x the learning rate, from the shipped network
    # (``--init-from botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``, exact-ard step 4k):
    # at 1x the ARD weights stayed small (stretch factors ~0.8-1.3 after 5k steps) and the
    # gap on strongly anisotropic tasks did not move. Same lr path as exact-ard's remainder.
    "exact-ard-lr": _ard_restart(
        "exact-ard-lr", _DEEP_MODEL.replace(ard_bias=True), ((".attention.ard.", 10.0),)
    ),
    # The shipped network (exact-ard step 4k) grown with 2 fine kernel-bias basis functions
    # per head (``fine_basis``; ``--init-from botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``).
    # The 5 trained basis functions never left their initial widths (an optimiser step moves
    # a raw width by ~lr), so no head can single out neighbours closer than ~0.02-0.1, while
    # the gap grows from n = 128 to 512 and is largest at d = 1. Fine amplitudes and log
    # widths train at 100x (from 0: the grown network starts as the shipped one); ARD at 1x
    # as in exact-ard, so the two runs differ only in the fine functions.
    "exact-fine": _ard_restart(
        "exact-fine",
        _DEEP_MODEL.replace(ard_bias=True, fine_basis=2),
        ((".bias.fine_", 100.0),),
    ),
    # exact-fine step 3k (shipped in session 13; ``git show 8612b6e:botorch_tnpkr/checkpoints/
    # tnpkr-exact.safetensors``) with 2 more fine functions per head (``nn.grow`` 2 -> 4), a branch
    # beside exact-fine's remaining 3k steps: of the trained ones the 0.003 functions stayed
    # near their width with small amplitudes, while the 0.03 ones widened to 0.03-0.09 and the
    # last blocks' amplitudes grew to ~3, so the new ones start in between (0.014, 0.03).
    # About exact-fine's remaining lr path: from its step-3k lr (3.2e-5) to the same floor
    # (3e-6) in 3k steps, fine parameters at 100x.
    "exact-fine4": _standardised_fine_tune(
        "exact-fine4",
        _DEEP_MODEL.replace(ard_bias=True, fine_basis=4),
        total_steps=3_000,
        lr=3.2e-5,
        min_lr_ratio=3e-6 / 3.2e-5,
        warmup_steps=20,
        lr_scales=((".bias.fine_", 100.0),),
    ),
    # The exact-fine network (step 4k, shipped in sessions 14-15) grown twice as
    # wide (``nn.grow``: tokens 64 -> 128 as copies, 4 heads twice as wide, FFN 256 -> 512):
    # validation sat at 0.397 through exact-fine's last 2k steps and each warm restart of the
    # width-64 network (ARD, fine functions, more of them) bought 0.005 at most. The kernel
    # bias dominates a CPU step, so the 4x parameters cost about 1.05x per step (measured
    # side by side on the same batches; docs/training_history.md, session 15). exact-deeper's
    # peak lr for a grown network, fine functions at 100x as in exact-fine.
    "exact-wide": _wide_restart("exact-wide", lr=1e-4),
    # exact-wide at a third of its peak lr, a branch from the same source beside it (same
    # seed, so the same batches step for step). At 1e-4 exact-wide's validation rose from the
    # source's 0.3972 to 0.4123 after 1k steps: Adam moves every weight by about the lr,
    # whatever its size, and the split weights are half as large as the source's, so the
    # same lr is twice as large a relative step on them (and on 4x as many parameters).
    "exact-wide-lo": _wide_restart("exact-wide-lo", lr=3e-5),
    # The shipped exact network (exact-wide-lo step 16k; ``--init-from
    # botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``) fine-tuned with a quarter of the
    # targets at context points (``PriorConfig.near_share``): uniform targets almost never
    # fall there, and at observed points of nearly noiseless tasks its gap to the oracle was
    # 1-2.5 nats against 0.1-0.5 at uniform targets; at 1,000 Sobol points of Hartmann-6 it
    # predicted 1.95 +- 0.28 at the incumbent (observed 2.875), so LogEI left it. exact-wide-lo's
    # peak lr and fine-function factor; its run had been level since step 16k.
    "exact-near": _standardised_fine_tune(
        "exact-near",
        _WIDE_MODEL,
        prior=PriorConfig(max_context=512, near_share=0.25),
        total_steps=8_000,
        lr=3e-5,
        warmup_steps=100,
        lr_scales=((".bias.fine_", 100.0),),
    ),
    # exact-near's tasks for the shipped exact network grown with the readout's
    # nearest-neighbour path (``near_path``; ``--init-from
    # botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``): exact-near learned interpolation
    # at about 0.07 nats per 1k steps at the data, because the value must travel through six
    # blocks to the head; the path hands it to the head. Its new weights start at zero and
    # train at 30x the peak lr (9e-4), the rest at exact-near's.
    "exact-nearpath": _near_path_fine_tune(
        "exact-nearpath", PriorConfig(max_context=512, near_share=0.25)
    ),
    # exact-nearpath with 30% peaked tasks (``PriorConfig.peak_share``): at 400-1,000 Sobol
    # points of Hartmann-6 the best points stand 4.5-6.6 standard deviations above the mean,
    # beyond anything plain GP draws show, and the shipped network predicted them 1.4 sds
    # low (mean error 0.5-0.6 near the best points against the GP's 0.01-0.07), so LogEI
    # never exploited. ``--init-from botorch_tnpkr/checkpoints/tnpkr-exact.safetensors``.
    "exact-peak": _near_path_fine_tune(
        "exact-peak", PriorConfig(max_context=512, near_share=0.25, peak_share=0.3)
    ),
    # dka-std grown (``--init-from runs/dka-std/best.safetensors``) as exact-std was into
    # exact-deep: 6 blocks, FFN 256. The linear-attention network serves histories above
    # 4,096 points, its evaluation gap (0.936) is nearly twice the exact network's, and its
    # standardised fine-tune was still gaining (0.970 -> 0.936 in 4k steps).
    "dka-deep": _standardised_fine_tune(
        "dka-deep",
        _DEEP_MODEL.replace(attention="dka"),
        total_steps=16_000,
        lr=2e-4,
        warmup_steps=500,
    ),
    # exact-deep fine-tuned (``--init-from runs/exact-deep/best.safetensors``) towards the
    # tasks BO presents: on BO test functions the network's mean near the incumbent was up to
    # 1.7x less precise than a fitted GP's on smooth functions (Branin, Rosenbrock). Half the
    # contexts BO-shaped (was 0.3) and a third of the Matern-1/2 share (rough functions stay
    # in the prior); a short, low-lr schedule on top of the converged network.
    "exact-bo": _standardised_fine_tune(
        "exact-bo",
        _DEEP_MODEL,
        prior=PriorConfig(max_context=512, kernel_weights=(0.05, 0.25, 0.35, 0.35), bo_share=0.5),
        total_steps=2_500,
        lr=5e-5,
        warmup_steps=100,
    ),
}


def get_preset(name: str) -> TrainPreset:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; available: {sorted(PRESETS)}.")
    return PRESETS[name]
