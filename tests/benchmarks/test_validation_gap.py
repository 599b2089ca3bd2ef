"""validation_gap scores a network on a preset's validation set as the training run does."""

from __future__ import annotations

import json

import pytest

from benchmarks import validation_gap
from botorch_tnpkr.train import RunOptions, get_preset, train


def test_matches_what_training_logged(tmp_path):
    run = tmp_path / "run"
    train(get_preset("tiny"), RunOptions(run_dir=run, progress=False, threads=1, stop_after=10))
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    val = [r for r in logged if r["step"] == 10 and "val_gap_y" in r][-1]["val_gap_y"]
    out = tmp_path / "v.json"
    records = validation_gap.main(
        ["--preset", "tiny", "--checkpoints", str(run / "latest.safetensors"), "--out", str(out)]
    )
    assert json.loads(out.read_text()) == records
    (record,) = records
    assert record["batches"] == get_preset("tiny").val_batches
    assert record["val_gap_y"] == pytest.approx(val, rel=1e-6)
    # tiny's two batches have 0 and 8 context points in d = 1: only the small group is filled.
    assert record["groups"]["n <= 32"] == pytest.approx(record["val_gap_y"])
    assert record["groups"]["dense, d <= 3"] is None
    assert record["groups"]["dense, d = 1"] is None
    cells = [(b["d"], b["n"]) for b in record["per_batch"]]
    assert cells == [(1, 0), (1, 8)]
    mean = sum(b["gap_y"] for b in record["per_batch"]) / len(cells)
    assert mean == pytest.approx(record["val_gap_y"])
