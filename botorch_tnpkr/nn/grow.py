"""Function-preserving growth of a trained network: more blocks, wider layers, more heads.

Training a larger network from scratch costs what the small one already cost again; growing
the trained one keeps everything it learned and adds capacity that starts as the identity:

* new KRBlocks are appended after the trained ones with their residual outputs (attention
  ``out_proj`` and the last FFN layer) set to zero, so each adds nothing until trained (the
  blocks are pre-norm residual, ``t + attn(norm(t)) + ffn(norm(.))``);
* a wider FFN keeps the trained hidden units and adds new ones whose outgoing weights are
  zero, so the FFN's output is unchanged;
* ``ard_bias`` switched on adds each exact attention's ARD layer, which starts at zero (all
  scales 1: the isotropic distances the source was trained with);
* ``fine_basis`` G -> G' adds G' - G fine kernel-bias basis functions per head with amplitude
  0 after the trained ones; the new ones take the log widths a fresh G'-function basis has in
  their slots (``bias.FINE_LENGTHSCALES``);
* a wider token stream, ``dim_model`` D -> kD (exact backends; Net2Net-style): every
  D-wide vector (tokens, the embedding's and the head's hidden layers) holds k copies of its
  old value, ``[x, x, ...]``. LayerNorm statistics of copies equal the original's, so norms
  take copied gains; a layer that writes such a vector takes copied rows; a layer that reads
  one takes its columns divided by k, plus noise that sums to zero over the copies (exact
  preservation, and copies that receive different gradients, so that training separates
  them). Each head keeps its index: with ``num_heads`` unchanged its width grows by k, each
  head's query, key and value hold copies of the old ones, and the queries are divided by
  ``sqrt(k)`` so that ``q.k / sqrt(head width)`` is unchanged; with more heads of the old
  width, the old heads keep their projections and the new heads' outputs start at zero (their
  kernel bias is a fresh one).
* ``near_path`` switched on adds the readout's nearest-neighbour path (``nn.near``), whose
  input map and gate start at zero; a source that has one keeps it (its width cannot grow).

The grown network's predictions equal the source's (up to float rounding) until it is trained;
every other part of the architecture must match (settings without weights, such as
``trained_context``, are taken from the target).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn.attention import ExactAttention
from botorch_tnpkr.nn.config import EXACT_BACKENDS, TNPKRConfig
from botorch_tnpkr.nn.model import TNPKR

GROWABLE = (
    "num_blocks",
    "dim_ffn",
    "ard_bias",
    "fine_basis",
    "dim_model",
    "num_heads",
    "near_path",
)
# Settings without weights: they may differ freely (the grown network takes the target's).
UNWEIGHTED = ("trained_context",)
# Default standard deviation of the zero-sum noise on weights that read copied vectors,
# relative to the standard deviation of the (divided) weights it is added to.
SPLIT_NOISE = 0.1


def _check_width(source: TNPKRConfig, target: TNPKRConfig) -> None:
    """Raise ``ConfigError`` unless ``target``'s width and heads copy-grow ``source``'s."""
    if (source.dim_model, source.num_heads) == (target.dim_model, target.num_heads):
        return
    if source.attention not in EXACT_BACKENDS:
        raise ConfigError(
            f"dim_model and num_heads grow only with an exact backend {EXACT_BACKENDS}; this "
            f"network uses {source.attention!r}."
        )
    if target.dim_model % source.dim_model or target.dim_head % source.dim_head:
        raise ConfigError(
            f"dim_model may grow only by an integer factor that keeps the head width a multiple "
            f"of the old one: {source.dim_model} -> {target.dim_model} with head width "
            f"{source.dim_head} -> {target.dim_head} is not such a growth."
        )


def growth_description(source: TNPKRConfig, target: TNPKRConfig) -> str:
    """What ``grow_network`` would change, e.g. ``"num_blocks 4 -> 6, dim_ffn 128 -> 256"``.

    Empty when the two configurations are equal up to ``UNWEIGHTED`` settings; raises
    ``ConfigError`` when ``target`` cannot be grown from ``source`` (a field other than
    ``GROWABLE`` differs, one shrinks, or the width does not grow by whole copies).
    """
    changes = []
    for field in dataclasses.fields(TNPKRConfig):
        old, new = getattr(source, field.name), getattr(target, field.name)
        if old == new or field.name in UNWEIGHTED:
            continue
        if field.name not in GROWABLE:
            raise ConfigError(
                f"Cannot grow a network with {field.name}={old!r} into one with {new!r}: only "
                f"{', '.join(GROWABLE)} may differ (and only grow)."
            )
        if new < old:
            raise ConfigError(f"Cannot shrink {field.name} from {old} to {new}; it may only grow.")
        changes.append(f"{field.name} {old} -> {new}")
    _check_width(source, target)
    if source.near_path and source.dim_model != target.dim_model:
        raise ConfigError(
            f"A network with a near path cannot grow its width ({source.dim_model} -> "
            f"{target.dim_model}); grow the width first, then add the near path."
        )
    return ", ".join(changes)


# A growth map of a vector space: entry i of the grown vector is entry ``src[i]`` of the old
# one (a copy), or a new unit where ``src[i]`` is -1.
def _identity(n_old: int, n_new: int) -> Tensor:
    """The old units first, then new ones."""
    src = torch.full((n_new,), -1, dtype=torch.long)
    src[:n_old] = torch.arange(n_old)
    return src


def _copies(n_old: int, n_new: int) -> Tensor:
    """``n_new / n_old`` copies of the old vector, one after the other."""
    return torch.arange(n_new) % n_old


def _head_space(source: TNPKRConfig, target: TNPKRConfig) -> Tensor:
    """Map of the attention width (heads x head width): head h keeps index h, its units
    are copies of the old head's; heads beyond the old count are new."""
    index = torch.arange(target.dim_model)
    head, unit = index // target.dim_head, index % target.dim_head
    src = head * source.dim_head + unit % source.dim_head
    return torch.where(head < source.num_heads, src, torch.full_like(src, -1))


