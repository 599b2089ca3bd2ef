"""The attention-scaling benchmark runs end to end in its quick mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from botorch_tnpkr.nn import ATTENTION_BACKENDS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "attention_scaling.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("attention_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_results(benchmark, tmp_path, capsys):
    report = benchmark.main(["--quick", "--device", "cpu", "--out-dir", str(tmp_path)])
    json_path = tmp_path / "attention_scaling_cpu_quick.json"
    png_path = tmp_path / "attention_scaling_cpu_quick.png"
    assert json_path.is_file() and png_path.stat().st_size > 1000
    saved = json.loads(json_path.read_text())
    assert saved["device"] == "cpu"
    ok = [r for r in saved["results"] if r["status"] == "ok"]
    assert {r["backend"] for r in ok} == set(ATTENTION_BACKENDS)
    for record in ok:
        assert record["time_s"] > 0 and record["repeats"] >= 1
        assert record["peak_mem_bytes"] >= 0
    assert any(r["backend"] == "dka" and r["nc"] == 1024 for r in ok)  # DKA's extra size
    for record in saved["cached"]:
        assert record["status"] == "ok"
        assert record["predict_s"] > 0 and record["speedup"] > 0
    assert len(saved["targets"]) == 3
    assert report["results"] == saved["results"]
    out = capsys.readouterr().out
    assert "| backend | nT | nC |" in out and "Targets:" in out


def test_softmax_is_skipped_past_the_memory_limit(benchmark, tmp_path):
    argv = ["--quick", "--device", "cpu", "--out-dir", str(tmp_path), "--backends", "softmax"]
    argv += ["--nc", "64", "2048", "--dka-nc", "--nt", "16", "--cached", "64", "16"]
    report = benchmark.main([*argv, "--memory-limit-gib", "0.01"])
    big = [r for r in report["results"] if r["nc"] == 2048]
    assert big[0]["status"] == "skipped"
    assert "would need 0.0625 GiB" in big[0]["note"]


def test_time_budget_skips_with_an_estimate(benchmark):
    done = [
        {"backend": "scan", "nc": 1000, "nt": 10, "status": "ok", "time_s": 1.0},
        {"backend": "dka", "nc": 1000, "nt": 10, "status": "ok", "time_s": 1.0},
    ]
    # Exact attention scales with the number of attention pairs, linear ones with points.
    assert benchmark.estimate_time("scan", 10_000, 10, done) == pytest.approx(100.0, rel=0.01)
    assert benchmark.estimate_time("dka", 10_000, 10, done) == pytest.approx(10.0, rel=0.01)
    assert benchmark.estimate_time("performer", 10_000, 10, done) is None
