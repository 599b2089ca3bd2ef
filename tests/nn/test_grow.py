"""``nn.grow``: more blocks and wider FFNs that start as the identity of a trained network."""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKR
from botorch_tnpkr.nn.grow import grow_network, growth_description
from tests.nn.helpers import make_model, make_task


@pytest.mark.parametrize("attention", ["softmax", "scan", "dka", "performer"])
def test_grown_network_predicts_what_the_source_predicts(attention: str) -> None:
    source = make_model(attention)
    with torch.no_grad():  # weights far from a fresh initialisation
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = {k: v.clone() for k, v in source.state_dict().items()}
    config = source.config.replace(num_blocks=4, dim_ffn=48)
    grown = grow_network(source, config).eval()
    assert grown.config == config
    assert grown.num_parameters > source.num_parameters
    xc, yc, xt = make_task(nc=12, nt=7)
    with torch.no_grad():
        want, got = source(xc, yc, xt), grown(xc, yc, xt)
    for name in ("mean", "fvar", "noise_var"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-10, atol=1e-12)
    for key, value in source.state_dict().items():  # the source is left as it was
        assert torch.equal(value, before[key])


def _grow_check_and_backprop(source, config):
    """Grow ``source`` into ``config``, check it predicts what ``source`` does (d = 3), then
    run one training-mode backward pass; returns the grown network with its gradients."""
    grown = grow_network(source, config).eval()
    xc, yc, xt = make_task(nc=12, nt=7, d=3)
    with torch.no_grad():
        want, got = source(xc, yc, xt), grown(xc, yc, xt)
    for name in ("mean", "fvar", "noise_var"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-10, atol=1e-12)
    grown.train()
    pred = grown(xc, yc, xt)
    ((pred.mean - torch.cos(xt.sum(-1))) ** 2 / pred.yvar + pred.yvar.log()).mean().backward()
    return grown


def test_ard_growth_predicts_what_the_source_predicts_and_its_scales_train() -> None:
    source = make_model("softmax")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = source.config.replace(ard_bias=True, num_blocks=3)
    assert growth_description(source.config, config) == "num_blocks 2 -> 3, ard_bias False -> True"
    grown = _grow_check_and_backprop(source, config)
    # The zeroed ARD layers receive gradients and move (no dead weights).
    for block in grown.blocks[:2]:  # trained blocks: their attention output is live
        assert block.attention.ard.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shrink ard_bias"):
        growth_description(config, source.config.replace(num_blocks=3))


def test_fine_basis_growth_predicts_what_the_source_predicts_and_trains() -> None:
    source = make_model("scan", ard_bias=True)
    config = source.config.replace(fine_basis=2)
    assert growth_description(source.config, config) == "fine_basis 0 -> 2"
    grown = _grow_check_and_backprop(source, config)
    for block in grown.blocks:  # the zero amplitudes receive gradients (no dead weights)
        assert block.attention.bias.fine_amplitude.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shrink fine_basis"):
        growth_description(config, source.config)


