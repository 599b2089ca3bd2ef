"""The pretraining loop: determinism, resume, atomic state, DDP on gloo, evaluation CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from botorch_tnpkr.errors import CheckpointError, ConfigError
from botorch_tnpkr.nn import TNPKR, Adaptation, load_network, read_metadata
from botorch_tnpkr.train import RunOptions, get_preset, train
from botorch_tnpkr.train.loop import (
    VAL_LAYOUT,
    context_cap,
    lr_at,
    parameter_groups,
    validation_cells,
    validation_set,
)
from botorch_tnpkr.train.state import STATE_FILE, load_state, save_state

REPO = Path(__file__).resolve().parents[2]


def _opts(run_dir: Path, **kw) -> RunOptions:
    return RunOptions(run_dir=run_dir, progress=False, threads=1, **kw)


def test_resume_continues_the_same_run_exactly(tmp_path: Path) -> None:
    preset = get_preset("tiny")
    train(preset, _opts(tmp_path / "straight", seed=3))
    train(preset, _opts(tmp_path / "split", seed=3, stop_after=12))
    assert load_state(tmp_path / "split" / STATE_FILE)["step"] == 12
    train(preset, _opts(tmp_path / "split", resume=True))
    a = load_state(tmp_path / "straight" / STATE_FILE)
    b = load_state(tmp_path / "split" / STATE_FILE)
    assert a["step"] == b["step"] == preset.total_steps
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    # The exported network is the weight average and loads on its own.
    net = load_network(tmp_path / "split" / "latest.safetensors")
    assert read_metadata(tmp_path / "split" / "latest.safetensors")["extra"]["step"] == 20
    assert net.config == preset.network_config
    assert net.config.trained_context == preset.prior.max_context
    records = [
        json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    ]
    assert any("val_gap_y" in r for r in records)


def test_seed_changes_the_run(tmp_path: Path) -> None:
    preset = get_preset("tiny")
    train(preset, _opts(tmp_path / "a", seed=1, stop_after=3))
    train(preset, _opts(tmp_path / "b", seed=2, stop_after=3))
    a = load_state(tmp_path / "a" / STATE_FILE)["model"]
    b = load_state(tmp_path / "b" / STATE_FILE)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_run_dir_guards(tmp_path: Path) -> None:
    preset = get_preset("tiny")
    with pytest.raises(CheckpointError, match="--resume"):
        train(preset, _opts(tmp_path / "missing", resume=True))
    train(preset, _opts(tmp_path / "r", stop_after=2))
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(preset, _opts(tmp_path / "r"))
    with pytest.raises(CheckpointError, match="same preset"):
        train(get_preset("exact-small"), _opts(tmp_path / "r", resume=True))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Could not read"):
        train(preset, _opts(tmp_path / "bad", resume=True))


def test_schedule_shapes() -> None:
    preset = get_preset("exact-small")
    total = preset.total_steps
    assert lr_at(0, preset, total) < lr_at(preset.warmup_steps, preset, total)
    assert lr_at(total, preset, total) == pytest.approx(preset.lr * preset.min_lr_ratio)
    assert context_cap(0, preset, total) == preset.context_start
    assert context_cap(total, preset, total) == preset.prior.max_context


def test_lr_scales_give_named_parameters_their_own_learning_rate(tmp_path: Path) -> None:
    preset = dataclasses.replace(get_preset("tiny"), lr_scales=(("blocks.0.attention", 10.0),))
    train(preset, _opts(tmp_path / "r", stop_after=6))
    groups = load_state(tmp_path / "r" / STATE_FILE)["optimizer"]["param_groups"]
    assert sorted(g["lr_scale"] for g in groups) == [1.0, 10.0]
    plain, scaled = sorted(groups, key=lambda g: g["lr_scale"])
    assert scaled["lr"] == pytest.approx(10 * plain["lr"])
    names = [n for n, _ in TNPKR(preset.network_config).named_parameters()]
    assert len(scaled["params"]) == sum("blocks.0.attention" in n for n in names) > 0
    train(preset, _opts(tmp_path / "r", resume=True))
    assert load_state(tmp_path / "r" / STATE_FILE)["step"] == preset.total_steps
    # Without scales the optimiser keeps one group (older runs resume unchanged).
    model = TNPKR(get_preset("tiny").network_config)
    assert len(parameter_groups(model, get_preset("tiny"))) == 1
    for bad in ((("", 2.0),), (("ard", 0.0),), (("ard",),)):
        with pytest.raises(ConfigError, match="lr_scales"):
            dataclasses.replace(get_preset("tiny"), lr_scales=bad)


def test_cli_and_torchrun_ddp_on_gloo(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "botorch_tnpkr.train",
        "--preset",
        "tiny",
        "--run-dir",
        str(run_dir),
        "--stop-after",
        "4",
        "--no-progress",
        "--threads",
        "1",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_state(run_dir / STATE_FILE)
    assert state["world_size"] == 2 and state["step"] == 4
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "botorch_tnpkr.train",
            "--preset",
            "tiny",
            "--run-dir",
            str(run_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "--resume" in bad.stderr


def test_evaluate_cli(tmp_path: Path) -> None:
    from botorch_tnpkr.evaluate import main

    train(get_preset("tiny"), _opts(tmp_path / "run", stop_after=2))
    out = tmp_path / "eval" / "report"
    code = main(
        [
            "--checkpoint",
            str(tmp_path / "run" / "latest.safetensors"),
            "--kernels",
            "rbf",
            "--dims",
            "1,2",
            "--sizes",
            "3,6",
            "--tasks",
            "3",
            "--targets",
            "5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["cells"]) == 4
    for cell in report["cells"]:
        assert all(
            torch.isfinite(torch.tensor(cell[k])) for k in ("model_ll", "oracle_ll", "gp_ll")
        )
        assert 0.0 <= cell["cover50"] <= cell["cover90"] <= 1.0
    assert report["extrapolation"]["trained_context"] == get_preset("tiny").prior.max_context
    assert "share_at_least_gp" in report["summary"]
    assert main(["--checkpoint", "no-such-checkpoint"]) == 2
    assert main(["--checkpoint", str(tmp_path / "run" / "latest.safetensors"), "--dims", "9"]) == 2


def test_ship_registers_only_better_checkpoints(tmp_path: Path) -> None:
    from botorch_tnpkr.checkpoints import load_checkpoint
    from botorch_tnpkr.train.ship import main as ship

    train(get_preset("tiny"), _opts(tmp_path / "run", stop_after=4))
    dest = tmp_path / "ckpts"
    dest.mkdir()
    args = ["--run-dir", str(tmp_path / "run"), "--name", "t", "--tasks", "2", "--no-gp"]
    args += ["--sizes", "4,8"]
    args += ["--dest", str(dest)]
    # A limit on the degradation at 4x the trained context refuses before writing anything.
    assert ship([*args, "--max-degradation=-1e9"]) == 1
    assert not (dest / "registry.json").exists() and not (dest / "t.safetensors").exists()
    assert ship([*args, "--max-degradation", "1e9"]) == 0
    registry = json.loads((dest / "registry.json").read_text())
    assert registry["t"]["attention"] == "softmax"
    card = (dest / "t.md").read_text()
    assert "mean gap to the oracle" in card and "tiny" in card
    net = load_checkpoint(dest / "t.safetensors", sha256=registry["t"]["sha256"])
    assert net.config == get_preset("tiny").network_config
    assert registry["t"]["description"] == get_preset("tiny").network_config.describe()
    assert registry["t"]["calibrated"] is True and "calibrated on each context" in card
    assert registry["t"]["adapted"] is True and "distance scales fitted" in card
    assert ship(args) == 1  # the same network is not better than itself
    assert registry["t"]["adaptation_settings"]["steps"] == Adaptation().steps
    # An entry measured before variance calibration, before distance adaptation, or with
    # other adaptation settings, is not compared with a score measured with it.
    for setting in ("calibrated", "adapted", "adaptation_settings"):
        older = dict(registry["t"], mean_gap=1e9)
        del older[setting]
        (dest / "registry.json").write_text(json.dumps({"t": older}))
        assert ship(args) == 1
        assert json.loads((dest / "registry.json").read_text())["t"]["mean_gap"] == 1e9
    # A forced reship carries the entry's role forward; the architecture is read anew.
    assert ship([*args, "--force", "--role", "for tests"]) == 0
    assert ship([*args, "--force"]) == 0
    entry = json.loads((dest / "registry.json").read_text())["t"]
    assert entry["description"].partition("; ")[2] == "for tests"
    assert entry["description"] == get_preset("tiny").network_config.describe() + "; for tests"
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(dest / "t.safetensors", sha256="0" * 64)


@pytest.mark.parametrize(
    ("flag", "key"), [("--no-calibration", "calibration"), ("--no-adaptation", "adaptation")]
)
def test_evaluate_calibrates_and_adapts_unless_told(tmp_path: Path, flag: str, key: str) -> None:
    from botorch_tnpkr.evaluate import main

    train(get_preset("tiny"), _opts(tmp_path / "run", stop_after=2))
    base = ["--checkpoint", str(tmp_path / "run" / "latest.safetensors"), "--kernels", "rbf"]
    base += ["--dims", "2", "--sizes", "8,80", "--tasks", "2", "--targets", "8", "--no-gp"]
    base += ["--no-extrapolation"]
    reports = {}
    for flags in ([], [flag]):
        out = tmp_path / f"report{len(flags)}"
        assert main([*base, *flags, "--out", str(out)]) == 0
        reports[bool(flags)] = json.loads(out.with_suffix(".json").read_text())
    assert reports[False]["evaluate_args"][key] is True
    assert reports[True]["evaluate_args"][key] is False
    small, large = (
        [r["cells"][i]["model_ll"] for r in (reports[False], reports[True])] for i in (0, 1)
    )
    assert small[0] == small[1]  # 8 points: below both settings' min_context
    assert large[0] != large[1]


def test_degradation_refusal_reasons() -> None:
    from botorch_tnpkr.train.ship import _degradation_refusal

    assert _degradation_refusal({"degradation": 0.3}, None) is None
    assert _degradation_refusal({"degradation": 0.09}, 0.1) is None
    assert "+0.1005" in _degradation_refusal({"degradation": 0.1005}, 0.1)
    assert "no extrapolation" in _degradation_refusal(None, 0.1)


def test_ship_records_the_trained_context_of_an_older_export(tmp_path: Path) -> None:
    from botorch_tnpkr.nn import TNPKR, save_network
    from botorch_tnpkr.train.ship import main as ship

    preset = get_preset("tiny")
    train(preset, _opts(tmp_path / "run", stop_after=2))
    path = tmp_path / "run" / "best.safetensors"
    trained = load_network(path)
    old = TNPKR(trained.config.replace(trained_context=None))  # as written before the setting
    old.load_state_dict(trained.state_dict())
    save_network(old, path, extra=read_metadata(path)["extra"])
    dest = tmp_path / "ckpts"
    dest.mkdir()
    args = ["--run-dir", str(tmp_path / "run"), "--name", "t", "--tasks", "2", "--no-gp"]
    assert ship([*args, "--sizes", "4", "--dest", str(dest)]) == 0
    shipped = load_network(dest / "t.safetensors")
    assert shipped.config.trained_context == preset.prior.max_context
    for key, value in trained.state_dict().items():
        assert torch.equal(shipped.state_dict()[key], value)
    assert read_metadata(dest / "t.safetensors")["extra"]["step"] == 2


def test_evaluate_reuses_gp_scores_of_the_same_tasks(tmp_path: Path) -> None:
    from botorch_tnpkr.evaluate import main

    train(get_preset("tiny"), _opts(tmp_path / "run", stop_after=2))
    net = str(tmp_path / "run" / "latest.safetensors")
    base = ["--checkpoint", net, "--kernels", "rbf", "--dims", "1", "--sizes", "4,8"]
    base += ["--tasks", "2", "--targets", "8", "--no-extrapolation"]
    assert main([*base, "--out", str(tmp_path / "fitted")]) == 0
    fitted = json.loads((tmp_path / "fitted.json").read_text())
    args = [*base, "--out", str(tmp_path / "reused"), "--gp-from", str(tmp_path / "fitted.json")]
    assert main(args) == 0
    reused = json.loads((tmp_path / "reused.json").read_text())
    assert reused["gp_from"] == str(tmp_path / "fitted.json")
    for a, b in zip(fitted["cells"], reused["cells"], strict=True):
        assert a["gp_ll"] == b["gp_ll"] and a["model_ll"] == b["model_ll"]
    assert reused["summary"] == fitted["summary"]
    # Other tasks (another seed), a report without GP scores or no report at all: exit 2.
    assert main([*args, "--seed", "7"]) == 2
    assert main([*base, "--no-gp", "--out", str(tmp_path / "nogp")]) == 0
    assert main([*base, "--gp-from", str(tmp_path / "nogp.json")]) == 2
    assert main([*base, "--gp-from", str(tmp_path / "missing.json")]) == 2


def test_fine_tuned_network_records_its_source(tmp_path: Path) -> None:
    from botorch_tnpkr.train.ship import main as ship

    preset = get_preset("tiny")
    train(preset, _opts(tmp_path / "base", stop_after=2))
    source = tmp_path / "base" / "latest.safetensors"
    train(preset, _opts(tmp_path / "ft", stop_after=2, init_from=source))
    note = read_metadata(tmp_path / "ft" / "latest.safetensors")["extra"]["init_from"]
    assert str(source) in note and "step 2" in note
    train(preset, _opts(tmp_path / "ft", stop_after=3, resume=True))  # survives a resume
    assert read_metadata(tmp_path / "ft" / "latest.safetensors")["extra"]["init_from"] == note
    dest = tmp_path / "ckpts"
    dest.mkdir()
    args = ["--run-dir", str(tmp_path / "ft"), "--name", "t", "--file", "latest.safetensors"]
    args += ["--tasks", "2", "--no-gp", "--sizes", "4", "--dest", str(dest)]
    assert ship(args) == 0
    card = (dest / "t.md").read_text()
    assert f"fine-tuned from {note}" in card and "contexts standardised" in card


def test_same_tasks_tolerates_recomputation_noise_not_other_tasks():
    from botorch_tnpkr.evaluate import cell_tasks, evaluation_prior, oracle_logpdf, same_tasks

    def oracle(seed: int) -> float:
        batch = cell_tasks(evaluation_prior(4, "rbf"), "rbf", 2, 16, 3, 8, seed)
        return float(oracle_logpdf(batch).mean())

    score = oracle(7)
    assert same_tasks(score, oracle(7))
    # Last-bit differences from another summation order (seen: ~2e-9) are the same tasks.
    assert same_tasks(score, score + 3e-9 * max(1.0, abs(score)))
    # Other tasks (another seed) are told apart.
    assert not same_tasks(score, oracle(8))


def test_validation_grid_meets_every_dimension_with_every_size() -> None:
    preset = get_preset("exact-deeper")
    cells = validation_cells(preset)
    dims, top = preset.prior.allowed_dims, preset.prior.max_context
    assert len(cells) == preset.val_batches
    assert set(cells) == {(d, n) for d in dims for n in (0, 8, 32, 128, top)}
    tiny = get_preset("tiny")  # 2 batches: the first cells of its grid
    assert validation_cells(tiny) == [(1, 0), (1, 8)]
    batches = validation_set(tiny)
    assert [(b.xc.shape[-1], b.xc.shape[1]) for b in batches] == validation_cells(tiny)


def test_resume_from_another_validation_layout_revalidates(tmp_path: Path) -> None:
    """A state validated on the old layout keeps training, but its best-so-far restarts on
    the current set (an impossible old best would otherwise block every new best)."""
    preset = get_preset("tiny")
    run = tmp_path / "run"
    train(preset, _opts(run, seed=3, stop_after=12))
    state = load_state(run / STATE_FILE)
    assert state["val_layout"] == VAL_LAYOUT
    del state["val_layout"]  # as written before the layout was recorded
    state["best_val"] = -1.0
    save_state(run / STATE_FILE, state)
    train(preset, _opts(run, resume=True, stop_after=13))
    resumed = load_state(run / STATE_FILE)
    assert resumed["val_layout"] == VAL_LAYOUT and resumed["step"] == 13
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    fresh = [r for r in records if r.get("val_layout") == VAL_LAYOUT]
    assert len(fresh) == 1 and fresh[0]["step"] == 12
    # The old best (-1) is gone: the resumed network set the new best, step 13 (the run's
    # last step, validated too) may have improved on it.
    assert 0 < resumed["best_val"] <= fresh[0]["val_gap_y"]
    best = read_metadata(run / "best.safetensors")["extra"]
    assert best["step"] in (12, 13) and best["val_gap_y"] == resumed["best_val"]
    # Resuming again on the same layout does not revalidate.
    train(preset, _opts(run, resume=True, stop_after=14))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum(r.get("val_layout") == VAL_LAYOUT for r in records) == 1
