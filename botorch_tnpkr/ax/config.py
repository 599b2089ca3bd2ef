"""The experiment file of the config-driven runner: schema, parsing and validation.

A YAML (``.yaml``/``.yml``) or JSON (``.json``) file with these fields (relative paths are
relative to the file's folder)::

    name: my-tuning                   # optional; default: the file's stem
    parameters:                       # required, at least one
      - {name: lr, type: float, bounds: [1.0e-4, 1.0e-1], log_scale: true}
      - {name: layers, type: int, bounds: [1, 8]}
      - {name: optimizer, type: choice, values: [adam, sgd, rmsprop]}   # is_ordered: false
    parameter_constraints: ["lr <= 0.05"]        # optional, Ax syntax
    objective: "-loss"                # Ax syntax: "-loss" minimises, "acc, -latency" is two
    outcome_constraints: ["latency <= 10"]       # optional, Ax syntax
    budget: 40                        # completed trials to reach
    batch_size: 4                     # trials generated per get_next_trials (default 1)
    evaluate: my_pipeline:evaluate    # module:function, parameters dict -> outcomes
    python_path: [src]                # optional folders put on sys.path (the file's folder
                                      # always is)
    snapshot: runs/my-tuning.json     # optional; default: <name>.ax.json beside the file
    seed: 0                           # optional; Client random seed
    max_failures: 5                   # optional; evaluation errors tolerated (default 5)
    strategy:                         # optional; arguments of tnpkr_generation_strategy
      checkpoint: auto                # or a registered name, or a .safetensors path
      initialization_trials: 8
      acquisition: auto
      num_restarts: 8
      raw_samples: 256
      optimizer_options: {maxiter: 100}
      seed: 0

``evaluate(parameters)`` returns a mapping of metric name to a value or a ``(mean, sem)``
pair, or a plain number when the experiment has exactly one metric. Every invalid field
raises ``RunnerConfigError`` naming it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botorch_tnpkr.errors import TNPKRError

_TOP_LEVEL = {
    "name",
    "parameters",
    "parameter_constraints",
    "objective",
    "outcome_constraints",
    "budget",
    "batch_size",
    "evaluate",
    "python_path",
    "snapshot",
    "seed",
    "max_failures",
    "strategy",
}
_STRATEGY_KEYS = {
    "checkpoint",
    "initialization_trials",
    "acquisition",
    "num_restarts",
    "raw_samples",
    "optimizer_options",
    "min_observed_initialization_trials",
    "seed",
    "linear_above",
    "scan_above",
    "torch_device",
}
_PARAMETER_TYPES = ("float", "int", "choice")
_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class RunnerConfigError(TNPKRError):
    """The runner's experiment file is invalid (the message names the field)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One search-space parameter of the experiment file."""

    name: str
    type: str
    bounds: tuple[float, float] | None = None
    log_scale: bool = False
    values: tuple[Any, ...] | None = None
    is_ordered: bool | None = None


@dataclass(frozen=True)
class RunnerConfig:
    """A validated experiment file (paths absolute)."""

    source: Path
    name: str
    parameters: tuple[ParameterSpec, ...]
    objective: str
    budget: int
    evaluate: str
    snapshot: Path
    batch_size: int = 1
    parameter_constraints: tuple[str, ...] = ()
    outcome_constraints: tuple[str, ...] = ()
    python_path: tuple[Path, ...] = ()
    seed: int | None = None
    max_failures: int = 5
    strategy: Mapping[str, Any] = field(default_factory=dict)


