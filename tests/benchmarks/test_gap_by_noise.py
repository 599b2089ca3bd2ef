"""The gap-by-noise benchmark scores the evaluation command's tasks, task by task."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from benchmarks import gap_by_noise
from botorch_tnpkr.checkpoints import load_checkpoint
from botorch_tnpkr.evaluate import (
    EVAL_SEED,
    cell_tasks,
    evaluate_cell,
    evaluation_prior,
    network_predictive,
)


def test_groups_are_ordered_and_cover_every_ratio():
    assert gap_by_noise.group_of(0.001) == "<0.003"
    assert gap_by_noise.group_of(0.003) == "0.003-0.01"
    assert gap_by_noise.group_of(0.05) == "0.03-0.1"
    assert gap_by_noise.group_of(5.0) == ">=0.1"
    edges = gap_by_noise.LENGTH_EDGES
    assert gap_by_noise.group_of(0.05, edges) == "<0.07"
    assert gap_by_noise.group_of(0.2, edges) == "0.15-0.4"
    assert gap_by_noise.group_of(30.0, edges) == ">=1"


def test_smoke_matches_the_evaluation_command(tmp_path):
    result = gap_by_noise.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "gap_by_noise_smoke.json").read_text())
    entry = saved["checkpoints"]["tnpkr-exact"]
    tasks = entry["tasks"]
    assert len(tasks) == 1 * 2 * 2 * 6  # kernels x dims x sizes x tasks per cell
    assert set(entry["groups"]) == {"noise_ratio", "roughness", "anisotropy"}
    for key, groups in entry["groups"].items():
        grouped = [t for t in tasks if t[key] is not None]
        assert sum(g["tasks"] for g in groups) == len(grouped)
        # Only anisotropy leaves tasks out: the d = 1 ones.
        assert len(grouped) == (len(tasks) // 2 if key == "anisotropy" else len(tasks))
        assert sum(g["share_of_gap"] for g in groups) == pytest.approx(1.0)
        assert all(g["var_ratio"] > 0 for g in groups)
    # Roughness is the task's shortest lengthscale over sqrt(d), grouped by its edges.
    for task in tasks:
        assert task["roughness"] > 0
    rough = {g["group"]: g["tasks"] for g in entry["groups"]["roughness"]}
    counted = {}
    for task in tasks:
        name = gap_by_noise.group_of(task["roughness"], gap_by_noise.LENGTH_EDGES)
        counted[name] = counted.get(name, 0) + 1
    assert rough == counted
    # Per-task gaps average to the evaluation command's score of the same cell.
    network = load_checkpoint("tnpkr-exact").double().eval()
    cell = evaluate_cell(network, "rbf", 2, 32, 6, 64, False, EVAL_SEED)
    mine = [t["gap"] for t in tasks if t["d"] == 2 and t["n"] == 32]
    assert math.isclose(sum(mine) / len(mine), cell.gap, rel_tol=1e-9, abs_tol=1e-9)
    assert result["checkpoints"]["tnpkr-exact"]["step"] > 0
    table = (tmp_path / "gap_by_noise_smoke.md").read_text()
    assert "noise / signal" in table and "shortest lengthscale" in table
    entry_known = result["checkpoints"]["tnpkr-exact"]["mean_gap_known_noise"]
    assert entry_known == pytest.approx(sum(t["gap_known_noise"] for t in tasks) / len(tasks))
    assert "noise known" in table


def test_known_noise_is_given_in_the_units_of_the_task():
    """Scaling a task's values by c and its noise variance by c^2 scales the known-noise
    predictive by c (mean) and c^2 (variance): the noise reaches the network standardised
    as the context is; the noise-inferring predictive differs from it."""
    network = load_checkpoint("tnpkr-exact").double().eval()
    prior = evaluation_prior(network.config.max_dim, "rbf")
    batch = cell_tasks(prior, "rbf", 2, 32, 4, 16, EVAL_SEED)
    mean, var = network_predictive(network, batch, known_noise=True)
    c = 7.0
    scaled = dataclasses.replace(
        batch,
        yc=batch.yc * c,
        yt=batch.yt * c,
        hyper=dataclasses.replace(batch.hyper, noise=batch.hyper.noise * c**2),
    )
    mean_c, var_c = network_predictive(network, scaled, known_noise=True)
    torch.testing.assert_close(mean_c, mean * c, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(var_c, var * c**2, rtol=1e-8, atol=1e-12)
    inferred_mean, _ = network_predictive(network, batch)
    assert not torch.allclose(inferred_mean, mean)
