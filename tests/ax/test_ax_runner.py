"""The config-driven runner: validation, an in-process run, and a real SIGKILL + resume."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ax.api.client import Client
from ax.api.configs import RangeParameterConfig
from ax.core.trial_status import TrialStatus

from botorch_tnpkr.ax.config import RunnerConfigError, load_config, parse_config
from botorch_tnpkr.ax.runner import (
    Progress,
    RunnerError,
    empty_front_hint,
    main,
    normalize_outcome,
    observed_nondominated,
    run,
)

REPO = Path(__file__).resolve().parents[2]

OBJECTIVE = """
import json, math, os, time
from pathlib import Path

LOG = Path(__file__).with_name("calls.log")


def evaluate(p):
    with LOG.open("a") as f:
        f.write(json.dumps({"event": "start", "p": p}) + "\\n")
    time.sleep(float(os.environ.get("TNPKR_TEST_SLEEP", "0")))
    calls = sum('"start"' in line for line in LOG.read_text().splitlines())
    if calls >= int(os.environ.get("TNPKR_TEST_HANG_FROM_CALL", "1000000")):
        time.sleep(600)  # hangs until killed
    if str(calls) == os.environ.get("TNPKR_TEST_FAIL_CALL"):
        raise RuntimeError(f"call {calls} diverged")
    x, lr, k = p.get("x", 0.5), p.get("lr", 0.01), p.get("k", 1)
    value = (x - 0.3) ** 2 + (math.log10(lr) + 2) ** 2 + 0.1 * k + 0.2 * (p.get("opt") == "sgd")
    with LOG.open("a") as f:
        f.write(json.dumps({"event": "end", "p": p}) + "\\n")
    return {"loss": value}