def _fail(source: str, where: str, message: str) -> RunnerConfigError:
    return RunnerConfigError(f"{source}: {where}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


def _string_list(data: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(source, key, f"must be a list of strings, got {value!r}.")
    return tuple(value)


def _positive_int(data: Mapping[str, Any], key: str, source: str, default: Any = None) -> Any:
    value = data.get(key, default)
    if not _is_int(value) or value < 1:
        raise _fail(source, key, f"must be a positive integer, got {value!r}.")
    return value


def _parameter(item: Any, where: str, source: str) -> ParameterSpec:
    if not isinstance(item, Mapping):
        raise _fail(source, where, f"must be a mapping with name and type, got {item!r}.")
    allowed = {"name", "type", "bounds", "log_scale", "values", "is_ordered"}
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise _fail(source, where, f"unknown keys {unknown}; allowed: {sorted(allowed)}.")
    name = item.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z_]\w*$", name):
        raise _fail(source, f"{where}.name", f"must be an identifier, got {name!r}.")
    kind = item.get("type")
    if kind not in _PARAMETER_TYPES:
        raise _fail(
            source, f"{where}.type", f"must be one of {list(_PARAMETER_TYPES)}, got {kind!r}."
        )
    if kind == "choice":
        for key in ("bounds", "log_scale"):
            if key in item:
                raise _fail(source, f"{where}.{key}", "applies to float and int parameters only.")
        values = item.get("values")
        if not isinstance(values, list) or len(values) < 2:
            raise _fail(
                source, f"{where}.values", f"must list at least two values, got {values!r}."
            )
        kinds = {_choice_type(v) for v in values}
        if None in kinds or (len(kinds) > 1 and kinds != {"int", "float"}):
            raise _fail(
                source,
                f"{where}.values",
                f"must be all strings, all booleans or all numbers, got {values!r}.",
            )
        if len(set(map(repr, values))) != len(values):
            raise _fail(source, f"{where}.values", f"has duplicates: {values!r}.")
        is_ordered = item.get("is_ordered")
        if is_ordered is not None and not isinstance(is_ordered, bool):
            raise _fail(
                source, f"{where}.is_ordered", f"must be true or false, got {is_ordered!r}."
            )
        return ParameterSpec(name=name, type=kind, values=tuple(values), is_ordered=is_ordered)
    for key in ("values", "is_ordered"):
        if key in item:
            raise _fail(source, f"{where}.{key}", "applies to choice parameters only.")
    bounds = item.get("bounds")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_is_number, bounds))):
        raise _fail(source, f"{where}.bounds", f"must be [lower, upper] numbers, got {bounds!r}.")
    lower, upper = bounds
    if kind == "int" and not all(float(b).is_integer() for b in bounds):
        raise _fail(
            source, f"{where}.bounds", f"must be integers for an int parameter, got {bounds!r}."
        )
    if not lower < upper:
        raise _fail(source, f"{where}.bounds", f"lower {lower} must be below upper {upper}.")
    log_scale = item.get("log_scale", False)
    if not isinstance(log_scale, bool):
        raise _fail(source, f"{where}.log_scale", f"must be true or false, got {log_scale!r}.")
    if log_scale and lower <= 0:
        raise _fail(source, f"{where}.bounds", f"must be positive with log_scale, got {bounds!r}.")
    if kind == "int":
        lower, upper = int(lower), int(upper)
    else:
        lower, upper = float(lower), float(upper)
    return ParameterSpec(name=name, type=kind, bounds=(lower, upper), log_scale=log_scale)


def _choice_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float) and math.isfinite(value):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


