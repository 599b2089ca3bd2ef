"""``RunOptions(init_from=...)``: training that starts from a pretrained network's weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKR, load_network, save_network
from botorch_tnpkr.train import RunOptions, get_preset, train
from botorch_tnpkr.train.state import STATE_FILE, load_state


def _source(tmp_path: Path, **changes) -> Path:
    config = get_preset("tiny").model.replace(**changes)
    torch.manual_seed(123)
    network = TNPKR(config)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.5)  # far from any fresh initialisation
    path = tmp_path / "source.safetensors"
    save_network(network, path)
    return path


def test_training_starts_from_the_given_weights(tmp_path: Path) -> None:
    source = _source(tmp_path)
    # A learning rate of ~0 keeps the weights where they started.
    preset = dataclasses.replace(get_preset("tiny"), lr=1e-12, total_steps=2)
    opts = dict(progress=False, threads=1, seed=0)
    train(preset, RunOptions(run_dir=tmp_path / "ft", init_from=source, **opts))
    train(preset, RunOptions(run_dir=tmp_path / "scratch", **opts))
    start = load_network(source).state_dict()
    tuned = load_state(tmp_path / "ft" / STATE_FILE)["model"]
    scratch = load_state(tmp_path / "scratch" / STATE_FILE)["model"]
    for key, value in start.items():
        torch.testing.assert_close(tuned[key], value, rtol=0, atol=1e-6)
    assert any(not torch.allclose(scratch[k], v) for k, v in start.items())
    exported = load_network(tmp_path / "ft" / "latest.safetensors").state_dict()
    torch.testing.assert_close(exported, start, rtol=0, atol=1e-6)


def test_a_different_architecture_is_rejected_before_writing(tmp_path: Path) -> None:
    source = _source(tmp_path, dim_model=32)
    run_dir = tmp_path / "ft"
    options = RunOptions(run_dir=run_dir, init_from=source, progress=False, threads=1)
    with pytest.raises(ConfigError, match="load_checkpoint"):
        train(get_preset("tiny"), options)
    assert not (run_dir / STATE_FILE).exists()


def test_resume_ignores_init_from(tmp_path: Path) -> None:
    preset = get_preset("tiny")
    run_dir = tmp_path / "run"
    train(preset, RunOptions(run_dir=run_dir, stop_after=3, progress=False, threads=1))
    other = _source(tmp_path, dim_model=32)  # would be rejected if it were loaded
    resumed = RunOptions(run_dir=run_dir, resume=True, init_from=other, progress=False)
    assert train(preset, resumed)["step"] == preset.total_steps


def test_a_smaller_source_is_grown_into_the_preset(tmp_path: Path) -> None:
    """init_from a network with fewer blocks and a narrower FFN: it is grown (nn.grow), so
    the fine-tune starts from the source's predictions, and the run says so."""
    source = _source(tmp_path)
    tiny = get_preset("tiny")
    preset = dataclasses.replace(
        tiny,
        model=tiny.model.replace(num_blocks=2, dim_ffn=48),
        lr=1e-12,
        total_steps=2,
    )
    run_dir = tmp_path / "grown"
    train(preset, RunOptions(run_dir=run_dir, init_from=source, progress=False, threads=1))
    tuned = load_network(run_dir / "latest.safetensors")
    assert tuned.config == preset.network_config
    original = load_network(source).eval()
    gen = torch.Generator().manual_seed(0)
    xc, yc = torch.rand(2, 9, 3, generator=gen), torch.randn(2, 9, generator=gen)
    xt = torch.rand(2, 5, 3, generator=gen)
    with torch.no_grad():
        want, got = original(xc, yc, xt), tuned.eval()(xc, yc, xt)
    torch.testing.assert_close(got.mean, want.mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.fvar, want.fvar, rtol=1e-4, atol=1e-6)
    note = load_state(run_dir / STATE_FILE)["init_from"]
    assert "grown: num_blocks 1 -> 2, dim_ffn 32 -> 48" in note


def test_fine_tune_keeps_the_sources_longer_trained_context(tmp_path: Path) -> None:
    """A fine-tune on shorter contexts must not rescale attention where the source trained."""
    tiny = get_preset("tiny")  # contexts up to 16
    source = _source(tmp_path, trained_context=64)
    opts = dict(progress=False, threads=1, seed=0, stop_after=1)
    train(tiny, RunOptions(run_dir=tmp_path / "ft", init_from=source, **opts))
    assert load_network(tmp_path / "ft" / "latest.safetensors").config.trained_context == 64
    resumed = dict(opts, stop_after=2)
    train(tiny, RunOptions(run_dir=tmp_path / "ft", resume=True, **resumed))
    assert load_network(tmp_path / "ft" / "latest.safetensors").config.trained_context == 64
    (tmp_path / "short").mkdir()
    short = _source(tmp_path / "short", trained_context=8)
    train(tiny, RunOptions(run_dir=tmp_path / "ft8", init_from=short, **opts))
    assert load_network(tmp_path / "ft8" / "latest.safetensors").config.trained_context == 16


def test_bo_fine_tune_preset_takes_exact_deep_weights_unchanged() -> None:
    """``exact-bo`` starts from ``exact-deep``'s network as it is (no growth), on a prior
    that leans towards BO-shaped contexts and smoother kernels."""
    deep, bo = get_preset("exact-deep"), get_preset("exact-bo")
    assert bo.network_config == deep.network_config
    assert bo.prior.bo_share > deep.prior.bo_share
    rough = bo.prior.kernels.index("matern12")
    assert bo.prior.kernel_weights[rough] < deep.prior.kernel_weights[rough]
    assert bo.prior.max_context == deep.prior.max_context
    assert bo.standardize and bo.lr < deep.lr
