"""The Ax loop benchmark runs end to end in its quick mode (tiny network, in-process)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ax_loop.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("ax_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quick(tiny_checkpoint: Path, out: Path, *extra: str) -> list[str]:
    base = ["--quick", "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    return [*base, "--out", str(out), *extra]


def test_quick_timing_writes_json_and_plot(benchmark, tiny_checkpoint, tmp_path, capsys):
    report = benchmark.main(quick(tiny_checkpoint, tmp_path))
    saved = json.loads((tmp_path / "ax_loop_cpu_quick.json").read_text())
    assert (tmp_path / "ax_loop_cpu_quick.png").stat().st_size > 1000
    assert saved["results"] == report["results"] and saved["device"] == "cpu"
    cells = {(r["strategy"], r["n"]): r for r in saved["results"]}
    assert set(cells) == {(s, n) for s in ("tnpkr", "default") for n in (12, 24)}
    for (strategy, _), record in cells.items():
        assert record["status"] == "ok"
        assert len(record["call_s"]) == 2 and record["seconds_per_call"] > 0
        node = "TNPKR" if strategy == "tnpkr" else "MBM"
        assert all(g.startswith(f"{node}/") for g in record["generated_by"])
    assert "| completed trials | strategy |" in capsys.readouterr().out


def test_quick_regret_writes_a_summary(benchmark, tiny_checkpoint, tmp_path):
    argv = quick(tiny_checkpoint, tmp_path, "--regret", "--seeds", "1", "--trials", "6")
    report = benchmark.main(argv)
    saved = json.loads((tmp_path / "ax_loop_regret_cpu_quick.json").read_text())
    assert (tmp_path / "ax_loop_regret_cpu_quick.png").stat().st_size > 1000
    assert set(saved["summary"]) == {"tnpkr", "default"}
    for record in report["results"]:
        assert len(record["values"]) == 6
        assert record["regret"] == pytest.approx(record["best"] - benchmark.HARTMANN6_MIN)
        assert record["best_so_far"] == sorted(record["best_so_far"], reverse=True)
    tnpkr = next(r for r in report["results"] if r["strategy"] == "tnpkr")
    assert tnpkr["generated_by"][:4] == ["Sobol/Sobol"] * 4
    assert all(g.startswith("TNPKR/") for g in tnpkr["generated_by"][4:])


def test_default_strategy_is_skipped_past_the_cap(benchmark, tiny_checkpoint, tmp_path):
    argv = quick(tiny_checkpoint, tmp_path, "--strategies", "default", "--repeats", "1")
    report = benchmark.main([*argv, "--cap-s", "0.001"])
    first, second = report["results"]
    assert first["status"] == "over_cap" and second["status"] == "skipped"
    assert "n=12: over_cap" in second["note"]


def test_estimate_uses_the_measured_growth(benchmark):
    done = [
        {"strategy": "default", "n": 50, "status": "ok", "seconds_per_call": 1.0},
        {"strategy": "default", "n": 500, "status": "ok", "seconds_per_call": 10.0},
    ]
    assert benchmark.estimate_seconds(done, "default", 2000) == pytest.approx(40.0)
    # One measured size says nothing about growth: measure, never guess.
    assert benchmark.estimate_seconds(done[:1], "default", 500) is None
    assert benchmark.estimate_seconds(done, "tnpkr", 2000) is None
