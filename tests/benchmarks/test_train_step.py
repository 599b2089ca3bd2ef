"""The attention-path benchmark runs end to end in its quick mode and restores the network."""

from __future__ import annotations

import json

import torch

from benchmarks import train_step
from botorch_tnpkr.nn.attention.exact import ExactAttention
from tests.nn.helpers import make_model, make_task


def test_quick_mode_times_both_variants_of_both_workloads(tmp_path):
    shipped = ExactAttention._softmax
    report = train_step.main(["--quick", "--out-dir", str(tmp_path)])
    assert ExactAttention._softmax is shipped  # the reference variant is undone
    saved = json.loads((tmp_path / "train_step_cpu_quick.json").read_text())
    assert saved == json.loads(json.dumps(report))
    rows = saved["results"]
    assert [r["workload"] for r in rows] == ["train", "train", "posterior"]
    assert [r["nc"] for r in rows[:2]] == [8, 16]
    for r in rows:
        assert r["ours_s"] > 0 and r["sdpa_s"] > 0
        assert abs(r["speedup"] - r["sdpa_s"] / r["ours_s"]) < 1e-12
    table = (tmp_path / "train_step_cpu_quick.md").read_text()
    assert table.count("\n| train |") == 2 and "| posterior | n = 64 |" in table


def test_reference_variant_computes_the_same_prediction():
    model = make_model("softmax").train()
    xc, yc, xt = make_task(b=2, nc=7, nt=4, d=2)
    preds = []
    for name in train_step.VARIANTS:
        with train_step.variant(name):
            preds.append(model(xc, yc, xt).mean)
    torch.testing.assert_close(preds[0], preds[1], rtol=1e-10, atol=1e-12)
