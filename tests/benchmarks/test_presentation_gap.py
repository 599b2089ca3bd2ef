"""The presentation-gap benchmark scores the same tasks raw and standardised."""

from __future__ import annotations

import json

from benchmarks import presentation_gap


def test_smoke_scores_raw_and_standardised_views(tmp_path):
    result = presentation_gap.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "presentation_gap_smoke.json").read_text())
    rows = saved["checkpoints"]["tnpkr-exact"]["rows"]
    assert [r["n"] for r in rows] == [3, 16]
    for row in rows:
        for key in ("raw_mean", "std_mean", "raw_median", "std_median"):
            assert row[key] >= 0.0  # a KL per point
    # The two views differ for a network trained on raw draws (they are different inputs).
    assert any(abs(r["raw_mean"] - r["std_mean"]) > 1e-4 for r in rows)
    assert result["checkpoints"]["tnpkr-exact"]["step"] > 0
    assert "| 16 |" in (tmp_path / "presentation_gap_smoke.md").read_text()
