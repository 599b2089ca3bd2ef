"""The frozen configuration of a TNP-KR network; it travels inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from botorch_tnpkr.errors import ConfigError

ATTENTION_BACKENDS = ("softmax", "scan", "dka", "performer")
# softmax and scan compute the same function with the same weights; either can run the other's
# checkpoints (``TNPKR.set_exact_backend``).
EXACT_BACKENDS = ("softmax", "scan")


@dataclass(frozen=True)
class TNPKRConfig:
    """Architecture of a TNP-KR network.

    Attributes:
        max_dim: Largest input dimension the network accepts (inputs are zero padded to it).
        dim_model: Token width.
        num_heads: Attention heads (exact and Performer backends; DKA uses one head).
        num_blocks: Number of KRBlocks.
        dim_ffn: Hidden width of the shared feed-forward network of each block.
        num_basis: Radial basis functions per head in the kernel attention bias.
        attention: One of ``softmax``, ``scan``, ``dka``, ``performer``.
        scan_chunk: Tile size (queries and keys) of the scan backend.
        dka_features: Width of the deep-kernel feature map of the DKA backend.
        performer_features: Random features of the Performer backend.
        min_std: Floor of the predictive standard deviations, in units of the context's
            standard deviation of ``y`` (the network standardises ``y`` internally).
        trained_context: Largest context the network was trained on, or None. When a read
            has ``n`` valid keys and ``n`` exceeds it, the exact backends multiply their
            attention logits (content and kernel bias) by ``log(n) / log(trained_context)``
            (log-n scaling), so that attention does not spread thinner over more keys than
            training ever showed. Contexts up to this size compute exactly what they would
            without it. The linear backends ignore it. It holds no weights; training sets it
            to the prior's ``max_context`` (a fine-tune keeps its source's if that is longer).
        ard_bias: Exact backends only. Each key token stretches the input dimensions of its
            kernel-bias distances by factors it computes (per head, from the token), so the
            bias can follow anisotropic (ARD) lengthscales and ignore irrelevant dimensions;
            without it the bias sees one isotropic distance. The factors start at 1, so a
            network grown from one without it (``nn.grow``) predicts what its source does.
        fine_basis: Exact backends only. Extra basis functions per head in the kernel bias,
            centred at distance 0 with log-parametrised widths (initial lengthscales 0.003
            to 0.03), so that attention can single out near neighbours in dense contexts.
            Their amplitudes start at 0 (``nn.grow`` adds them without changing predictions).
        near_path: Exact backends only. The readout also sees each test point's nearest
            context point (its distance, value and known noise) and may move its mean towards
            that value (``nn.near``), so that the network can interpolate its data as a GP
            does. Its weights start so that it changes nothing (``nn.grow`` adds it).
    """

    max_dim: int = 8
    dim_model: int = 64
    num_heads: int = 4
    num_blocks: int = 4
    dim_ffn: int = 128
    num_basis: int = 5
    attention: str = "softmax"
    scan_chunk: int = 1024
    dka_features: int = 64
    performer_features: int = 128
    min_std: float = 1e-3
    trained_context: int | None = None
    ard_bias: bool = False
    fine_basis: int = 0
    near_path: bool = False

    def __post_init__(self) -> None:
        positive = (
            "max_dim",
            "dim_model",
            "num_heads",
            "num_blocks",
            "dim_ffn",
            "num_basis",
            "scan_chunk",
            "dka_features",
            "performer_features",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TNPKRConfig.{name} must be a positive integer, got {value!r}.")
        if self.attention not in ATTENTION_BACKENDS:
            raise ConfigError(
                f"TNPKRConfig.attention must be one of {ATTENTION_BACKENDS}, "
                f"got {self.attention!r}."
            )
        if self.dim_model % self.num_heads != 0:
            raise ConfigError(
                f"TNPKRConfig.dim_model ({self.dim_model}) must be divisible by num_heads "
                f"({self.num_heads})."
            )
        if not (isinstance(self.min_std, (int, float)) and 0.0 < self.min_std < 1.0):
            raise ConfigError(f"TNPKRConfig.min_std must lie in (0, 1), got {self.min_std!r}.")
        if not isinstance(self.ard_bias, bool):
            raise ConfigError(f"TNPKRConfig.ard_bias must be a bool, got {self.ard_bias!r}.")
        if self.ard_bias and self.attention not in EXACT_BACKENDS:
            raise ConfigError(
                f"TNPKRConfig.ard_bias needs an exact backend {EXACT_BACKENDS}; the "
                f"{self.attention!r} backend has no distance bias to stretch."
            )
        fine = self.fine_basis
        if isinstance(fine, bool) or not isinstance(fine, int) or fine < 0:
            raise ConfigError(
                f"TNPKRConfig.fine_basis must be a non-negative integer, got {fine!r}."
            )
        if fine and self.attention not in EXACT_BACKENDS:
            raise ConfigError(
                f"TNPKRConfig.fine_basis needs an exact backend {EXACT_BACKENDS}; the "
                f"{self.attention!r} backend has no distance bias."
            )
        if not isinstance(self.near_path, bool):
            raise ConfigError(f"TNPKRConfig.near_path must be a bool, got {self.near_path!r}.")
        if self.near_path and self.attention not in EXACT_BACKENDS:
            raise ConfigError(
                f"TNPKRConfig.near_path needs an exact backend {EXACT_BACKENDS}; the "
                f"{self.attention!r} backend reads a fixed-size summary, not the context points."
            )
        trained = self.trained_context
        if trained is not None and (
            isinstance(trained, bool) or not isinstance(trained, int) or trained < 2
        ):
            raise ConfigError(
                f"TNPKRConfig.trained_context must be an integer >= 2 or None, got {trained!r}."
            )

    def describe(self) -> str:
        """One line naming the architecture, e.g. for a registry entry.

        Example: ``"Exact (softmax/scan) attention, 6 KRBlocks, width 128, FFN 512, ARD
        kernel bias, 2 fine bias functions"``.
        """
        kind = {
            "softmax": "Exact (softmax/scan)",
            "scan": "Exact (softmax/scan)",
            "dka": "Deep kernel (linear)",
            "performer": "Performer (linear)",
        }[self.attention]
        parts = [
            f"{kind} attention",
            f"{self.num_blocks} KRBlock{'s' if self.num_blocks > 1 else ''}",
            f"width {self.dim_model}",
            f"FFN {self.dim_ffn}",
        ]
        if self.ard_bias:
            parts.append("ARD kernel bias")
        if self.fine_basis:
            parts.append(
                f"{self.fine_basis} fine bias function{'s' if self.fine_basis > 1 else ''}"
            )
        if self.near_path:
            parts.append("nearest-neighbour readout")
        return ", ".join(parts)

    @property
    def dim_head(self) -> int:
        return self.dim_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TNPKRConfig:
        """Build a config from a plain dict, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ConfigError(f"A TNPKRConfig is read from a dict, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown TNPKRConfig fields {unknown}; allowed: {sorted(known)}.")
        return cls(**data)

    def replace(self, **changes: Any) -> TNPKRConfig:
        return dataclasses.replace(self, **changes)