def _per_head(heads: Tensor, width: int) -> Tensor:
    """Map of a head-major ``H x width`` layout from a map of the heads."""
    src = heads.unsqueeze(-1) * width + torch.arange(width, device=heads.device)
    return torch.where(heads.unsqueeze(-1) >= 0, src, torch.full_like(src, -1)).flatten()


def _grow_linear(
    new: nn.Linear,
    old: nn.Linear,
    out_src: Tensor,
    in_src: Tensor,
    noise: float,
    out_scale: float = 1.0,
) -> None:
    """Fill ``new`` so that on copied inputs its copied outputs are ``old``'s.

    Rows of old outputs take the old weights, columns divided by the number of copies of
    their input, with zero-sum noise over the copies; their columns of new input units are
    zero. Rows of new output units keep ``new``'s initialisation.
    """
    weight, rows, cols = new.weight, out_src >= 0, in_src >= 0
    row_idx, col_idx = rows.nonzero().squeeze(-1), cols.nonzero().squeeze(-1)
    in_old = in_src[col_idx]
    counts = torch.bincount(in_old, minlength=old.in_features).to(weight)
    block = old.weight[out_src[row_idx]][:, in_old] / counts[in_old] * out_scale
    if noise and block.numel() > 1:
        eps = torch.randn_like(block) * (noise * block.std())
        group_mean = torch.zeros_like(block[:, : old.in_features])
        group_mean.index_add_(1, in_old, eps)
        block = block + eps - (group_mean / counts)[:, in_old]
    weight[row_idx] = 0.0  # columns of new input units stay zero
    weight[row_idx.unsqueeze(-1), col_idx] = block
    if new.bias is not None:
        new.bias[row_idx] = old.bias[out_src[row_idx]] * out_scale


def _grow_norm(new: nn.LayerNorm, old: nn.LayerNorm, src: Tensor) -> None:
    new.weight.copy_(old.weight[src])
    new.bias.copy_(old.bias[src])


