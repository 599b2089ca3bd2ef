"""Function-preserving growth of a trained network: more blocks, wider feed-forward layers.

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
  their slots (``bias.FINE_LENGTHSCALES``).

The grown network's predictions equal the source's (up to float rounding) until it is trained;
every other part of the architecture must match (settings without weights, such as
``trained_context``, are taken from the target).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn.config import TNPKRConfig
from botorch_tnpkr.nn.model import TNPKR

GROWABLE = ("num_blocks", "dim_ffn", "ard_bias", "fine_basis")
# Settings without weights: they may differ freely (the grown network takes the target's).
UNWEIGHTED = ("trained_context",)


def growth_description(source: TNPKRConfig, target: TNPKRConfig) -> str:
    """What ``grow_network`` would change, e.g. ``"num_blocks 4 -> 6, dim_ffn 128 -> 256"``.

    Empty when the two configurations are equal up to ``UNWEIGHTED`` settings; raises
    ``ConfigError`` when ``target`` cannot be grown from ``source`` (a field other than
    ``GROWABLE`` differs, or one shrinks).
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
    return ", ".join(changes)


def _zero_(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@torch.no_grad()
def grow_network(source: TNPKR, config: TNPKRConfig, seed: int = 0) -> TNPKR:
    """A network of architecture ``config`` that computes what ``source`` computes.

    Args:
        source: A trained network (left unchanged).
        config: The grown architecture; only ``GROWABLE`` fields may differ from
            ``source.config``, and only upwards (``ard_bias`` False -> True; trained fine
            basis functions are kept and new ones appended).
        seed: Seeds the random initialisation of the new weights whose outputs are zeroed
            (their inputs stay random so that they receive gradients once trained).

    Returns:
        A new ``TNPKR`` on ``source``'s device and dtype.
    """
    growth_description(source.config, config)
    param = next(source.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = TNPKR(config).to(device=param.device, dtype=param.dtype)
    # state_dict() tensors share storage with the parameters: copying into them fills ``grown``.
    src, dst = source.state_dict(), grown.state_dict()
    old_ffn = source.config.dim_ffn
    for name, value in src.items():
        target = dst[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif name.endswith(("ffn.0.weight", "ffn.0.bias")):  # the trained hidden units first
            target[:old_ffn].copy_(value)
        elif name.endswith("ffn.2.weight"):  # dim_model x dim_ffn: new units' outputs are 0
            target.zero_()
            target[:, :old_ffn].copy_(value)
        elif name.endswith(("bias.fine_amplitude", "bias.fine_log_width")):  # H x G: append
            target[:, : value.shape[1]].copy_(value)  # new amplitudes are 0 from __init__
        else:  # growth_description admits no other difference
            raise ConfigError(f"Unexpected shape change of {name} while growing the network.")
    for block in grown.blocks[source.config.num_blocks :]:
        _zero_(block.attention.out_proj)
        _zero_(block.ffn[-1])
    return grown
