"""Config-driven, resumable Ax loop with the TNP-KR strategy.

Usage::

    python -m botorch_tnpkr.ax.runner experiment.yaml      # or experiment.json
    python -m botorch_tnpkr.ax.runner experiment.yaml --progress lines

The experiment file (see ``botorch_tnpkr.ax.config``) describes the parameters, the
objective(s) and constraints, the budget, the batch size, the strategy options and the
user's evaluation function ``module:function``.

Snapshots. The Ax JSON snapshot (experiment + generation strategy) is written atomically
(temporary file, fsync, rename) after every generated batch and after every completed or
failed trial, so a kill at any moment leaves the last consistent state on disk.

Resume. Running the same command again loads the snapshot. Trials that were running when
the process died are marked ABANDONED (they neither count towards the budget nor as
failures) and their parameterizations are evaluated again first, as new trials; completed
trials are kept as they are and never re-evaluated. The loop stops when the number of
COMPLETED trials reaches ``budget``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import torch
from ax.api.client import Client
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
from ax.core.trial_status import TrialStatus
from ax.core.types import ComparisonOp
from ax.exceptions.core import SearchSpaceExhausted
from ax.utils.common.logger import set_ax_logger_levels
from botorch.utils.multi_objective.pareto import is_non_dominated

from botorch_tnpkr.ax.config import ParameterSpec, RunnerConfig, RunnerConfigError, load_config
from botorch_tnpkr.ax.strategy import configure_tnpkr
from botorch_tnpkr.errors import TNPKRError

Evaluate = Callable[[dict[str, Any]], Any]


class RunnerError(TNPKRError):
    """The loop cannot continue: a bad evaluation result, too many failures, a foreign snapshot."""


# ----------------------------------------------------------------------------- setup
def load_function(spec: str, python_path: Sequence[Path] = ()) -> Evaluate:
    """Import ``module:function`` (``python_path`` folders first on ``sys.path``)."""
    for folder in reversed(python_path):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RunnerConfigError(
            f"evaluate: cannot import module {module_name!r} ({err}); searched the experiment "
            "file's folder, python_path and sys.path."
        ) from err
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RunnerConfigError(f"evaluate: {module_name!r} has no function {function_name!r}.")
    return function


def _parameter_config(spec: ParameterSpec) -> RangeParameterConfig | ChoiceParameterConfig:
    if spec.type in ("float", "int"):
        return RangeParameterConfig(
            name=spec.name,
            parameter_type=spec.type,
            bounds=spec.bounds,
            scaling="log" if spec.log_scale else None,
        )
    values = list(spec.values)
    if all(isinstance(v, bool) for v in values):
        kind = "bool"
    elif all(isinstance(v, str) for v in values):
        kind = "str"
    elif all(isinstance(v, int) for v in values):
        kind = "int"
    else:
        kind, values = "float", [float(v) for v in values]
    if spec.is_ordered is None and kind in ("int", "float"):
        is_ordered = True  # numbers have an order; say so instead of relying on Ax's guess
    elif spec.is_ordered is None:
        is_ordered = len(values) == 2  # Ax treats two-valued choices as ordered anyway
    else:
        is_ordered = spec.is_ordered
    return ChoiceParameterConfig(
        name=spec.name, values=values, parameter_type=kind, is_ordered=is_ordered
    )


def new_client(config: RunnerConfig) -> Client:
    """A fresh ``Client`` with the experiment, the optimization config and the TNP-KR strategy.

    Raises:
        DimensionError: The encoded search space exceeds the checkpoint's ``max_dim``
            (checked before any trial is generated).
    """
    client = Client(random_seed=config.seed)
    with _blame(config, "parameters / parameter_constraints"):
        client.configure_experiment(
            parameters=[_parameter_config(p) for p in config.parameters],
            parameter_constraints=list(config.parameter_constraints) or None,
            name=config.name,
        )
    with _blame(config, "objective / outcome_constraints"):
        client.configure_optimization(
            objective=config.objective,
            outcome_constraints=list(config.outcome_constraints) or None,
        )
    with _blame(config, "strategy"):
        configure_tnpkr(client, **config.strategy)
    return client


@contextmanager
def _blame(config: RunnerConfig, fields: str) -> Iterator[None]:
    """Report Ax's (or the strategy's) rejection of user input as a config error on ``fields``.

    Errors of this package (``DimensionError``, ``CheckpointError``) pass unchanged.
    """
    try:
        yield
    except TNPKRError:
        raise
    except Exception as err:  # Ax raises UserInputError, ValueError, sympy's SympifyError
        raise RunnerConfigError(f"{config.source}: {fields}: {type(err).__name__}: {err}") from err


def save_snapshot(client: Client, path: Path) -> None:
    """Write the client's JSON snapshot atomically: temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    client.save_to_json_file(str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _metric_names(client: Client) -> list[str]:
    return sorted(client._experiment.optimization_config.metric_names)