def _grow_attention(
    new: ExactAttention,
    old: ExactAttention,
    maps: dict[str, Tensor],
    noise: float,
) -> None:
    stream, heads, unit_heads = maps["stream"], maps["heads"], maps["attention"]
    q_scale = math.sqrt(old.dim_head / new.dim_head)
    _grow_linear(new.q_proj, old.q_proj, unit_heads, stream, noise, out_scale=q_scale)
    offset = torch.where(unit_heads >= 0, unit_heads + old.q_proj.out_features, unit_heads)
    _grow_linear(new.kv_proj, old.kv_proj, torch.cat([unit_heads, offset]), stream, noise)
    _grow_linear(new.out_proj, old.out_proj, stream, unit_heads, noise)
    if old.ard is not None:  # a new ARD layer (ard_bias switched on) stays at zero
        ard_src = _per_head(heads, old.ard.out_features // old.num_heads)
        _grow_linear(new.ard, old.ard, ard_src, stream, noise)
    rows = (heads >= 0).nonzero().squeeze(-1)
    for name, value in old.bias.named_parameters():  # H x basis: old heads, old functions
        target = new.bias.get_parameter(name)
        functions = torch.arange(value.shape[1], device=value.device)
        target[rows.unsqueeze(-1), functions] = value[heads[rows]]


@torch.no_grad()
def grow_network(
    source: TNPKR, config: TNPKRConfig, seed: int = 0, noise: float = SPLIT_NOISE
) -> TNPKR:
    """A network of architecture ``config`` that computes what ``source`` computes.

    Args:
        source: A trained network (left unchanged).
        config: The grown architecture; only ``GROWABLE`` fields may differ from
            ``source.config``, and only upwards (``ard_bias`` False -> True; trained fine
            basis functions are kept and new ones appended; ``dim_model`` by an integer
            factor, the head width by one too).
        seed: Seeds the random initialisation of the new weights whose outputs are zeroed
            (their inputs stay random so that they receive gradients once trained) and the
            noise that separates copied units.
        noise: Standard deviation of that noise relative to the weights it perturbs (0: exact
            copies, which training never separates).

    Returns:
        A new ``TNPKR`` on ``source``'s device and dtype.
    """
    old_config = source.config
    growth_description(old_config, config)
    param = next(source.parameters())
    maps = {
        "stream": _copies(old_config.dim_model, config.dim_model),
        "heads": _identity(old_config.num_heads, config.num_heads),
        "attention": _head_space(old_config, config),
        "ffn": _identity(old_config.dim_ffn, config.dim_ffn),
        "inputs": _identity(source.embed[0].in_features, source.embed[0].in_features),
        "outputs": _identity(3, 3),
    }
    maps = {key: value.to(param.device) for key, value in maps.items()}
    stream, ffn, old = maps["stream"], maps["ffn"], source
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = TNPKR(config).to(device=param.device, dtype=param.dtype)
        _grow_linear(grown.embed[0], old.embed[0], stream, maps["inputs"], noise)
        _grow_linear(grown.embed[2], old.embed[2], stream, stream, noise)
        for new_block, old_block in zip(grown.blocks, old.blocks, strict=False):
            _grow_norm(new_block.norm_attn, old_block.norm_attn, stream)
            _grow_norm(new_block.norm_ffn, old_block.norm_ffn, stream)
            _grow_linear(new_block.ffn[0], old_block.ffn[0], ffn, stream, noise)
            _grow_linear(new_block.ffn[2], old_block.ffn[2], stream, ffn, noise)
            if isinstance(old_block.attention, ExactAttention):
                _grow_attention(new_block.attention, old_block.attention, maps, noise)
            else:  # linear backends: the width is fixed (``growth_description``)
                new_block.attention.load_state_dict(old_block.attention.state_dict())
        _grow_norm(grown.head_norm, old.head_norm, stream)
        _grow_linear(grown.head[0], old.head[0], stream, stream, noise)
        _grow_linear(grown.head[2], old.head[2], maps["outputs"], stream, noise)
        if old.near_path is not None:  # same width (``growth_description``)
            grown.near_path.load_state_dict(old.near_path.state_dict())
    for block in grown.blocks[old_config.num_blocks :]:
        nn.init.zeros_(block.attention.out_proj.weight)
        nn.init.zeros_(block.attention.out_proj.bias)
        nn.init.zeros_(block.ffn[-1].weight)
        nn.init.zeros_(block.ffn[-1].bias)
    return grown
