"""User-defined kernels: registered by name, used by the sampler, the oracle, training and
the evaluation exactly like the built-in ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.evaluate import evaluate_cell
from botorch_tnpkr.evaluate import main as evaluate_main
from botorch_tnpkr.nn import TNPKRConfig, load_network
from botorch_tnpkr.priors import (
    KERNELS,
    PriorConfig,
    kernel_index,
    kernel_matrix,
    kernel_names,
    register_kernel,
    sample_tasks,
)
from botorch_tnpkr.train import RunOptions, TrainPreset, train
from botorch_tnpkr.train.state import STATE_FILE, load_state

PERIOD = 0.25


def periodic(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    diff = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).abs()  # (B, n1, n2, d)
    s = torch.sin(math.pi * diff / PERIOD) / lengthscale.unsqueeze(1).unsqueeze(1)
    return torch.exp(-2 * s.pow(2).sum(-1))


def additive_rbf(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    diff = (x1.unsqueeze(-2) - x2.unsqueeze(-3)) / lengthscale.unsqueeze(1).unsqueeze(1)
    return torch.exp(-0.5 * diff.pow(2)).mean(-1)


register_kernel("test-periodic", periodic, overwrite=True)
register_kernel("test-additive", additive_rbf, overwrite=True)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registration_guards() -> None:
    assert kernel_names()[: len(KERNELS)] == KERNELS
    assert {"test-periodic", "test-additive"} <= set(kernel_names())
    with pytest.raises(ConfigError, match="built-in"):
        register_kernel("rbf", periodic)
    with pytest.raises(ConfigError, match="already registered"):
        register_kernel("test-periodic", periodic)
    with pytest.raises(ConfigError, match="callable"):
        register_kernel("test-not-callable", 3.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Unknown kernel 'nope'"):
        kernel_index("nope")


def test_prior_config_checks_kernel_names_and_weights() -> None:
    with pytest.raises(ConfigError, match="Unknown kernel 'not-registered'"):
        PriorConfig(kernels=("not-registered",), kernel_weights=(1.0,))
    with pytest.raises(ConfigError, match="kernel_weights needs 1"):
        PriorConfig(kernels=("test-periodic",))  # the four default weights do not fit
    with pytest.raises(ConfigError, match="all be zero"):
        PriorConfig(kernels=("test-periodic", "rbf"), kernel_weights=(0.0, 0.0))
    assert PriorConfig().kernels == KERNELS


def test_mixed_batches_use_each_tasks_own_kernel() -> None:
    prior = PriorConfig(
        max_dim=2, kernels=("rbf", "test-periodic", "test-additive"), kernel_weights=(1, 1, 1)
    )
    batch = sample_tasks(prior, 24, _gen(1), dim=2, num_context=6, dtype=torch.float64)
    h = batch.hyper
    ids = set(h.kernel_id.tolist())
    assert ids == {kernel_index(k) for k in prior.kernels}
    k = kernel_matrix(batch.xc, batch.xt, h.kernel_id, h.lengthscale, h.outputscale)
    for i in range(24):
        name = kernel_names()[int(h.kernel_id[i])]
        x1, x2, ls = batch.xc[i : i + 1], batch.xt[i : i + 1], h.lengthscale[i : i + 1]
        if name == "rbf":
            expected = torch.exp(-0.5 * torch.cdist(x1 / ls, x2 / ls).pow(2))
        else:
            expected = {"test-periodic": periodic, "test-additive": additive_rbf}[name](x1, x2, ls)
        torch.testing.assert_close(k[i], expected[0] * h.outputscale[i])


def test_oracle_is_calibrated_under_a_registered_kernel() -> None:
    """Sampler and oracle use the same registered kernel: z-scores are standard normal."""
    prior = PriorConfig(
        max_dim=1, kernels=("test-periodic",), kernel_weights=(1.0,), lengthscale_range=(0.5, 2)
    )
    batch = sample_tasks(
        prior, 64, _gen(5), dim=1, num_context=20, num_targets=32, dtype=torch.float64
    )
    z = (batch.ft - batch.oracle_mean) / batch.oracle_var.sqrt()
    assert abs(float(z.mean())) < 0.15
    assert 0.8 < float(z.var()) < 1.25
    # Periodic draws: the oracle predicts the same at x and x + period.
    x = torch.full((64, 1, 1), 0.1, dtype=torch.float64)
    from botorch_tnpkr.priors import gp_posterior

    m1, _ = gp_posterior(batch.xc, batch.yc, batch.mask, x, batch.hyper)
    m2, _ = gp_posterior(batch.xc, batch.yc, batch.mask, x + PERIOD, batch.hyper)
    torch.testing.assert_close(m1, m2, rtol=1e-5, atol=1e-6)


def test_a_kernel_of_the_wrong_shape_is_named() -> None:
    register_kernel("test-bad-shape", lambda x1, x2, ls: x1.sum(-1), overwrite=True)
    prior = PriorConfig(max_dim=2, kernels=("test-bad-shape",), kernel_weights=(1.0,))
    with pytest.raises(ConfigError, match="'test-bad-shape' returned shape"):
        sample_tasks(prior, 2, _gen(), dim=2, num_context=3)


def test_training_and_evaluation_with_a_registered_kernel(tmp_path: Path) -> None:
    prior = PriorConfig(
        max_dim=2,
        kernels=("test-periodic",),
        kernel_weights=(1.0,),
        lengthscale_range=(0.5, 2.0),
        max_context=16,
        num_targets=8,
    )
    preset = TrainPreset(
        name="test-periodic-prior",
        model=TNPKRConfig(
            max_dim=2, dim_model=16, num_heads=2, num_blocks=1, dim_ffn=32, num_basis=3
        ),
        prior=prior,
        batch_size=4,
        total_steps=6,
        warmup_steps=2,
        context_start=8,
        val_every=3,
        val_batches=2,
    )
    result = train(preset, RunOptions(run_dir=tmp_path, progress=False, threads=1))
    assert result["step"] == 6 and math.isfinite(result["best_val_gap_y"])
    state = load_state(tmp_path / STATE_FILE)
    assert json.loads(state["preset_json"])["prior"]["kernels"] == ["test-periodic"]
    network = load_network(tmp_path / "best.safetensors").double()  # as evaluate.main does

    cell = evaluate_cell(network, "test-periodic", 1, 8, tasks=3, targets=5, with_gp=True, seed=0)
    assert (
        math.isfinite(cell.model_ll)
        and math.isfinite(cell.gp_ll)
        and cell.kernel.startswith("test")
    )
    own = evaluate_cell(
        network, "test-periodic", 1, 8, tasks=3, targets=5, with_gp=False, seed=0, prior=prior
    )
    assert own.oracle_ll != cell.oracle_ll  # a different task distribution
    # The CLI accepts the registered name in this process and rejects unknown ones.
    out = tmp_path / "eval" / "report"
    args = ["--checkpoint", str(tmp_path / "best.safetensors"), "--dims", "1", "--sizes", "4"]
    args += ["--tasks", "2", "--targets", "4", "--no-gp", "--out", str(out)]
    assert evaluate_main([*args, "--kernels", "test-periodic"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["cells"][0]["kernel"] == "test-periodic"
    assert evaluate_main([*args, "--kernels", "nope"]) == 2
