"""The GPU-scale benchmark's code path on CPU: both backends, float32 and bf16 autocast."""

from __future__ import annotations

import json

from benchmarks import gpu_scale


def test_smoke_on_cpu_times_both_backends_and_both_precisions(tmp_path):
    report = gpu_scale.main(["--smoke", "--device", "cpu", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu_scale_cpu_smoke.json").read_text())
    assert saved["device"] == "cpu" and saved["nc"] == 256 and saved["nt"] == 2_000
    rows = {(r["backend"], r["precision"]): r for r in saved["results"]}
    assert set(rows) == {(b, p) for b in ("scan", "dka") for p in ("float32", "bf16")}
    for (_, precision), r in rows.items():
        assert r["status"] == "ok" and r["finite"] and r["checkpoint_step"] > 0
        assert r["encode_s"] > 0 and r["predict_s"] > 0
        assert r["total_s"] == r["encode_s"] + r["predict_s"]
        assert ("vs_float32" in r) == (precision == "bf16")
    # bf16 stays close to float32 (in units of the data's standard deviation).
    assert rows[("dka", "bf16")]["vs_float32"]["mean_abs_diff_in_y_std"] < 0.1
    assert all("not measured on a GPU" in v for v in saved["targets"].values())
    assert report["targets"] == saved["targets"]


def test_headline_verdict_needs_a_gpu_at_full_scale():
    import torch

    row = {"backend": "dka", "precision": "float32", "status": "ok", "finite": True}
    full = {**row, "nc": 100_000, "nt": 1_000_000}
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert gpu_scale.evaluate_target([{**full, "total_s": 3.0}], cuda) == {
        "dka float32": "met (3.00 s)"
    }
    assert "NOT met" in gpu_scale.evaluate_target([{**full, "total_s": 12.0}], cuda)["dka float32"]
    small = {**row, "nc": 100_000, "nt": 10_000, "total_s": 1.0}
    assert "not measured" in gpu_scale.evaluate_target([small], cuda)["dka float32"]
    assert (
        "not measured" in gpu_scale.evaluate_target([{**full, "total_s": 3.0}], cpu)["dka float32"]
    )