"""


def experiment(tmp_path: Path, checkpoint: Path, **changes) -> dict:
    """Write an objective module (unique name) and return a valid experiment mapping."""
    module = f"objective_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(OBJECTIVE)
    config = {
        "name": "runner-test",
        "parameters": [
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "lr", "type": "float", "bounds": [1.0e-4, 1.0], "log_scale": True},
            {"name": "k", "type": "int", "bounds": [1, 4]},
            {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
        ],
        "objective": "-loss",
        "budget": 5,
        "batch_size": 2,
        "evaluate": f"{module}:evaluate",
        "snapshot": "out/snapshot.json",
        "seed": 0,
        "strategy": {
            "checkpoint": str(checkpoint),
            "initialization_trials": 3,
            "num_restarts": 2,
            "raw_samples": 16,
            "optimizer_options": {"maxiter": 5},
            "seed": 0,
        },
    }
    config.update(changes)
    return config


def write(tmp_path: Path, config: dict, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"experiment{suffix}"
    path.write_text(yaml.safe_dump(config) if suffix == ".yaml" else json.dumps(config))
    return path


def statuses(snapshot: Path) -> dict[int, str]:
    trials = json.loads(snapshot.read_text())["experiment"]["trials"]
    return {int(k): t["status"]["name"] for k, t in trials.items()}


def _started(tmp_path: Path) -> int:
    log = tmp_path / "calls.log"
    return len(calls(tmp_path, "start")) if log.is_file() else 0


def calls(tmp_path: Path, event: str) -> list[dict]:
    lines = (tmp_path / "calls.log").read_text().splitlines()
    return [record["p"] for record in map(json.loads, lines) if record["event"] == event]


# ----------------------------------------------------------------------------- config
def test_yaml_and_json_files_give_the_same_config(tmp_path, tiny_checkpoint):
    config = experiment(tmp_path, tiny_checkpoint)
    from_yaml = load_config(write(tmp_path, config, ".yaml"))
    from_json = load_config(write(tmp_path, config, ".json"))
    assert from_yaml.parameters == from_json.parameters
    assert from_yaml.snapshot == (tmp_path / "out" / "snapshot.json").resolve()
    assert from_yaml.strategy == from_json.strategy
    assert from_yaml.parameters[1].log_scale and from_yaml.parameters[2].bounds == (1, 4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"objective": None}, "objective"),
        ({"budget": 0}, "budget"),
        ({"batch_size": "2"}, "batch_size"),
        ({"evaluate": "no_function_here"}, "evaluate"),
        ({"snapshot": "state.pkl"}, "snapshot"),
        ({"colour": "blue"}, r"unknown fields \['colour'\]"),
        ({"parameters": []}, "parameters"),
        ({"parameters": [{"name": "x", "type": "float", "bounds": [1, 0]}]}, r"parameters\[0\]"),
        (
            {"parameters": [{"name": "x", "type": "float", "bounds": [0, 1], "log_scale": True}]},
            r"parameters\[0\].bounds: must be positive",
        ),
        ({"parameters": [{"name": "x", "type": "int", "bounds": [0.5, 3]}]}, "integers"),
        ({"parameters": [{"name": "x", "type": "choice", "values": ["a", 1]}]}, "values"),
        ({"parameters": [{"name": "x", "type": "choice", "values": ["a"]}]}, "at least two"),
        ({"parameters": [{"name": "x", "type": "set", "values": [1, 2]}]}, r"parameters\[0\].type"),
        (
            {"parameters": [{"name": "x", "type": "float", "bounds": [0, 1], "values": [1]}]},
            "values",
        ),
        ({"strategy": {"initialization_trial": 3}}, "strategy: unknown keys"),
        ({"strategy": {"num_restarts": 0}}, "strategy.num_restarts"),
        ({"strategy": {"checkpoint": 5}}, "strategy.checkpoint"),
        ({"max_failures": -1}, "max_failures"),
    ],
)
def test_invalid_fields_are_named(tmp_path, tiny_checkpoint, change, field):
    config = experiment(tmp_path, tiny_checkpoint)
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(RunnerConfigError, match=field):
        parse_config(config, tmp_path, source="exp.yaml")


def test_unreadable_files_are_reported(tmp_path):
    with pytest.raises(RunnerConfigError, match="No experiment file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("parameters: [\n")
    with pytest.raises(RunnerConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "exp.toml").write_text("")
    with pytest.raises(RunnerConfigError, match="unknown file type"):
        load_config(tmp_path / "exp.toml")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"objective": "loss >="}, "objective / outcome_constraints"),
        ({"outcome_constraints": ["latency <"]}, "objective / outcome_constraints"),
        ({"parameter_constraints": ["z <= 1"]}, "parameters / parameter_constraints"),
        ({"strategy": {"acquisition": "qNoSuchThing"}}, "strategy: ValueError: Unknown acq"),
    ],
)
def test_input_ax_rejects_is_reported_as_a_config_error(
    tmp_path, tiny_checkpoint, capsys, change, field
):
    config = experiment(tmp_path, tiny_checkpoint)
    config.update({**change, "strategy": {**config["strategy"], **change.get("strategy", {})}})
    assert main([str(write(tmp_path, config)), "--check"]) == 2
    assert field in capsys.readouterr().err


def test_outcomes_are_normalized_or_rejected():
    assert normalize_outcome(1.5, ["loss"], 0) == {"loss": 1.5}
    assert normalize_outcome({"loss": (1, 0.1)}, ["loss"], 0) == {"loss": (1.0, 0.1)}
    with pytest.raises(RunnerError, match="without the metrics"):
        normalize_outcome({"los": 1.0}, ["loss"], 3)
    with pytest.raises(RunnerError, match="mapping"):
        normalize_outcome(1.0, ["a", "b"], 3)
    with pytest.raises(RunnerError, match="number"):
        normalize_outcome({"loss": "high"}, ["loss"], 3)


def test_progress_bar_and_lines():
    import io

    stream = io.StringIO()
    bar = Progress("bar", total=3, initial=1, name="exp", stream=stream)
    bar.completed(2, "trial 1: loss=0.5")
    bar.line("generated trial(s) [2]")
    bar.close()
    assert "2/3" in stream.getvalue() and "generated trial(s) [2]" in stream.getvalue()
    stream = io.StringIO()
    Progress("auto", total=3, initial=0, name="exp", stream=stream).completed(1, "trial 0")
    assert stream.getvalue() == "[exp] 1/3 trial 0\n"  # not a terminal: plain lines


def test_check_validates_without_running(tmp_path, tiny_checkpoint, capsys):
    path = write(tmp_path, experiment(tmp_path, tiny_checkpoint))
    assert main([str(path), "--check"]) == 0
    assert "OK" in capsys.readouterr().err
    assert not (tmp_path / "out" / "snapshot.json").exists()
    path = write(tmp_path, experiment(tmp_path, tiny_checkpoint, evaluate="nowhere:evaluate"))
    assert main([str(path), "--check"]) == 2
    assert "evaluate: cannot import module 'nowhere'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- runs
def test_run_reaches_the_budget_and_skips_failed_evaluations(
    tmp_path, tiny_checkpoint, monkeypatch, capsys
):
    monkeypatch.setenv("TNPKR_TEST_FAIL_CALL", "2")
    path = write(tmp_path, experiment(tmp_path, tiny_checkpoint, budget=5, max_failures=1))
    config = load_config(path)
    client = run(config, progress="lines")
    trial_statuses = [t.status for t in client._experiment.trials.values()]
    assert trial_statuses.count(TrialStatus.COMPLETED) == 5
    assert trial_statuses.count(TrialStatus.FAILED) == 1
    assert client._experiment.trials[1].status == TrialStatus.FAILED
    saved = Client.load_from_json_file(str(config.snapshot))
    assert len(saved._experiment.trials) == len(trial_statuses)
    err = capsys.readouterr().err
    assert "[runner-test] 5/5 trial" in err and "done: 5 completed trials" in err
    assert "trial 1 failed: RuntimeError: call 2 diverged" in err
    assert not list(config.snapshot.parent.glob("*.tmp"))
    # Running again finds the budget reached and evaluates nothing.
    before = len(calls(tmp_path, "start"))
    run(config, progress="none")
    assert len(calls(tmp_path, "start")) == before


def test_too_many_dimensions_stop_before_the_first_trial(tmp_path, tiny_checkpoint, capsys):
    parameters = [{"name": f"x{i}", "type": "float", "bounds": [0, 1]} for i in range(4)]
    parameters.append({"name": "c", "type": "choice", "values": ["a", "b", "c", "d"]})
    config = experiment(tmp_path, tiny_checkpoint, parameters=parameters, objective="y")
    path = write(tmp_path, config)
    assert main([str(path), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "d=8" in err and "max_dim=6" in err
    assert not (tmp_path / "out" / "snapshot.json").exists()


def test_an_exhausted_search_space_ends_the_run(tmp_path, tiny_checkpoint, capsys):
    parameters = [
        {"name": "k", "type": "int", "bounds": [1, 2]},
        {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
    ]
    config = experiment(tmp_path, tiny_checkpoint, parameters=parameters, budget=6)
    assert main([str(write(tmp_path, config)), "--progress", "lines"]) == 0
    err = capsys.readouterr().err
    assert "the search space is exhausted" in err
    final = Client.load_from_json_file(str(tmp_path / "out" / "snapshot.json"))._experiment
    points = [
        tuple(sorted(t.arm.parameters.items()))
        for t in final.trials.values()
        if t.status == TrialStatus.COMPLETED
    ]
    assert len(points) == len(set(points)) <= 4


def _runner(path: Path, log: Path, hang_from_call: int | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "TNPKR_TEST_SLEEP": "0.2",
    }
    if hang_from_call is not None:
        env["TNPKR_TEST_HANG_FROM_CALL"] = str(hang_from_call)
    command = [sys.executable, "-m", "botorch_tnpkr.ax.runner", str(path), "--progress", "lines"]
    with log.open("w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path, tiny_checkpoint):
    budget = 7
    path = write(tmp_path, experiment(tmp_path, tiny_checkpoint, budget=budget))
    snapshot = tmp_path / "out" / "snapshot.json"
    # Evaluations 1-4 complete (trials 0-3: 3 Sobol, 1 TNP-KR); the 5th (trial 4, batched
    # with trial 5) hangs, so the kill lands while trials 4 and 5 are RUNNING.
    process = _runner(path, tmp_path / "first.log", hang_from_call=5)
    at_kill: dict[int, str] = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if snapshot.is_file():
                current = statuses(snapshot)
                done = sum(s == "COMPLETED" for s in current.values())
                if done == 4 and "RUNNING" in current.values() and _started(tmp_path) == 5:
                    process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
                    at_kill = statuses(snapshot)  # the state the killed process left
                    break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "first.log").read_text()
    assert at_kill, f"the runner was not caught mid-run:\n{log}"
    assert process.returncode == -signal.SIGKILL
    completed_before = sorted(i for i, s in at_kill.items() if s == "COMPLETED")
    running_before = sorted(i for i, s in at_kill.items() if s == "RUNNING")
    assert completed_before == [0, 1, 2, 3] and running_before == [4, 5]
    first = Client.load_from_json_file(str(snapshot))._experiment
    first_data = first.lookup_data().df.set_index("trial_index")["mean"]

    resume = _runner(path, tmp_path / "second.log")
    assert resume.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
    second_log = (tmp_path / "second.log").read_text()
    assert f"resumed from {snapshot}: {len(completed_before)} completed" in second_log

    final = Client.load_from_json_file(str(snapshot))._experiment
    final_statuses = {i: t.status for i, t in final.trials.items()}
    completed = sorted(i for i, s in final_statuses.items() if s == TrialStatus.COMPLETED)
    assert len(completed) == budget
    # Nothing completed before the kill was lost or changed ...
    final_data = final.lookup_data().df.set_index("trial_index")["mean"]
    for index in completed_before:
        assert final_statuses[index] == TrialStatus.COMPLETED
        assert final.trials[index].arm.parameters == first.trials[index].arm.parameters
        assert final_data[index] == first_data[index]
    # ... the interrupted trials were abandoned and their points evaluated again ...
    for index in running_before:
        assert final_statuses[index] == TrialStatus.ABANDONED
        again = [
            i
            for i in completed
            if i > max(at_kill)
            and final.trials[i].arm.parameters == first.trials[index].arm.parameters
        ]
        assert len(again) == 1
    # ... and no evaluation finished twice.
    finished = calls(tmp_path, "end")
    assert len(finished) == budget
    keys = [json.dumps(p, sort_keys=True) for p in finished]
    assert len(set(keys)) == budget
    assert not list(snapshot.parent.glob("*.tmp"))


MOO_OBJECTIVE = """
def evaluate(p):
    x, y = p["x"], p["y"]
    return {"f1": x + y, "f2": (y - 0.5) ** 2 + x, "g": x * y}
