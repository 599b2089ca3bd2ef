"""The demo runs end to end with a tiny network (2 iterations)."""

from __future__ import annotations

import json

from botorch_tnpkr import demo


def test_demo_runs_with_a_checkpoint_path(exact_path, tmp_path, capsys):
    out = tmp_path / "demo"
    report = demo.main(
        [
            "--checkpoint",
            str(exact_path),
            "--iterations",
            "2",
            "--n-init",
            "6",
            "--num-restarts",
            "2",
            "--raw-samples",
            "16",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "iter   2/2" in printed and "model+acq time" in printed
    assert (out / "regret.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in saved["methods"]] == ["TNPKRModel", "SingleTaskGP"]
    assert all(len(m["values"]) == 8 and len(m["step_seconds"]) == 2 for m in report["methods"])
