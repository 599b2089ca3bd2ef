"""A training run killed with SIGKILL at an arbitrary moment resumes from an intact state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from botorch_tnpkr.nn import load_network
from botorch_tnpkr.train.state import STATE_FILE, load_state

REPO = Path(__file__).resolve().parents[2]


def test_sigkilled_training_resumes_from_last_state(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    base = [sys.executable, "-m", "botorch_tnpkr.train", "--preset", "tiny"]
    base += ["--run-dir", str(run_dir), "--no-progress", "--threads", "1"]
    # Save (almost) every step, so that the kill very likely lands during a write.
    proc = subprocess.Popen(
        [*base, "--total-steps", "100000", "--save-every-minutes", "0.0001"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run_dir / STATE_FILE).exists() and load_state(run_dir / STATE_FILE)["step"] >= 15:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the run never saved 15 steps")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    state = load_state(run_dir / STATE_FILE)  # never half-written: this must load
    step = int(state["step"])
    assert step >= 15
    load_network(run_dir / "latest.safetensors")  # the export is intact too
    done = subprocess.run(
        [*base, "--resume", "--stop-after", str(step + 3)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_state(run_dir / STATE_FILE)["step"] == step + 3


def test_sigterm_saves_before_exiting(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "botorch_tnpkr.train", "--preset", "tiny", "--run-dir"]
    cmd += [str(run_dir), "--no-progress", "--threads", "1", "--total-steps", "100000"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        log = run_dir / "log.jsonl"
        while time.monotonic() < deadline and not (log.exists() and log.stat().st_size > 0):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert load_state(run_dir / STATE_FILE)["step"] >= 10