def _strategy(data: Any, base: Path, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _fail(source, "strategy", f"must be a mapping, got {data!r}.")
    unknown = sorted(set(data) - _STRATEGY_KEYS)
    if unknown:
        raise _fail(
            source, "strategy", f"unknown keys {unknown}; allowed: {sorted(_STRATEGY_KEYS)}."
        )
    strategy = dict(data)
    for key in ("initialization_trials", "num_restarts", "raw_samples"):
        if key in strategy and (not _is_int(strategy[key]) or strategy[key] < 1):
            raise _fail(
                source, f"strategy.{key}", f"must be a positive integer, got {strategy[key]!r}."
            )
    for key in ("min_observed_initialization_trials", "seed", "linear_above", "scan_above"):
        if (
            key in strategy
            and strategy[key] is not None
            and (not _is_int(strategy[key]) or strategy[key] < 0)
        ):
            raise _fail(
                source, f"strategy.{key}", f"must be a non-negative integer, got {strategy[key]!r}."
            )
    checkpoint = strategy.get("checkpoint", "auto")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise _fail(source, "strategy.checkpoint", f"must be a name or a path, got {checkpoint!r}.")
    if checkpoint.endswith(".safetensors") or "/" in checkpoint:
        strategy["checkpoint"] = str((base / checkpoint).expanduser().resolve())
    acquisition = strategy.get("acquisition")
    if acquisition is not None and not isinstance(acquisition, str):
        raise _fail(
            source, "strategy.acquisition", f"must be 'auto' or a class name, got {acquisition!r}."
        )
    options = strategy.get("optimizer_options")
    if options is not None and not isinstance(options, Mapping):
        raise _fail(source, "strategy.optimizer_options", f"must be a mapping, got {options!r}.")
    device = strategy.get("torch_device")
    if device is not None and not isinstance(device, str):
        raise _fail(source, "strategy.torch_device", f"must be a string, got {device!r}.")
    return strategy


def parse_config(data: Any, base_dir: str | Path, source: str = "<config>") -> RunnerConfig:
    """Validate a parsed experiment file (a mapping) into a ``RunnerConfig``.

    Args:
        data: The file's content.
        base_dir: Folder that relative paths are relative to.
        source: Name of the file, for error messages.

    Raises:
        RunnerConfigError: A field is missing, unknown or invalid (the message names it).
    """
    base = Path(base_dir).resolve()
    if not isinstance(data, Mapping):
        raise RunnerConfigError(
            f"{source}: must hold a mapping of fields, got {type(data).__name__}."
        )
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise RunnerConfigError(
            f"{source}: unknown fields {unknown}; allowed: {sorted(_TOP_LEVEL)}."
        )
    for key in ("parameters", "objective", "budget", "evaluate"):
        if key not in data:
            raise _fail(source, key, "is required.")
    name = data.get("name", Path(source).stem or "experiment")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", f"must be a non-empty string, got {name!r}.")
    raw_parameters = data["parameters"]
    if not isinstance(raw_parameters, list) or not raw_parameters:
        raise _fail(source, "parameters", "must be a non-empty list.")
    parameters = tuple(
        _parameter(item, f"parameters[{i}]", source) for i, item in enumerate(raw_parameters)
    )
    names = [p.name for p in parameters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(source, "parameters", f"duplicate names {duplicates}.")
    objective = data["objective"]
    if not isinstance(objective, str) or not objective.strip():
        raise _fail(
            source,
            "objective",
            f"must be an Ax objective string such as '-loss', got {objective!r}.",
        )
    evaluate = data["evaluate"]
    if not isinstance(evaluate, str) or not _FUNCTION_RE.match(evaluate):
        raise _fail(source, "evaluate", f"must be 'module:function', got {evaluate!r}.")
    python_path = data.get("python_path", [])
    if isinstance(python_path, str):
        python_path = [python_path]
    if not isinstance(python_path, list) or not all(isinstance(p, str) for p in python_path):
        raise _fail(source, "python_path", f"must be a list of folders, got {python_path!r}.")
    snapshot = data.get("snapshot", f"{name}.ax.json")
    if not isinstance(snapshot, str) or not snapshot.endswith(".json"):
        raise _fail(source, "snapshot", f"must be a path ending in .json, got {snapshot!r}.")
    seed = data.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise _fail(source, "seed", f"must be a non-negative integer, got {seed!r}.")
    max_failures = data.get("max_failures", 5)
    if not _is_int(max_failures) or max_failures < 0:
        raise _fail(
            source, "max_failures", f"must be a non-negative integer, got {max_failures!r}."
        )
    return RunnerConfig(
        source=Path(source),
        name=name,
        parameters=parameters,
        objective=objective,
        budget=_positive_int(data, "budget", source),
        evaluate=evaluate,
        snapshot=(base / snapshot).resolve(),
        batch_size=_positive_int(data, "batch_size", source, default=1),
        parameter_constraints=_string_list(data, "parameter_constraints", source),
        outcome_constraints=_string_list(data, "outcome_constraints", source),
        python_path=(base, *((base / p).resolve() for p in python_path)),
        seed=seed,
        max_failures=max_failures,
        strategy=_strategy(data.get("strategy"), base, source),
    )


def load_config(path: str | Path) -> RunnerConfig:
    """Read and validate an experiment file (``.yaml``, ``.yml`` or ``.json``)."""
    path = Path(path)
    if not path.is_file():
        raise RunnerConfigError(f"No experiment file at {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise RunnerConfigError(f"{path}: unknown file type {suffix!r}; use .yaml, .yml or .json.")
    text = path.read_text()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RunnerConfigError(f"{path}: not valid JSON: {err}") from err
    else:
        import yaml  # the "ax" extra installs pyyaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RunnerConfigError(f"{path}: not valid YAML: {err}") from err
    return parse_config(data, base_dir=path.parent, source=str(path))


__all__ = ["ParameterSpec", "RunnerConfig", "RunnerConfigError", "load_config", "parse_config"]
