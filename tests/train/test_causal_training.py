"""Presets that train a share of batches through the causal path of joint predictions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKR
from botorch_tnpkr.priors import PriorConfig, sample_tasks
from botorch_tnpkr.train import RunOptions, get_preset, train
from botorch_tnpkr.train.causal_batch import causal_prediction, num_added
from botorch_tnpkr.train.objective import oracle_gap
from botorch_tnpkr.train.state import STATE_FILE, load_state


def test_num_added_leaves_at_least_one_encoded_point() -> None:
    gen = torch.Generator().manual_seed(0)
    assert num_added(0, 8, gen) == 0 and num_added(1, 8, gen) == 0
    draws = {num_added(5, 8, gen) for _ in range(200)}
    assert draws == {1, 2, 3, 4}
    assert {num_added(100, 3, gen) for _ in range(200)} == {1, 2, 3}


def test_causal_prediction_equals_encoding_for_one_block_with_the_same_statistics() -> None:
    # With one block, adding points equals encoding them when y_loc / y_scale stay the same.
    # Two added points at loc +- scale keep both (the scale's shrinkage prior included).
    config = get_preset("tiny").model.replace(num_blocks=1)
    torch.manual_seed(0)
    network = TNPKR(config).double().eval()
    prior = PriorConfig(max_dim=4, max_context=16, num_targets=5)
    batch = sample_tasks(
        prior, 3, torch.Generator().manual_seed(1), num_context=6, dim=2, dtype=torch.float64
    )
    base = network.encode(batch.xc[:, :4], batch.yc[:, :4])
    yc = batch.yc.clone()
    yc[:, 4], yc[:, 5] = base.y_loc + base.y_scale, base.y_loc - base.y_scale
    batch = dataclasses.replace(batch, yc=yc)
    full_cache = network.encode(batch.xc, batch.yc)
    torch.testing.assert_close(full_cache.y_loc, base.y_loc)
    torch.testing.assert_close(full_cache.y_scale, base.y_scale)
    full = network.predict(full_cache, batch.xt)
    with torch.no_grad():
        causal = causal_prediction(network, batch, added=2)
    torch.testing.assert_close(causal.mean, full.mean)
    torch.testing.assert_close(causal.fvar, full.fvar)
    torch.testing.assert_close(causal.noise_var, full.noise_var)
    # ... and the added points matter: the first four alone predict otherwise.
    assert not torch.allclose(network.predict(base, batch.xt).mean, full.mean, atol=1e-4)


def test_a_causal_preset_trains_every_parameter_and_resumes(tmp_path: Path) -> None:
    preset = dataclasses.replace(get_preset("tiny"), causal_share=1.0, causal_max_added=3)
    run = tmp_path / "run"
    train(preset, RunOptions(run_dir=run, stop_after=6, progress=False, threads=1))
    torch.manual_seed(0)
    start = TNPKR(preset.model).state_dict()
    trained = load_state(run / STATE_FILE)["model"]
    assert all(not torch.equal(start[k], trained[k]) for k in start)  # gradients reach all
    out = train(preset, RunOptions(run_dir=run, resume=True, progress=False, threads=1))
    assert out["step"] == preset.total_steps


def test_causal_path_is_differentiable_and_scored_by_the_oracle() -> None:
    config = get_preset("tiny").model
    network = TNPKR(config)
    prior = PriorConfig(max_dim=4, max_context=16, num_targets=5)
    batch = sample_tasks(prior, 4, torch.Generator().manual_seed(2), num_context=9)
    pred = causal_prediction(network, batch, added=3, yvar=batch.noise.expand_as(batch.yc))
    assert pred.mean.shape == batch.oracle_mean.shape == pred.fvar.shape
    loss = oracle_gap(pred, batch).loss
    loss.backward()
    assert torch.isfinite(loss) and network.embed[0].weight.grad.abs().sum() > 0


def test_causal_presets_are_validated_and_refuse_ddp(monkeypatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="causal_share"):
        dataclasses.replace(get_preset("tiny"), causal_share=1.5)
    with pytest.raises(ConfigError, match="causal_max_added"):
        dataclasses.replace(get_preset("tiny"), causal_max_added=0)
    with pytest.raises(ConfigError, match="gap_cap"):
        dataclasses.replace(get_preset("tiny"), gap_cap=0.0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    preset = dataclasses.replace(get_preset("tiny"), causal_share=0.5)
    with pytest.raises(ConfigError, match="single process"):
        train(preset, RunOptions(run_dir=tmp_path / "ddp", progress=False))
    assert not (tmp_path / "ddp" / STATE_FILE).exists()
