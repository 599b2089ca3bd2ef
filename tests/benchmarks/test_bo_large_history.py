"""BO from large histories: the smoke run switches networks and marks the GP infeasible."""

from __future__ import annotations

import json

from benchmarks import bo_large_history


def test_smoke_times_steps_and_tracks_regret(tmp_path):
    report = bo_large_history.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "bo_large_history_smoke.json").read_text())
    assert (tmp_path / "bo_large_history_smoke.png").stat().st_size > 5000
    assert saved["results"] == report["results"] and saved["device"] == "cpu"
    rows = {(r["n"], r["method"]): r for r in saved["results"]}
    assert set(rows) == {(n, m) for n in (40, 120) for m in ("tnpkr", "gp", "sobol")}
    # linear_above=64 in smoke mode: the exact network at 40 points, the linear one at 120.
    assert rows[(40, "tnpkr")]["checkpoint"] == "tnpkr-exact"
    assert (rows[(120, "tnpkr")]["checkpoint"], rows[(120, "tnpkr")]["attention"]) == (
        "tnpkr-dka",
        "dka",
    )
    assert rows[(120, "gp")]["status"] == "infeasible" and "40" in rows[(120, "gp")]["note"]
    for (_, method), r in rows.items():
        if r["status"] != "ok":
            continue
        assert "values" not in r  # histories of 100,000 points stay out of the JSON
        assert len(r["regret"]) == 3 and r["regret"][-1] <= r["regret"][0]
        assert len(r["step_s"]) == 2
        assert (r["median_step_s"] > 0) == (method != "sobol")
    table = (tmp_path / "bo_large_history_smoke.md").read_text()
    assert "| hartmann6 | 120 | SingleTaskGP | - | infeasible |" in table

    # --report-only redraws the table and plot from the JSON without running anything.
    (tmp_path / "bo_large_history_smoke.png").unlink()
    bo_large_history.main(["--smoke", "--report-only", "--out-dir", str(tmp_path)])
    assert (tmp_path / "bo_large_history_smoke.md").read_text() == table
    assert (tmp_path / "bo_large_history_smoke.png").is_file()
