"""The log-n scaling benchmark scores the same weights with and without it."""

import json

from benchmarks import log_n_scaling


def test_smoke_scores_both_settings_beyond_the_trained_context(tmp_path):
    result = log_n_scaling.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "log_n_scaling_smoke.json").read_text())
    trained = saved["trained_context"]
    assert saved["sizes"] == [trained + trained // 8]  # only beyond the trained size
    rows = saved["functions"]["rows"] + saved["prior"]["rows"]
    assert len(saved["functions"]["rows"]) == 2 and len(saved["prior"]["rows"]) == 1
    for row in rows:
        assert abs(row["diff"] - (row["on"] - row["off"])) < 1e-12
        assert row["on"] != row["off"]  # the scaling is active beyond the trained size
    for row in saved["prior"]["rows"]:
        assert row["on"] > 0 and row["off"] > 0  # gaps to the oracle are KLs
    assert result["prior"]["summary"][trained + trained // 8]["count"] == 1
    assert "share better with it" in (tmp_path / "log_n_scaling_smoke.md").read_text()