def load_snapshot(config: RunnerConfig) -> Client:
    """Load the snapshot and check that it holds this experiment file's experiment."""
    client = Client.load_from_json_file(str(config.snapshot))
    experiment = client._experiment
    expected = sorted(p.name for p in config.parameters)
    found = sorted(experiment.search_space.parameters)
    if experiment.name != config.name or found != expected:
        raise RunnerError(
            f"The snapshot {str(config.snapshot)!r} holds experiment {experiment.name!r} with "
            f"parameters {found}, but {config.source} describes {config.name!r} with "
            f"{expected}. Delete the snapshot or set `snapshot` to another path."
        )
    if client._maybe_generation_strategy is None:
        raise RunnerError(f"The snapshot {str(config.snapshot)!r} holds no generation strategy.")
    return client


def abandon_running(client: Client) -> list[dict[str, Any]]:
    """Mark trials left RUNNING (or never run) by a killed process ABANDONED.

    Returns:
        Their parameterizations, in trial order, to evaluate again.
    """
    unfinished = (TrialStatus.RUNNING, TrialStatus.CANDIDATE, TrialStatus.STAGED)
    rerun = []
    for index, trial in sorted(client._experiment.trials.items()):
        if trial.status in unfinished:
            client.mark_trial_abandoned(index)
            rerun.append(dict(trial.arm.parameters))
    return rerun


