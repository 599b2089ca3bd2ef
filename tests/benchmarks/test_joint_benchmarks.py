"""The joint-posterior benchmarks run end to end in their smoke modes."""

from __future__ import annotations

import json

from benchmarks import joint_batch, joint_tokens


def test_joint_batch_smoke_compares_both_modes_on_the_same_seed(tmp_path):
    report = joint_batch.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "joint_batch_cpu_smoke.json").read_text())
    assert (tmp_path / "joint_batch_cpu_smoke.png").stat().st_size > 5000
    assert saved["summary"] == report["summary"]
    records = saved["records"]
    assert {r["mode"] for r in records} == {"independent", "joint"}
    for record in records:
        assert record["function"] == "branin" and record["q"] == 2 and record["seed"] == 0
        assert len(record["regret"]) == record["iterations"] + 1 == 2
        assert record["regret"][1] <= record["regret"][0]
        assert len(record["step_s"]) == 1 and record["step_s"][0] > 0
    # The same Sobol design: the same regret before the first step.
    assert records[0]["regret"][0] == records[1]["regret"][0]
    assert "| branin | 2 |" in joint_batch.markdown(saved["summary"])


def test_joint_tokens_smoke_scores_every_variant(tmp_path):
    report = joint_tokens.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "joint_tokens_cpu_smoke.json").read_text())
    variants = {row["variant"] for row in saved["rows"]}
    assert variants == {*joint_tokens.CAUSAL, "full"}
    for row in saved["summary"]:
        assert -1.0 <= row["corr"] <= 1.0 and row["var_ratio"] > 0
    near = [r for r in report["rows"] if r["delta"] == 1e-4]
    assert all(r["oracle_corr"] > 0.99 for r in near)
