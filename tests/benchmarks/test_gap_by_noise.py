"""The gap-by-noise benchmark scores the evaluation command's tasks, task by task."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gap_by_noise
from botorch_tnpkr.checkpoints import load_checkpoint
from botorch_tnpkr.evaluate import EVAL_SEED, evaluate_cell


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
    assert set(entry["groups"]) == {"noise_ratio", "roughness"}
    for groups in entry["groups"].values():
        assert sum(g["tasks"] for g in groups) == len(tasks)
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
