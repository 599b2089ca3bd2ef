"""Training on contexts standardised as deployment presents them, the soft-capped loss and
``--init-from`` on the training CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from botorch.models.transforms.outcome import Standardize

from botorch_tnpkr.nn import TNPKR, Prediction, load_network, save_network
from botorch_tnpkr.priors import (
    PriorConfig,
    gp_posterior,
    sample_tasks,
    standardize_batch,
    standardize_context,
)
from botorch_tnpkr.train import RunOptions, get_preset, train
from botorch_tnpkr.train.loop import training_batch, validation_set
from botorch_tnpkr.train.objective import oracle_gap, soft_cap
from botorch_tnpkr.train.state import STATE_FILE, load_state

PRIOR = PriorConfig(max_dim=3, max_context=24, num_targets=10)


@pytest.mark.parametrize("n", [1, 2, 7, 24])
def test_standardize_context_matches_botorch_standardize(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    yc = 3.0 + 50.0 * torch.randn(4, n, generator=gen, dtype=torch.float64)
    out, loc, scale = standardize_context(yc)
    for i in range(4):
        transform = Standardize(m=1)
        expected, _ = transform(yc[i].unsqueeze(-1))
        torch.testing.assert_close(out[i], expected.squeeze(-1))
        torch.testing.assert_close(loc[i, 0], transform.means.squeeze())
        torch.testing.assert_close(scale[i, 0], transform.stdvs.squeeze())


def test_standardize_context_ignores_padding_and_handles_degenerate_contexts() -> None:
    yc = torch.tensor([[1.0, 3.0, 100.0], [2.0, 2.0, 2.0], [5.0, -7.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    out, loc, scale = standardize_context(yc, mask)
    torch.testing.assert_close(loc.squeeze(-1), torch.tensor([2.0, 2.0, 5.0], dtype=yc.dtype))
    # constant values and a single point keep a scale of 1, as Standardize does
    torch.testing.assert_close(scale.squeeze(-1)[1:], torch.ones(2, dtype=yc.dtype))
    torch.testing.assert_close(out[0, :2], torch.tensor([-1.0, 1.0], dtype=yc.dtype) / 2**0.5)
    assert out[0, 2] == 100.0 and out[2, 1] == -7.0  # padding untouched
    empty, loc0, scale0 = standardize_context(torch.zeros(2, 0))
    assert empty.shape == (2, 0) and bool((loc0 == 0).all()) and bool((scale0 == 1).all())


def test_standardized_batch_keeps_the_oracle_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    for bo_shaped in (False, True):
        raw = sample_tasks(PRIOR, 6, gen, num_context=12, bo_shaped=bo_shaped, dtype=torch.float64)
        std = standardize_batch(raw)
        torch.testing.assert_close(std.yc.mean(-1), torch.zeros(6, dtype=torch.float64))
        torch.testing.assert_close(std.yc.std(-1), torch.ones(6, dtype=torch.float64))
        # The exact GP under the moved hyperparameters reproduces the moved oracle.
        mean, var = gp_posterior(std.xc, std.yc, std.mask, std.xt, std.hyper)
        torch.testing.assert_close(mean, std.oracle_mean)
        torch.testing.assert_close(var, std.oracle_var)
        # The gap is a KL: the same prediction, moved with the data, keeps its gap.
        loc, scale = raw.yc.mean(-1, keepdim=True), raw.yc.std(-1, keepdim=True)
        pred = Prediction(
            mean=std.oracle_mean + 0.3, fvar=std.oracle_var * 2, noise_var=std.noise.expand(6, 10)
        )
        moved = Prediction(
            mean=pred.mean * scale + loc,
            fvar=pred.fvar * scale**2,
            noise_var=pred.noise_var * scale**2,
        )
        a, b = oracle_gap(pred, std), oracle_gap(moved, raw)
        torch.testing.assert_close(a.gap_y, b.gap_y)
        torch.testing.assert_close(a.gap_f, b.gap_f)
        assert float(a.gap_y) > 0.01


def test_soft_cap_is_the_gap_when_small_and_logarithmic_when_large() -> None:
    gap = torch.tensor([0.0, 0.01, 1.0, 1e4])
    capped = soft_cap(gap, 5.0)
    torch.testing.assert_close(capped[:2], gap[:2], atol=1e-5, rtol=1e-2)
    assert 0.85 < float(capped[2]) < 1.0
    assert float(capped[3]) < 40.0
    assert soft_cap(gap, None) is gap


def test_capped_loss_reports_plain_gaps() -> None:
    gen = torch.Generator().manual_seed(1)
    batch = sample_tasks(PRIOR, 4, gen, num_context=5)
    far = Prediction(
        mean=batch.oracle_mean + torch.tensor([0.0, 0.0, 0.0, 100.0]).unsqueeze(-1),
        fvar=batch.oracle_var,
        noise_var=batch.noise.expand_as(batch.oracle_var),
    )
    plain, capped = oracle_gap(far, batch), oracle_gap(far, batch, cap=5.0)
    torch.testing.assert_close(plain.gap_y, capped.gap_y)
    assert float(capped.loss) < 0.1 * float(plain.loss)


def test_a_standardizing_preset_trains_and_validates_on_standardized_tasks(tmp_path: Path) -> None:
    preset = dataclasses.replace(get_preset("tiny"), standardize=True, gap_cap=5.0)
    gen = torch.Generator().manual_seed(3)
    batch = training_batch(preset, gen, cap=16)
    if batch.yc.shape[-1] > 1:
        torch.testing.assert_close(
            batch.yc.mean(-1), torch.zeros(preset.batch_size), atol=1e-5, rtol=0
        )
    for val in validation_set(preset):
        if val.yc.shape[-1] > 1:
            torch.testing.assert_close(val.yc.std(-1), torch.ones(preset.batch_size))
    out = train(preset, RunOptions(run_dir=tmp_path / "run", progress=False, threads=1))
    assert out["step"] == preset.total_steps and torch.isfinite(torch.tensor(out["val_gap_y"]))


def test_exact_std_preset_fine_tunes_the_exact_architecture() -> None:
    std, base = get_preset("exact-std"), get_preset("exact-small")
    assert std.model == base.model  # so that --init-from the exact run is accepted
    assert std.standardize and std.gap_cap is not None
    assert std.prior.max_context >= 512


def test_cli_init_from(tmp_path: Path) -> None:
    config = get_preset("tiny").model
    torch.manual_seed(5)
    source = TNPKR(config)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.25)
    path = tmp_path / "src.safetensors"
    save_network(source, path)
    base = [sys.executable, "-m", "botorch_tnpkr.train", "--preset", "tiny", "--no-progress"]
    run = subprocess.run(
        [*base, "--run-dir", str(tmp_path / "ft"), "--stop-after", "1", "--init-from", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["step"] == 1
    tuned = load_state(tmp_path / "ft" / STATE_FILE)["model"]
    start = load_network(path).state_dict()
    moved = max(float((tuned[k] - v).abs().max()) for k, v in start.items())
    assert moved < 0.01  # one small step from the source, not a fresh initialisation

    bad = subprocess.run(
        [*base, "--run-dir", str(tmp_path / "bad"), "--init-from", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "error:" in bad.stderr
    assert not (tmp_path / "bad" / STATE_FILE).exists()