"""


def _moo_values(parameters: dict) -> dict:
    namespace: dict = {}
    exec(MOO_OBJECTIVE, namespace)
    return namespace["evaluate"](parameters)


def _moo_experiment(tmp_path: Path, checkpoint: Path, constraints: list[str]) -> dict:
    """Two objectives (maximise f1, minimise f2) of x, y in [0, 1], with ``constraints``."""
    module = f"moo_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MOO_OBJECTIVE)
    parameters = [{"name": n, "type": "float", "bounds": [0, 1]} for n in ("x", "y")]
    return experiment(
        tmp_path,
        checkpoint,
        parameters=parameters,
        objective="f1, -f2",
        outcome_constraints=constraints,
        evaluate=f"{module}:evaluate",
        budget=6,
        batch_size=3,
    )


def test_an_empty_pareto_front_is_explained(tmp_path, tiny_checkpoint, capsys):
    config = _moo_experiment(tmp_path, tiny_checkpoint, ["g <= 0.3", "f1 >= 100.0", "f2 <= 50.0"])
    client = run(load_config(write(tmp_path, config)), progress="lines")
    err = capsys.readouterr().err
    # f1 >= 100 is out of reach, so Ax's observed frontier is empty and the runner says why
    assert "Pareto front: 0 trial(s)" in err
    assert "beats the objective thresholds" in err and "f1 >= 100" in err
    # ... and lists the observed non-dominated feasible trials instead: check by brute force
    expected = _brute_force_front(client, feasible=lambda v: v["g"] <= 0.3)
    assert expected and len(expected) < len(client._experiment.trials)  # a real filter
    assert observed_nondominated(client) == expected
    listed = err.split("thresholds ignored: ")[1].splitlines()[0]
    assert [int(item.split(":")[0]) for item in ast.literal_eval(listed)] == expected


def test_the_hint_names_objectives_without_thresholds():
    client = Client(random_seed=0)
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name=n, parameter_type="float", bounds=(0, 1)) for n in "xy"
        ],
        name="hint",
    )
    client.configure_optimization(objective="-f2, f1")
    points = [(0.1, 0.9), (0.5, 0.5), (0.9, 0.2), (0.3, 0.3), (0.95, 0.95)]
    for x, y in points:
        index = client.attach_trial(parameters={"x": x, "y": y})
        client.complete_trial(index, raw_data=_moo_values({"x": x, "y": y}))
    failed = client.attach_trial(parameters={"x": 0.0, "y": 0.0})
    client.mark_trial_failed(failed)
    first, second = empty_front_hint(client)
    assert "no objective threshold was given for ['f2', 'f1']" in first
    assert "'f2 <= <worst acceptable value>'" in first
    expected = _brute_force_front(client, feasible=lambda v: True)
    assert 0 < len(expected) < len(points) and failed not in expected
    assert observed_nondominated(client) == expected
    assert [int(item.split(":")[0]) for item in ast.literal_eval(second.split(": ", 1)[1])] == (
        expected
    )


def _brute_force_front(client: Client, feasible) -> list[int]:
    values = {
        index: _moo_values(trial.arm.parameters)
        for index, trial in client._experiment.trials.items()
        if trial.status == TrialStatus.COMPLETED
    }
    points = {i: (v["f1"], -v["f2"]) for i, v in values.items() if feasible(v)}
    return sorted(
        i
        for i, a in points.items()
        if not any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in points.values())
    )


def test_a_failure_inside_ax_is_a_runner_error_with_the_cause(tmp_path, tiny_checkpoint, capsys):
    # Ax 1.3.1 (with any model) fails on NaN thresholds when only some objectives have one and
    # no observed trial is feasible: the runner must say so instead of dying in Ax's internals.
    config = _moo_experiment(tmp_path, tiny_checkpoint, ["g <= -1.0", "f1 >= 100.0"])
    path = write(tmp_path, config)
    assert main([str(path), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "error: Generating the next trial(s) failed inside Ax" in err
    assert "given for ['f1'] but not for ['f2']" in err
    snapshot = Client.load_from_json_file(str(tmp_path / "out" / "snapshot.json"))
    completed = [t for t in snapshot._experiment.trials.values() if t.status.is_completed]
    assert len(completed) == 3  # the initial batch is kept
