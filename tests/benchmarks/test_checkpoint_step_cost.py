"""checkpoint_step_cost times real BO steps of several networks side by side."""

from __future__ import annotations

import json

from benchmarks import checkpoint_step_cost


def test_quick_mode_times_every_checkpoint(tmp_path):
    out = tmp_path / "cost.json"
    report = checkpoint_step_cost.main(
        ["--quick", "--checkpoints", "tnpkr-dka", "tnpkr-exact", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    records = report["records"]
    assert [(r["n"], r["checkpoint"]) for r in records] == [
        (64, "tnpkr-dka"),
        (64, "tnpkr-exact"),
    ]
    assert records[0]["ratio"] == 1.0
    for r in records:
        assert r["median_s"] > 0
    assert abs(records[1]["ratio"] - records[1]["median_s"] / records[0]["median_s"]) < 1e-12


def test_both_calibration_settings_side_by_side(tmp_path):
    args = ["--quick", "--checkpoints", "tnpkr-exact", "--calibration", "both"]
    report = checkpoint_step_cost.main([*args, "--out", str(tmp_path / "cost.json")])
    records = report["records"]
    assert [(r["checkpoint"], r["calibrate"]) for r in records] == [
        ("tnpkr-exact", False),
        ("tnpkr-exact", True),
    ]
    assert records[0]["ratio"] == 1.0 and records[1]["median_s"] > 0
