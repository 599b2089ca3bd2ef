"""Smoke test of benchmarks/bo_step_scaling.py in quick mode with a tiny network."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bo_step_scaling.py"


def _load():
    spec = importlib.util.spec_from_file_location("bo_step_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_json_and_plot(exact_path, tmp_path):
    bench = _load()
    report = bench.main(
        ["--quick", "--checkpoint", str(exact_path), "--sizes", "30", "--out", str(tmp_path)]
    )
    assert [(r["method"], r["status"]) for r in report["results"]] == [
        ("tnpkr", "ok"),
        ("gp", "ok"),
    ]
    saved = json.loads((tmp_path / f"bo_step_scaling_{report['device']}_quick.json").read_text())
    assert saved["results"][0]["attention"] == "softmax" and saved["results"][0]["total_s"] > 0
    assert (tmp_path / f"bo_step_scaling_{report['device']}_quick.png").stat().st_size > 0


def test_cap_skips_larger_sizes(exact_path, tmp_path):
    bench = _load()
    report = bench.main(
        [
            "--quick",
            "--checkpoint",
            str(exact_path),
            "--sizes",
            "20",
            "40",
            "--methods",
            "tnpkr",
            "--cap-s",
            "1e-9",
            "--out",
            str(tmp_path),
        ]
    )
    assert [r["status"] for r in report["results"]] == ["over_cap", "skipped"]