def test_fine_basis_grows_again_keeping_the_trained_functions() -> None:
    """2 -> 4 fine functions: the trained ones (random amplitudes and widths here) stay in
    their slots, the new ones start at amplitude 0 with a fresh basis's widths, and train."""
    source = make_model("softmax", ard_bias=True, fine_basis=2)
    with torch.no_grad():
        for block in source.blocks:
            block.attention.bias.fine_log_width.add_(
                torch.randn_like(block.attention.bias.fine_log_width)
            )
    config = source.config.replace(fine_basis=4)
    assert growth_description(source.config, config) == "fine_basis 2 -> 4"
    grown = _grow_check_and_backprop(source, config)
    fresh = TNPKR(config).blocks[0].attention.bias.fine_log_width
    for old, new in zip(source.blocks, grown.blocks, strict=True):
        old, new = old.attention.bias, new.attention.bias
        assert torch.equal(new.fine_amplitude[:, :2], old.fine_amplitude)
        assert torch.equal(new.fine_log_width[:, :2], old.fine_log_width)
        assert torch.equal(new.fine_amplitude[:, 2:], torch.zeros(config.num_heads, 2))
        torch.testing.assert_close(new.fine_log_width[:, 2:], fresh[:, 2:].to(new.fine_log_width))
        assert new.fine_amplitude.grad[:, 2:].abs().sum() > 0


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({"dim_model": 32}, "dim_model 16 -> 32"),  # 2 heads, each twice as wide
        ({"dim_model": 48, "num_heads": 6}, "dim_model 16 -> 48, num_heads 2 -> 6"),  # new heads
        ({"dim_model": 64, "num_heads": 4, "dim_ffn": 40, "num_blocks": 3}, None),  # both, more
    ],
)
@pytest.mark.parametrize("attention", ["softmax", "scan"])
def test_width_growth_predicts_what_the_source_predicts(
    attention: str, changes: dict, description: str | None
) -> None:
    """Copied token channels, split heads or new heads: the same predictions, with ARD
    distances and fine functions, and copies that separate once trained."""
    source = make_model(attention, ard_bias=True, fine_basis=2)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = source.config.replace(**changes)
    if description is not None:
        assert growth_description(source.config, config) == description
    grown = _grow_check_and_backprop(source, config)
    d_old = source.config.dim_model
    first = grown.blocks[0]
    # Copies of a token channel are read through different weights, so they get different
    # gradients where they are written, and training separates them.
    w = first.ffn[2].weight.grad
    assert not torch.allclose(w[:d_old], w[d_old : 2 * d_old])
    # The readers' columns of the copies sum to the old weight (exact preservation).
    read = first.ffn[0].weight[: source.config.dim_ffn]
    copies = read.unflatten(1, (-1, d_old)).sum(1)
    torch.testing.assert_close(copies, source.blocks[0].ffn[0].weight)
    assert not torch.equal(read[:, :d_old], read[:, d_old : 2 * d_old])


def test_width_growth_without_noise_keeps_exact_copies() -> None:
    source = make_model("softmax")
    grown = grow_network(source, source.config.replace(dim_model=32), noise=0.0)
    read = grown.blocks[1].attention.q_proj.weight
    assert torch.equal(read[:, :16], read[:, 16:])
    # Each head's queries are copies of the old head's, divided by sqrt(2).
    old_q = source.blocks[1].attention.q_proj.weight
    torch.testing.assert_close(read[:8, :16] * 2 * 2**0.5, old_q[:8])
    torch.testing.assert_close(read[8:16, :16], read[:8, :16])


def test_new_capacity_trains() -> None:
    """Zeroed outputs must not make dead weights: after a few steps every new tensor moved."""
    source = make_model("softmax")
    grown = grow_network(source, source.config.replace(num_blocks=3, dim_ffn=40))
    start = {k: v.clone() for k, v in grown.state_dict().items()}
    optimizer = torch.optim.SGD(grown.parameters(), lr=1e-2)
    xc, yc, xt = make_task(nc=12, nt=7)
    yt = torch.cos(xt.sum(-1))
    for _ in range(3):
        optimizer.zero_grad()
        pred = grown(xc, yc, xt)
        loss = ((pred.mean - yt) ** 2 / pred.yvar + pred.yvar.log()).mean()
        loss.backward()
        optimizer.step()
    new_block = [k for k in start if k.startswith("blocks.2.") and "norm" not in k]
    assert new_block
    for key in [*new_block, "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight"]:
        assert not torch.equal(grown.state_dict()[key], start[key]), key
    hidden = grown.blocks[0].ffn[2].weight[:, source.config.dim_ffn :]
    assert hidden.abs().sum() > 0  # the added hidden units of a trained block learn too


def test_growth_refuses_anything_but_growth() -> None:
    config = make_model("softmax").config
    assert growth_description(config, config) == ""
    assert growth_description(config, config.replace(num_blocks=5)) == "num_blocks 2 -> 5"
    with pytest.raises(ConfigError, match="shrink num_blocks"):
        growth_description(config, config.replace(num_blocks=1))
    with pytest.raises(ConfigError, match="shrink dim_model"):
        growth_description(config, config.replace(dim_model=8, num_heads=1))
    with pytest.raises(ConfigError, match="integer factor"):
        growth_description(config, config.replace(dim_model=24))
    with pytest.raises(ConfigError, match="integer factor"):  # head width 8 -> 12
        growth_description(config, config.replace(dim_model=48, num_heads=4))
    with pytest.raises(ConfigError, match="exact backend"):
        growth_description(
            config.replace(attention="dka"), config.replace(attention="dka", dim_model=32)
        )
    with pytest.raises(ConfigError, match="attention"):
        grow_network(make_model("softmax"), config.replace(attention="dka"))


