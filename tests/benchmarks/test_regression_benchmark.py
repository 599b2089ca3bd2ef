"""The regression benchmark runs the evaluation command for each checkpoint and the GP."""

from __future__ import annotations

import json

import pytest

from benchmarks import regression


def test_smoke_scores_both_checkpoints_and_the_gp_on_the_same_tasks(tmp_path):
    result = regression.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "regression_smoke.json").read_text())
    assert (tmp_path / "regression_smoke.png").stat().st_size > 5000
    assert list(saved["checkpoints"]) == ["tnpkr-exact", "tnpkr-dka"]
    exact, dka = saved["checkpoints"]["tnpkr-exact"], saved["checkpoints"]["tnpkr-dka"]
    assert len(exact["cells"]) == len(dka["cells"]) == 4  # rbf x d {1, 2} x n {8, 32}
    assert all(c["gp_ll"] is not None for c in exact["cells"])
    assert all(c["gp_ll"] is None for c in dka["cells"])  # the GP is scored once
    for a, b in zip(exact["cells"], dka["cells"], strict=True):
        assert a["oracle_ll"] == pytest.approx(b["oracle_ll"])  # the same tasks
    assert exact["step"] > 0 and len(exact["sha256"]) == 64
    assert result["evaluate_args"][:2] == ["--kernels", "rbf"]
    table = (tmp_path / "regression_smoke.md").read_text()
    assert "| tnpkr-exact |" in table and "| SingleTaskGP (fitted by MLL) |" in table
    assert "| rbf | 2 | 32 |" in table and "| rbf | 32 |" in table  # by cell, by (kernel, n)
    # --report-only redraws the same table from the JSON without evaluating anything.
    (tmp_path / "regression_smoke.png").unlink()
    regression.main(["--smoke", "--report-only", "--out-dir", str(tmp_path)])
    assert (tmp_path / "regression_smoke.md").read_text() == table
    assert (tmp_path / "regression_smoke.png").is_file()


def test_gp_scores_are_reused_only_for_the_same_tasks(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    regression.main(["--smoke", "--out-dir", str(first)])
    earlier = first / "regression_smoke.json"
    regression.main(["--smoke", "--out-dir", str(second), "--gp-from", str(earlier)])
    table = (first / "regression_smoke.md").read_text()
    assert (second / "regression_smoke.md").read_text() == table  # no GP fitted, same result
    data = json.loads(earlier.read_text())
    data["checkpoints"]["tnpkr-exact"]["cells"][1]["oracle_ll"] += 0.5  # other tasks
    earlier.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other tasks in cell"):
        regression.main(["--smoke", "--out-dir", str(second), "--gp-from", str(earlier)])