# ----------------------------------------------------------------------------- progress
class Progress:
    """Progress as a tqdm bar (``bar``), plain lines (``lines``) or nothing (``none``)."""

    def __init__(self, mode: str, total: int, initial: int, name: str, stream: TextIO) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode, self.stream, self.name, self.total = mode, stream, name, total
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=name, file=stream, unit="trial")

    def line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode == "lines":
            print(f"[{self.name}] {text}", file=self.stream, flush=True)

    def completed(self, done: int, text: str) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(text[:60])
        else:
            self.line(f"{done}/{self.total} {text}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _format(outcome: Mapping[str, Any]) -> str:
    parts = []
    for name, value in outcome.items():
        mean = value[0] if isinstance(value, tuple) else value
        parts.append(f"{name}={mean:.6g}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- evaluation
def normalize_outcome(raw: Any, metric_names: Sequence[str], index: int) -> dict[str, Any]:
    """The evaluation's result as Ax ``raw_data``; raises ``RunnerError`` if malformed.

    Returns a mapping of metric name to a float or a ``(mean, sem)`` pair. Non-finite means
    are returned as they are (the caller marks the trial failed).
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if len(metric_names) != 1:
            raise RunnerError(
                f"Trial {index}: evaluate returned a number, but the experiment has metrics "
                f"{list(metric_names)}: return a mapping of metric name to value."
            )
        raw = {metric_names[0]: raw}
    if not isinstance(raw, Mapping):
        raise RunnerError(
            f"Trial {index}: evaluate must return a mapping of metric name to a value or a "
            f"(mean, sem) pair, got {type(raw).__name__}."
        )
    missing = sorted(set(metric_names) - set(raw))
    if missing:
        raise RunnerError(
            f"Trial {index}: evaluate returned {sorted(raw)} without the metrics {missing}."
        )
    outcome: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            mean, sem = value
        else:
            mean, sem = value, None
        try:
            mean = float(mean)
            sem = None if sem is None else float(sem)
        except (TypeError, ValueError) as err:
            raise RunnerError(
                f"Trial {index}: metric {name!r} must be a number or a (mean, sem) pair, "
                f"got {value!r}."
            ) from err
        outcome[str(name)] = mean if sem is None else (mean, sem)
    return outcome


def _finite(outcome: Mapping[str, Any]) -> bool:
    values = [
        v for value in outcome.values() for v in (value if isinstance(value, tuple) else (value,))
    ]
    return all(math.isfinite(v) for v in values)


def _node_name(client: Client, index: int) -> str:
    """The generation node that made a trial; ``re-run`` for an interrupted trial run again."""
    run = client._experiment.trials[index].generator_run
    if run is None or run._generation_node_name is None:
        return "re-run"
    if (run._generator_key or "").startswith("Fallback"):
        # Ax's deduplication gave up on the model's candidates and drew from Sobol.
        return f"{run._generation_node_name}({run._generator_key})"
    return run._generation_node_name


def _count(client: Client, status: TrialStatus) -> int:
    return sum(trial.status == status for trial in client._experiment.trials.values())


def _observed_means(client: Client) -> dict[int, dict[str, float]]:
    """Mean of every metric of every COMPLETED trial: ``{trial index: {metric: mean}}``."""
    completed = {
        index
        for index, trial in client._experiment.trials.items()
        if trial.status == TrialStatus.COMPLETED
    }
    means: dict[int, dict[str, float]] = {index: {} for index in completed}
    frame = client._experiment.lookup_data().df
    for index, name, mean in zip(
        frame["trial_index"], frame["metric_name"], frame["mean"], strict=True
    ):
        if int(index) in means:
            means[int(index)][str(name)] = float(mean)
    return means


def observed_nondominated(
    client: Client, means: dict[int, dict[str, float]] | None = None
) -> list[int]:
    """COMPLETED trials of a multi-objective experiment that no other one dominates.

    Objective thresholds are ignored. A trial counts only if it has every metric these need and
    satisfies the absolute outcome constraints (relative ones need a status-quo arm and are
    not checked). ``means`` is ``_observed_means(client)`` where the caller has it already.
    Returns trial indices in ascending order.
    """
    config = client._experiment.optimization_config
    signs = dict(config.objective.metric_weights)  # +1 maximise, -1 minimise
    constraints = [c for c in config.outcome_constraints if not c.relative]
    needed = set(signs).union(*(c.metric_names for c in constraints))
    feasible = {}
    for index, values in (_observed_means(client) if means is None else means).items():
        if not needed <= set(values):
            continue
        totals = [(c, sum(w * values[n] for n, w in c.metric_weights)) for c in constraints]
        if all(
            total <= c.bound if c.op == ComparisonOp.LEQ else total >= c.bound
            for c, total in totals
        ):
            feasible[index] = [signs[name] * values[name] for name in signs]
    if not feasible:
        return []
    indices = sorted(feasible)
    keep = is_non_dominated(
        torch.tensor([feasible[i] for i in indices], dtype=torch.float64), deduplicate=False
    )
    return [i for i, k in zip(indices, keep.tolist(), strict=True) if k]


def _thresholds_given_and_missing(client: Client) -> tuple[list[str], list[str]]:
    """Objectives of a multi-objective experiment with and without an objective threshold."""
    config = client._experiment.optimization_config
    given = {n for threshold in config.objective_thresholds for n in threshold.metric_names}
    names = config.objective.metric_names
    return [n for n in names if n in given], [n for n in names if n not in given]


def empty_front_hint(client: Client) -> list[str]:
    """Why Ax's observed Pareto front came out empty, and the non-dominated trials instead."""
    config = client._experiment.optimization_config
    _, missing = _thresholds_given_and_missing(client)
    if missing:
        first, sign = missing[0], dict(config.objective.metric_weights)[missing[0]]
        example = f"'{first} {'>=' if sign > 0 else '<='} <worst acceptable value>'"
        lines = [
            f"Ax's Pareto front is empty: no objective threshold was given for {missing}, so "
            "Ax inferred thresholds from the model's predictions and no observed trial beats "
            "them. Give thresholds as outcome constraints on the objectives, e.g. "
            f"{example}."
        ]
    else:
        thresholds = [t.expression for t in config.objective_thresholds]
        lines = [
            "Ax's Pareto front is empty: no completed trial satisfies the outcome constraints "
            f"and beats the objective thresholds {thresholds}."
        ]
    means = _observed_means(client)
    front = observed_nondominated(client, means)
    names = config.objective.metric_names
    shown = [f"{i}: {_format({n: means[i][n] for n in names})}" for i in front]
    lines.append(f"observed non-dominated trial(s), thresholds ignored: {shown}")
    return lines


def generation_failure(client: Client, err: Exception) -> str:
    """The message for a failed ``get_next_trials``, with the likely cause where one is known."""
    text = f"Generating the next trial(s) failed inside Ax: {type(err).__name__}: {err}."
    if client._experiment.optimization_config.is_moo_problem:
        given, missing = _thresholds_given_and_missing(client)
        if given and missing:
            text += (
                f" Objective thresholds are given for {given} but not for {missing}: "
                "Ax then infers the missing ones from the trials the model predicts feasible, "
                "and fails when there are none. Give a threshold for every objective (or none)."
            )
    return (
        text + " Completed trials are kept in the snapshot. On resume the objective and "
        "constraints come from the snapshot: to change them, use a new snapshot path."
    )


def _report_best(client: Client, progress: Progress) -> None:
    try:
        if client._experiment.optimization_config.is_moo_problem:
            front = client.get_pareto_frontier(use_model_predictions=False)
            progress.line(f"Pareto front: {len(front)} trial(s): {[t[2] for t in front]}")
            if not front:
                for text in empty_front_hint(client):
                    progress.line(text)
        else:
            parameters, values, index, _ = client.get_best_parameterization(
                use_model_predictions=False
            )
            progress.line(f"best trial {index}: {parameters} -> {_format(values)}")
    except Exception as err:  # reporting must never fail a finished run
        progress.line(f"(no best-point summary: {type(err).__name__}: {err})")


# ----------------------------------------------------------------------------- the loop
def run(config: RunnerConfig, progress: str = "auto", stream: TextIO | None = None) -> Client:
    """Run (or resume) the experiment until ``budget`` trials are COMPLETED.

    Args:
        config: The validated experiment file.
        progress: ``auto`` (a bar on a terminal, lines otherwise), ``bar``, ``lines`` or
            ``none``.
        stream: Where progress goes (default ``sys.stderr``).

    Returns:
        The client, with the final snapshot written.

    Raises:
        RunnerError: Malformed evaluation result, more than ``max_failures`` failed
            evaluations, or a snapshot of another experiment.
        DimensionError, CheckpointError: The strategy cannot use this search space or
            checkpoint (before any trial).
    """
    stream = sys.stderr if stream is None else stream
    evaluate = load_function(config.evaluate, config.python_path)
    rerun: list[dict[str, Any]] = []
    if config.snapshot.is_file():
        client = load_snapshot(config)
        rerun = abandon_running(client)
        resumed = True
    else:
        client = new_client(config)
        resumed = False
    save_snapshot(client, config.snapshot)
    metric_names = _metric_names(client)
    done = _count(client, TrialStatus.COMPLETED)
    bar = Progress(progress, config.budget, done, config.name, stream)
    if resumed:
        bar.line(
            f"resumed from {config.snapshot}: {done} completed, "
            f"{_count(client, TrialStatus.FAILED)} failed, {len(rerun)} interrupted trial(s) "
            "abandoned and queued again"
        )
    exhausted = False
    try:
        while done < config.budget and not exhausted:
            wanted = min(config.batch_size, config.budget - done)
            start = time.perf_counter()
            batch: dict[int, dict[str, Any]] = {}
            while rerun and len(batch) < wanted:
                parameters = rerun.pop(0)
                batch[client.attach_trial(parameters=parameters)] = parameters
            if len(batch) < wanted:
                try:
                    batch.update(client.get_next_trials(max_trials=wanted - len(batch)))
                except SearchSpaceExhausted as err:  # e.g. every point of a discrete space
                    exhausted = True
                    bar.line(f"stopping after this batch: the search space is exhausted ({err})")
                except TNPKRError:
                    raise
                except Exception as err:  # Ax's own failures, e.g. NaN inferred thresholds
                    raise RunnerError(generation_failure(client, err)) from err
            if not batch:
                if exhausted:
                    break
                raise RunnerError("The generation strategy produced no trial.")
            save_snapshot(client, config.snapshot)
            nodes = sorted({_node_name(client, index) for index in batch})
            bar.line(
                f"generated trial(s) {sorted(batch)} with {'+'.join(nodes)} in "
                f"{time.perf_counter() - start:.2f} s"
            )
            for index, parameters in batch.items():
                start = time.perf_counter()
                try:
                    raw = evaluate(dict(parameters))
                except Exception as err:
                    reason = f"{type(err).__name__}: {err}"
                    client.mark_trial_failed(index, failed_reason=reason[:500])
                    save_snapshot(client, config.snapshot)
                    bar.line(f"trial {index} failed: {reason}")
                    traceback.print_exc(file=stream)
                    if _count(client, TrialStatus.FAILED) > config.max_failures:
                        raise RunnerError(
                            f"More than max_failures={config.max_failures} evaluations "
                            f"failed; the last one: {reason}"
                        ) from err
                    continue
                outcome = normalize_outcome(raw, metric_names, index)
                if not _finite(outcome):
                    client.mark_trial_failed(index, failed_reason=f"non-finite outcome {outcome}")
                    save_snapshot(client, config.snapshot)
                    bar.line(f"trial {index} failed: non-finite outcome {outcome}")
                    if _count(client, TrialStatus.FAILED) > config.max_failures:
                        raise RunnerError(
                            f"More than max_failures={config.max_failures} evaluations failed."
                        )
                    continue
                client.complete_trial(index, raw_data=outcome)
                save_snapshot(client, config.snapshot)
                done += 1
                bar.completed(
                    done,
                    f"trial {index} in {time.perf_counter() - start:.2f} s: {_format(outcome)}",
                )
    finally:
        bar.close()
    summary = Progress(
        progress if progress != "bar" else "lines", config.budget, done, config.name, stream
    )
    summary.line(f"done: {done} completed trials; snapshot {config.snapshot}")
    _report_best(client, summary)
    return client


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m botorch_tnpkr.ax.runner",
        description="Run or resume an Ax experiment described in a YAML/JSON file with the "
        "TNP-KR generation strategy.",
    )
    parser.add_argument("config", help="experiment file (.yaml, .yml or .json)")
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display (auto: a bar on a terminal, plain lines otherwise)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Ax's INFO logs")
    parser.add_argument(
        "--check", action="store_true", help="validate the file and the search space, then exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        set_ax_logger_levels(logging.WARNING)
    try:
        config = load_config(args.config)
        if args.check:
            load_function(config.evaluate, config.python_path)
            new_client(config)
            print(f"{args.config}: OK", file=sys.stderr)
            return 0
        run(config, progress=args.progress)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except TNPKRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
