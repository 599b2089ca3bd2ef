"""variance_calibration scores the network without, with and with the best per-task factor."""

from __future__ import annotations

import json

import pytest

from benchmarks import variance_calibration


@pytest.mark.parametrize("layout", ["uniform", "bo"])
def test_smoke_scores_every_setting(tmp_path, layout):
    out = variance_calibration.main(["--smoke", "--layout", layout, "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / f"variance_calibration_{layout}_smoke.json").read_text())
    assert saved["rows"] == out["rows"] and len(out["rows"]) == 2
    for row in out["rows"]:
        # The best factor of each task maximises its likelihood given the same mean.
        assert row["bound"] <= row["off"] + 1e-12 and row["bound"] <= row["on"] + 1e-12
        assert row["on"] != row["off"] and row["factor_geomean"] > 0
        assert row["subset"] == row["on"]  # the same below max_points
        assert ("off_near" in row) == (layout == "bo")
    assert "| 24 |" in (tmp_path / f"variance_calibration_{layout}_smoke.md").read_text()


def test_beyond_max_points_scores_the_subset_folds_apart(tmp_path):
    """Above 512 points ``on`` holds out points of the whole context and ``subset`` draws the
    folds from 512 of them (the old default): two different factors."""
    argv = ["--sizes", "600", "--dims", "2", "--kernels", "rbf", "--tasks", "2"]
    out = variance_calibration.main([*argv, "--name", "big", "--out-dir", str(tmp_path)])
    (row,) = out["rows"]
    assert row["on"] != row["subset"]
    assert row["bound"] <= min(row["on"], row["subset"], row["off"]) + 1e-12
    assert (tmp_path / "variance_calibration_uniform_big.json").exists()
