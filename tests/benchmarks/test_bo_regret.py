"""The BO regret suite: smoke runs, resuming, budgets, and the aggregation behind the report."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bo_regret
from benchmarks._bo import FUNCTIONS, Problem, noise_std


def smoke(tmp_path, *extra: str) -> list[str]:
    return ["--smoke", "--out-dir", str(tmp_path), *extra]


def test_smoke_runs_every_acquisition_and_variant_and_resumes(tmp_path, capsys):
    argv = smoke(tmp_path, "--acq", "logei", "qlognei", "--noise", "noiseless", "noisy")
    summary = bo_regret.main([*argv, "--iterations", "1"])
    jsonl = tmp_path / "bo_regret_smoke.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 2 * 2 * 3  # acquisitions x variants x methods
    for r in records:
        q = 4 if r["acq"] == "qlognei" else 1
        assert len(r["values"]) == r["n_init"] + q == 6 + q  # Branin: 2d+2 = 6 Sobol points
        assert len(r["regret"]) == 2 and r["regret"][1] <= r["regret"][0]
        assert min(r["regret"]) >= 0
        assert len(r["build_s"]) == len(r["acq_s"]) == len(r["eval_s"]) == 1
        if r["method"] == "sobol":
            assert r["model_s"] == 0
        else:
            assert r["model_s"] > 0
            assert r["model_s"] == pytest.approx(r["build_s"][0] + r["acq_s"][0])
        assert (r["noise_std"] > 0) == (r["noise"] == "noisy")
        assert (r["values"] == r["observed"]) == (r["noise"] == "noiseless")
    tnpkr = [r for r in records if r["method"] == "tnpkr"]
    assert all(
        r["checkpoint"] == "tnpkr-exact" and len(r["checkpoint_sha256"]) == 64 for r in tnpkr
    )
    # All methods of a seed start from the same Sobol design.
    first = {(r["acq"], r["noise"]): r["values"][:6] for r in records if r["method"] == "gp"}
    assert all(r["values"][:6] == first[(r["acq"], r["noise"])] for r in records)

    for acq in ("logei", "qlognei"):
        for noise in ("noiseless", "noisy"):
            assert (tmp_path / f"bo_regret_smoke_{acq}_{noise}.png").stat().st_size > 5000
    saved = json.loads((tmp_path / "bo_regret_smoke_summary.json").read_text())
    assert saved["runs_used"] == 12 and len(saved["suite"]) == 4
    assert "| branin | 1 | 1 |" in (tmp_path / "bo_regret_smoke.md").read_text()
    assert summary["suite"] == saved["suite"]

    # Finished runs are skipped; a longer run of one cell is redone.
    bo_regret.main([*argv, "--iterations", "1"])
    assert len(jsonl.read_text().splitlines()) == 12
    bo_regret.main(smoke(tmp_path, "--methods", "sobol", "--iterations", "3"))
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 13 and json.loads(lines[-1])["iterations"] == 3
    # A spent budget starts nothing.
    bo_regret.main(smoke(tmp_path, "--seeds", "5", "--budget-minutes", "0"))
    assert len(jsonl.read_text().splitlines()) == 13
    assert "budget of 0.0 min spent" in capsys.readouterr().err


def fake(function, method, seed, regret, iterations=2, model_s=1.0, sha="abc", hour=0):
    return {
        "finished": f"2026-01-01T{hour:02d}:00:00",
        "function": function,
        "noise": "noiseless",
        "acq": "logei",
        "method": method,
        "seed": seed,
        "num_restarts": 4,
        "raw_samples": 128,
        "n_init": 6,
        "iterations": iterations,
        "regret": regret,
        "build_s": [model_s / 2] * iterations,
        "acq_s": [model_s / 2] * iterations,
        "model_s": model_s * iterations,
        "checkpoint_sha256": sha if method == "tnpkr" else None,
    }


def test_aggregate_pairs_seeds_truncates_iterations_and_checks_the_target():
    records = [
        fake("branin", "tnpkr", 0, [1.0, 0.1, 0.01], model_s=1.0),
        fake("branin", "tnpkr", 1, [1.0, 1.0, 0.001], model_s=1.0),
        fake("branin", "gp", 0, [1.0, 0.1, 0.1], model_s=3.0),
        fake("branin", "gp", 1, [1.0, 0.1, 0.1], model_s=3.0),
        fake("branin", "gp", 2, [1.0, 0.1, 1e-12], model_s=3.0),  # no TNP-KR partner
        fake("hartmann6", "tnpkr", 0, [1.0, 0.5], iterations=1),
        fake("hartmann6", "gp", 0, [1.0, 0.5, 0.5, 0.5], iterations=3),
    ]
    summary = bo_regret.aggregate(records)
    rows = {c["function"]: c for c in summary["comparisons"]}
    assert rows["branin"]["seeds"] == 2 and rows["branin"]["iterations"] == 2
    assert rows["branin"]["mean_log10_regret"]["tnpkr"] == pytest.approx(-2.5)
    assert rows["branin"]["mean_log10_regret"]["gp"] == pytest.approx(-1.0)
    assert rows["branin"]["model_s"] == {"tnpkr": pytest.approx(4.0), "gp": pytest.approx(12.0)}
    assert rows["hartmann6"]["iterations"] == 1  # equal evaluations: the shorter run
    assert rows["hartmann6"]["evaluations"] == 7
    cell = next(c for c in summary["cells"] if c["function"] == "branin" and c["method"] == "gp")
    assert cell["seeds"] == [0, 1, 2]
    assert cell["log10_regret_median"][-1] == pytest.approx(-1.0)
    assert cell["log10_regret_q25"][-1] == pytest.approx((-8.0 - 1.0) / 2)  # floor at 1e-8
    (suite,) = summary["suite"]
    assert suite["delta_tnpkr_minus_gp"] == pytest.approx(
        ((-2.5 - math.log10(0.5)) - (-1.0 - math.log10(0.5))) / 2
    )
    assert suite["target_regret"] == "met" and suite["target_model_time"] == "met"
    assert not suite["complete"]
    worse = [fake("branin", "tnpkr", 0, [1.0, 1.0, 1.0], model_s=9.0), records[2]]
    (suite,) = bo_regret.aggregate(worse)["suite"]
    assert suite["target_regret"] == "NOT met" and suite["target_model_time"] == "NOT met"
    # Model time is only compared between runs made close in time (the same machine load).
    apart = [fake("branin", "tnpkr", 0, [1.0, 1.0, 1.0], model_s=0.1, hour=5), records[2]]
    (suite,) = bo_regret.aggregate(apart)["suite"]
    assert suite["side_by_side_pairs"] == 0
    assert suite["target_model_time"].startswith("not judged")
    assert suite["model_s"]["tnpkr"] < suite["model_s"]["gp"]  # yet the sums are reported


def test_reports_use_the_current_checkpoint_and_the_longest_run():
    old = fake("branin", "tnpkr", 0, [1.0, 0.5, 0.5], sha="old")
    short = fake("branin", "tnpkr", 0, [1.0, 0.1], iterations=1, sha="new")
    long = fake("branin", "tnpkr", 0, [1.0, 0.1, 0.01], sha="new")
    assert bo_regret.select_records([old, short, long], "new") == [long]
    assert bo_regret.select_records([old, short, long], "ne") == [long]  # a sha prefix
    assert len(bo_regret.select_records([old, short, long], None)) == 2


def test_noise_levels_are_fixed_fractions_of_each_functions_range():
    for name in FUNCTIONS:
        problem = Problem(name, noisy=True)
        assert problem.noise_std == noise_std(name) > 0
        assert Problem(name).noise_std == 0
    assert noise_std("hartmann6") == pytest.approx(0.0645, abs=1e-3)
    with pytest.raises(ValueError, match="Unknown function"):
        Problem("forrester")


def test_compare_pairs_checkpoints_on_shared_runs_at_equal_evaluations(tmp_path):
    records = [
        fake("branin", "tnpkr", 0, [1.0, 0.1, 0.01], sha="aaa1"),
        fake("branin", "tnpkr", 0, [1.0, 1.0, 0.1], sha="bbb2"),
        fake("branin", "tnpkr", 1, [1.0, 0.1, 0.1], sha="aaa1"),
        fake("branin", "tnpkr", 1, [1.0, 0.001], iterations=1, sha="bbb2"),  # shorter run
        fake("branin", "tnpkr", 2, [1.0, 0.1, 0.1], sha="aaa1"),  # no partner: left out
        fake("branin", "gp", 0, [1.0, 0.1, 0.001]),
        fake("branin", "gp", 1, [1.0, 0.01, 0.01]),
        fake("branin", "tnpkr", 0, [1.0, 1e-6, 1e-6], sha="ccc3"),  # not compared
    ]
    table = bo_regret.compare_checkpoints(records, ["aaa1", "bbb2"])
    assert "(2 pairs)" in table
    # seed 0 at 2 iterations: -2 vs -1; seed 1 cut to 1 iteration: -1 vs -3; GP -3 and -2
    assert "| branin | 2 | -1.50 | -2.00 | -2.50 |" in table
    assert "bbb2 - aaa1: -0.500 +- 1.500" in table and "lower in 50%" in table
    assert "ccc3" not in table
    assert "no (function, seed) runs" in bo_regret.compare_checkpoints(records, ["aaa1", "zzz"])
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = bo_regret.main(
        ["--compare", "aaa1", "bbb2", "--results", str(path), "--out-dir", str(tmp_path)]
    )
    assert out["table"].strip() == (tmp_path / "runs_compare.md").read_text().strip()


def test_calibrated_runs_are_other_runs_of_the_same_checkpoint(tmp_path):
    plain = fake("branin", "tnpkr", 0, [1.0, 0.1, 0.1], sha="aaa1")
    cal = dict(fake("branin", "tnpkr", 0, [1.0, 0.1, 0.001], sha="aaa1"), calibrated=True)
    assert bo_regret.run_key(plain) != bo_regret.run_key(cal)
    # Version 1 (no field) is not the current calibration: a calibrated report leaves it out.
    assert bo_regret.select_records([plain, cal], "aaa1", calibrated=True) == []
    assert bo_regret.select_records([plain, cal], "aaa1", calibrated=False) == [plain]
    assert len(bo_regret.select_records([plain, cal], "aaa1")) == 2
    table = bo_regret.compare_checkpoints([plain, cal], ["aaa1", "aaa1+cal"])
    assert "| branin | 1 | -1.00 | -3.00 |" in table
    assert "aaa1+cal - aaa1: -2.000" in table
    # A later calibration version is another run again, and the one a calibrated report uses.
    cal2 = dict(cal, calibration_version=2, regret=[1.0, 0.1, 0.01])
    assert len({bo_regret.run_key(r) for r in (plain, cal, cal2)}) == 3
    assert bo_regret.select_records([plain, cal, cal2], "aaa1", calibrated=True) == [cal2]
    table = bo_regret.compare_checkpoints([plain, cal, cal2], ["aaa1+cal", "aaa1+cal2"])
    assert "aaa1+cal2 - aaa1+cal: +1.000" in table


def test_smoke_runs_record_the_calibration_setting(tmp_path):
    argv = smoke(tmp_path, "--methods", "tnpkr", "--iterations", "1")
    bo_regret.main(argv)
    bo_regret.main([*argv, "--no-calibration"])
    lines = (tmp_path / "bo_regret_smoke.jsonl").read_text().splitlines()
    assert [json.loads(line)["calibrated"] for line in lines] == [True, False]
    versions = [json.loads(line).get("calibration_version") for line in lines]
    assert versions == [bo_regret.CALIBRATION_VERSION, None]


def test_adapted_runs_are_other_runs_of_the_same_checkpoint():
    """Runs made before the distance adaptation existed (no field) are never taken for adapted
    ones: other run keys, left out of an adapted report, compared under their own label."""
    plain = dict(fake("branin", "tnpkr", 0, [1.0, 0.1, 0.1], sha="aaa1"), calibrated=True)
    version = bo_regret.ADAPTATION_VERSION
    adapted = dict(plain, adapted=True, adaptation_version=version, regret=[1.0, 0.1, 0.001])
    older = dict(adapted, adaptation_version=version - 1, regret=[1.0, 0.1, 0.01])
    assert bo_regret.run_key(plain) != bo_regret.run_key(adapted)
    assert bo_regret.run_key(older) != bo_regret.run_key(adapted)
    label = f"aaa1+cal+adapt{version}"
    assert bo_regret.tnpkr_identity(adapted) == label
    # adapted=True: the current version only; an older adaptation is another surrogate
    assert bo_regret.select_records([plain, older, adapted], "aaa1", adapted=True) == [adapted]
    assert bo_regret.select_records([plain, adapted], "aaa1", adapted=False) == [plain]
    assert len(bo_regret.select_records([plain, adapted], "aaa1")) == 2
    table = bo_regret.compare_checkpoints([plain, adapted], ["aaa1+cal", label])
    assert f"{label} - aaa1+cal: -2.000" in table


def test_smoke_runs_record_the_adaptation_setting(tmp_path):
    argv = smoke(tmp_path, "--methods", "tnpkr", "--iterations", "1")
    bo_regret.main([*argv, "--no-adaptation"])
    lines = (tmp_path / "bo_regret_smoke.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert record["adapted"] is False and "adaptation_version" not in record