def test_exact_deep_preset_grows_from_the_shipped_lineage() -> None:
    """The preset's documented source (exact-std, as tnpkr-exact ships it) grows into it."""
    from botorch_tnpkr.checkpoints import load_checkpoint
    from botorch_tnpkr.train import get_preset

    deep, std = get_preset("exact-deep").model, get_preset("exact-std").model
    assert growth_description(std, deep) == "num_blocks 4 -> 6, dim_ffn 128 -> 256"
    shipped = load_checkpoint("tnpkr-exact")
    if shipped.config == std:  # until a grown network ships in its place
        grown = grow_network(shipped, deep).eval()
        xc, yc, xt = make_task(nc=20, nt=5, d=3, dtype=torch.float32)
        with torch.no_grad():
            want, got = shipped.eval()(xc, yc, xt), grown(xc, yc, xt)
        torch.testing.assert_close(got.mean, want.mean, rtol=1e-4, atol=1e-5)


def _assert_preset_grows_shipped(checkpoint: str, source: str, target: str, change: str):
    """Preset ``target`` grows preset ``source``'s network as ``change`` says and, untrained,
    predicts what the shipped ``checkpoint`` does while that is ``source``'s network."""
    from botorch_tnpkr.checkpoints import load_checkpoint
    from botorch_tnpkr.train import get_preset

    small, big = get_preset(source).model, get_preset(target).model
    assert growth_description(small, big) == change
    # float64: distances computed in another order (ARD's) round differently in float32.
    shipped = load_checkpoint(checkpoint).double().eval()
    if shipped.config.replace(trained_context=None) == small:  # while source's is shipped
        grown = grow_network(shipped, big).eval()
        xc, yc, xt = make_task(nc=20, nt=5, d=3, dtype=torch.float64)
        with torch.no_grad():
            want, got = shipped(xc, yc, xt), grown(xc, yc, xt)
        torch.testing.assert_close(got.mean, want.mean, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(got.fvar, want.fvar, rtol=1e-8, atol=1e-10)


def test_exact_deeper_preset_grows_the_shipped_network() -> None:
    """``exact-deeper`` grows the shipped 6-block network by two blocks."""
    _assert_preset_grows_shipped("tnpkr-exact", "exact-deep", "exact-deeper", "num_blocks 6 -> 8")


def test_dka_deep_preset_grows_the_shipped_linear_network() -> None:
    """``dka-deep`` grows the shipped ``tnpkr-dka`` (``dka-std``'s network) to 6 blocks and a
    256-unit FFN."""
    _assert_preset_grows_shipped(
        "tnpkr-dka", "dka-std", "dka-deep", "num_blocks 4 -> 6, dim_ffn 128 -> 256"
    )


def test_exact_ard_preset_grows_the_shipped_network() -> None:
    """``exact-ard`` adds ARD distances to the shipped 6-block network, predicting what it
    predicts until trained."""
    _assert_preset_grows_shipped("tnpkr-exact", "exact-deep", "exact-ard", "ard_bias False -> True")


def test_exact_fine_preset_grows_the_shipped_network() -> None:
    """``exact-fine`` adds fine kernel-bias functions to the shipped ARD network, predicting
    what it predicts until trained."""
    _assert_preset_grows_shipped("tnpkr-exact", "exact-ard", "exact-fine", "fine_basis 0 -> 2")


def test_exact_fine4_preset_grows_the_shipped_network() -> None:
    """``exact-fine4`` adds 2 fine functions per head to the shipped fine network."""
    _assert_preset_grows_shipped("tnpkr-exact", "exact-fine", "exact-fine4", "fine_basis 2 -> 4")


def test_exact_wide_preset_grows_the_shipped_network() -> None:
    """``exact-wide`` doubles the shipped fine network's width, predicting what it predicts."""
    _assert_preset_grows_shipped(
        "tnpkr-exact", "exact-fine", "exact-wide", "dim_model 64 -> 128, dim_ffn 256 -> 512"
    )


def test_exact_nearpath_preset_grows_the_shipped_network() -> None:
    """``exact-nearpath`` adds the nearest-neighbour readout to the shipped wide network,
    predicting what it predicts until trained."""
    for preset in ("exact-nearpath", "exact-peak"):
        _assert_preset_grows_shipped(
            "tnpkr-exact", "exact-wide-lo", preset, "near_path False -> True"
        )
