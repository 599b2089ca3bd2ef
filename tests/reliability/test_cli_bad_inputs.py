"""Bad input to the training and evaluation commands: exit code 2, a message, nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.evaluate import main as evaluate
from botorch_tnpkr.nn import save_network
from botorch_tnpkr.train import RunOptions, get_preset, train
from botorch_tnpkr.train.cli import main as train_cli
from botorch_tnpkr.train.state import STATE_FILE
from tests.model.helpers import tiny_network


@pytest.fixture(scope="module")
def network_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("net") / "tiny.safetensors"
    save_network(tiny_network("softmax"), path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(get_preset("tiny"), RunOptions(run_dir=path, stop_after=2, progress=False, threads=1))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


EVALUATE_CASES = {
    "zero tasks": (["--tasks", "0"], "--tasks"),
    "negative targets": (["--targets", "-3"], "--targets"),
    "zero threads": (["--threads", "0"], "--threads"),
    "size zero": (["--sizes", "0,8"], "--sizes"),
    "size not a number": (["--sizes", "8,many"], "--sizes"),
    "empty dims": (["--dims", ","], "--dims"),
    "dimension above max_dim": (["--dims", "1,7"], "max_dim"),
    "dimension zero": (["--dims", "0"], "--dims"),
    "unknown kernel": (["--kernels", "rbf,cosine"], "Unknown kernels"),
    "no kernel": (["--kernels", " "], "Unknown kernels"),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_rejects_bad_arguments(case, network_file, tmp_path, capsys):
    argv, message = EVALUATE_CASES[case]
    out = tmp_path / "report"
    code = evaluate(["--checkpoint", str(network_file), "--out", str(out), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not out.with_suffix(".json").exists()


def _corrupt(source: Path, target: Path, how: str) -> Path:
    data = source.read_bytes()
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flipped header":
        target.write_bytes(data[:8] + b"{" * 16 + data[24:])
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "not safetensors":
        target.write_text("import os; os.system('echo pwned')")
    return target


@pytest.mark.parametrize("how", ["truncated", "flipped header", "empty", "not safetensors"])
def test_evaluate_rejects_broken_checkpoint_files(how, network_file, tmp_path, capsys):
    broken = _corrupt(network_file, tmp_path / "broken.safetensors", how)
    assert evaluate(["--checkpoint", str(broken), "--tasks", "1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_evaluate_rejects_unknown_names_and_missing_files(tmp_path, capsys):
    assert evaluate(["--checkpoint", "tnpkr-does-not-exist"]) == 2
    assert evaluate(["--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2


TRAIN_CASES = {
    "zero total steps": (["--total-steps", "0"], "total_steps"),
    "negative stop": (["--stop-after", "-1"], "stop_after"),
    "zero threads": (["--threads", "0"], "threads"),
    "zero save interval": (["--save-every-minutes", "0"], "save_every_minutes"),
    "infinite wall time": (["--max-minutes", "inf"], "max_minutes"),
    "negative seed": (["--seed", "-4"], "seed"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_rejects_bad_options_before_writing(case, tmp_path, capsys):
    argv, message = TRAIN_CASES[case]
    target = tmp_path / "new-run"
    code = train_cli(["--preset", "tiny", "--run-dir", str(target), "--no-progress", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not target.exists()


def test_train_rejects_a_file_as_run_dir(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        RunOptions(run_dir=not_a_dir)


def test_train_refuses_to_overwrite_or_misresume_a_run(run_dir, capsys):
    state = run_dir / STATE_FILE
    before = _digest(state)
    base = ["--run-dir", str(run_dir), "--no-progress", "--threads", "1"]
    assert train_cli(["--preset", "tiny", *base]) == 2  # a run is there: needs --resume
    assert train_cli(["--preset", "exact-small", *base, "--resume"]) == 2  # other preset
    err = capsys.readouterr().err
    assert "already holds a run" in err and "same preset" in err
    assert _digest(state) == before


@pytest.mark.parametrize("how", ["truncated", "empty", "not safetensors"])
def test_train_resume_from_a_broken_state_fails_cleanly(how, run_dir, tmp_path, capsys):
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = _corrupt(run_dir / STATE_FILE, broken_dir / STATE_FILE, how)
    before = _digest(broken)
    code = train_cli(
        ["--preset", "tiny", "--run-dir", str(broken_dir), "--resume", "--no-progress"]
    )
    assert code == 2
    assert "Could not read training state" in capsys.readouterr().err
    assert _digest(broken) == before  # the broken file is left for inspection, not replaced
    assert not (broken_dir / "latest.safetensors").exists()
