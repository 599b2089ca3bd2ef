"""Ax generation strategies that use ``TNPKRModel`` as the surrogate.

``tnpkr_generation_strategy`` mirrors the structure of Ax's default ("fast") strategy:
a seeded Sobol node for the initialization trials, then a BoTorch-modular (MBM) node whose
surrogate is ``TNPKRModel`` (no fitting step). Everything in it is JSON-serialisable, so
``Client.save_to_json_file`` / ``load_from_json_file`` restore the same strategy.

Acquisition. By default (``acquisition=None``) Ax chooses, as for its own GPs:
``qLogNoisyExpectedImprovement`` for one objective, ``qLogNoisyExpectedHypervolumeImprovement``
for up to four objectives (``qLogNParEGO`` beyond), ``qLogProbabilityOfFeasibility`` while no
observed point is feasible. These are Monte-Carlo acquisitions: they handle pending trials
(``get_next_trials(max_trials > 1)``), which analytic ones (``LogExpectedImprovement``) cannot.

Ax standardizes ``Y`` itself and passes raw ``X`` with a ``Normalize`` input transform built
from the search-space bounds (log-scale parameters are log-transformed first, unordered
choice parameters one-hot encoded); ``TNPKRModel`` takes both as any BoTorch model does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ax.adapter.registry import Generators
from ax.core.experiment_status import ExperimentStatus
from ax.core.search_space import SearchSpace
from ax.core.trial_status import TrialStatus
from ax.generation_strategy.dispatch_utils import get_derelativize_config
from ax.generation_strategy.generation_node import GenerationNode
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.generation_strategy.generator_spec import GeneratorSpec
from ax.generation_strategy.transition_criterion import MaxTrialsAwaitingData, MinTrials
from ax.generators.torch.botorch_modular.surrogate import SurrogateSpec
from ax.generators.torch.botorch_modular.utils import ModelConfig
from ax.storage.botorch_modular_registry import (
    ACQUISITION_FUNCTION_REGISTRY,
    REVERSE_ACQUISITION_FUNCTION_REGISTRY,
    register_acquisition_function,
)
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import AnalyticAcquisitionFunction

from botorch_tnpkr.ax.dimension import (
    check_search_space,
    checkpoint_max_dim,
    is_fully_discrete,
)
from botorch_tnpkr.checkpoints import available_checkpoints
from botorch_tnpkr.model import DEFAULT_LINEAR_ABOVE, DEFAULT_SCAN_ABOVE, TNPKRModel
from botorch_tnpkr.model.network import AUTO
from botorch_tnpkr.nn import TNPKR

SOBOL_NODE = "Sobol"
TNPKR_NODE = "TNPKR"

# Keys of ``optimizer_kwargs`` Ax builds itself and rejects from users.
_FORBIDDEN_OPTIMIZER_KEYS = (
    "equality_constraints",
    "inequality_constraints",
    "batch_initial_conditions",
    "return_best_only",
    "return_full_tree",
)


def _checkpoint_option(checkpoint: Any) -> str:
    """The JSON-safe form of ``checkpoint`` stored in the model options.

    Registered names and ``"auto"`` stay as they are; paths become absolute, so that a
    snapshot keeps working from another working directory.
    """
    if isinstance(checkpoint, TNPKR):
        raise TypeError(
            "An Ax strategy is stored as JSON, so it names its checkpoint by a registered "
            "name or a file path, not a TNPKR instance; save the network with "
            "botorch_tnpkr.nn.save_network(network, path) and pass the path."
        )
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            "checkpoint must be 'auto', a registered checkpoint name or a path to a "
            f".safetensors network file, got {type(checkpoint).__name__}."
        )
    if isinstance(checkpoint, str) and (
        checkpoint == AUTO or checkpoint in available_checkpoints()
    ):
        return checkpoint
    return str(Path(checkpoint).expanduser().resolve())


def _check_threshold(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{name} must be a non-negative int or None, got {value!r}.")


def tnpkr_model_config(
    checkpoint: str | os.PathLike = AUTO,
    linear_above: int | None = DEFAULT_LINEAR_ABOVE,
    scan_above: int | None = DEFAULT_SCAN_ABOVE,
    name: str = "TNPKR",
) -> ModelConfig:
    """An Ax ``ModelConfig`` for ``TNPKRModel``, for users who compose their own strategies.

    Use it in ``SurrogateSpec(model_configs=[tnpkr_model_config(...)])``, passed as
    ``generator_kwargs={"surrogate_spec": ...}`` of a ``GeneratorSpec`` with
    ``Generators.BOTORCH_MODULAR``.

    Args:
        checkpoint: ``"auto"`` (the registered exact checkpoint, or the linear-attention
            one above ``linear_above`` points), a registered name, or a path to a
            ``.safetensors`` network file (stored as an absolute path).
        linear_above: See ``TNPKRModel``.
        scan_above: See ``TNPKRModel``.
        name: The config's name (shown in Ax's model-selection and diagnostics output).

    Raises:
        CheckpointError: The checkpoint cannot be found or read (checked now, not at the
            first model-based trial).
        TypeError: ``checkpoint`` is a ``TNPKR`` instance (not storable) or of another type.
    """
    checkpoint = _checkpoint_option(checkpoint)
    _check_threshold("linear_above", linear_above)
    _check_threshold("scan_above", scan_above)
    checkpoint_max_dim(checkpoint, linear_above=linear_above)  # fails early if unreadable
    return ModelConfig(
        botorch_model_class=TNPKRModel,
        model_options={
            "checkpoint": checkpoint,
            "linear_above": linear_above,
            "scan_above": scan_above,
        },
        name=name,
    )


def resolve_acquisition(
    acquisition: type[AcquisitionFunction] | str | None,
) -> type[AcquisitionFunction] | None:
    """A BoTorch acquisition class from a class, a class name, or None / ``"auto"`` (Ax's choice).

    Classes outside Ax's storage registry are registered, so the strategy stays storable.
    Analytic acquisitions are allowed with a warning: Ax cannot use them with pending trials.
    """
    if acquisition is None or (isinstance(acquisition, str) and acquisition == "auto"):
        return None
    if isinstance(acquisition, str):
        if acquisition not in REVERSE_ACQUISITION_FUNCTION_REGISTRY:
            known = sorted(REVERSE_ACQUISITION_FUNCTION_REGISTRY)
            raise ValueError(
                f"Unknown acquisition {acquisition!r}; use 'auto' (Ax's choice: qLogNEI, or "
                f"qLogNEHVI for several objectives), an AcquisitionFunction class or one of "
                f"{known}."
            )
        acquisition = REVERSE_ACQUISITION_FUNCTION_REGISTRY[acquisition]
    if not (isinstance(acquisition, type) and issubclass(acquisition, AcquisitionFunction)):
        raise TypeError(
            "acquisition must be None, 'auto', a BoTorch AcquisitionFunction class or its "
            f"name, got {acquisition!r}."
        )
    if issubclass(acquisition, AnalyticAcquisitionFunction):
        warnings.warn(
            f"{acquisition.__name__} is analytic: Ax fails to generate with it while trials "
            "are pending (get_next_trials(max_trials > 1), or running trials). Prefer a "
            "Monte-Carlo acquisition such as qLogNoisyExpectedImprovement (the default).",
            UserWarning,
            stacklevel=3,
        )
    if acquisition not in ACQUISITION_FUNCTION_REGISTRY:
        register_acquisition_function(acquisition)
    return acquisition


def _optimizer_kwargs(
    num_restarts: int | None,
    raw_samples: int | None,
    optimizer_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``optimizer_kwargs`` for Ax's ``model_gen_options`` (only what was given)."""
    kwargs: dict[str, Any] = {}
    for name, value in (("num_restarts", num_restarts), ("raw_samples", raw_samples)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
        kwargs[name] = value
    if optimizer_options is not None:
        if not isinstance(optimizer_options, Mapping):
            raise TypeError(
                "optimizer_options must be a mapping of options of BoTorch's optimizer "
                f"(e.g. {{'maxiter': 50}}), got {optimizer_options!r}."
            )
        bad = sorted(set(optimizer_options) & set(_FORBIDDEN_OPTIMIZER_KEYS))
        if bad:
            raise ValueError(f"optimizer_options may not set {bad}: Ax builds those itself.")
        kwargs["options"] = dict(optimizer_options)
    return kwargs


def tnpkr_generation_strategy(
    initialization_trials: int = 5,
    checkpoint: str | os.PathLike = AUTO,
    acquisition: type[AcquisitionFunction] | str | None = None,
    *,
    num_restarts: int | None = None,
    raw_samples: int | None = None,
    optimizer_options: Mapping[str, Any] | None = None,
    min_observed_initialization_trials: int | None = None,
    seed: int | None = None,
    linear_above: int | None = DEFAULT_LINEAR_ABOVE,
    scan_above: int | None = DEFAULT_SCAN_ABOVE,
    torch_device: str | torch.device | None = None,
    search_space: SearchSpace | None = None,
) -> GenerationStrategy:
    """A Sobol-then-TNP-KR ``GenerationStrategy`` for ``ax.api.Client`` or the legacy ``AxClient``.

    Args:
        initialization_trials: Sobol trials before the model takes over (failed and
            abandoned trials do not count; trials attached by the user do). At least 1.
        checkpoint: See ``tnpkr_model_config``.
        acquisition: None or ``"auto"`` for Ax's choice (qLogNEI; qLogNEHVI for several
            objectives), or a BoTorch acquisition class or its name.
        num_restarts: Restarts of the acquisition optimiser (Ax's default if None).
        raw_samples: Raw samples of the acquisition optimiser (Ax's default if None).
        optimizer_options: The ``options`` of BoTorch's optimiser, e.g.
            ``{"maxiter": 50, "batch_limit": 8}``. Ax's optimisers for fully discrete
            search spaces reject them: with ``search_space`` given they are then dropped
            (with a warning); without, generation fails with Ax's ``UnsupportedError``.
        min_observed_initialization_trials: Completed initialization trials needed before
            the model takes over; default ``max(1, initialization_trials // 2)``. Until then,
            no more than ``initialization_trials`` Sobol trials are handed out.
        seed: Seed of the Sobol sequence.
        linear_above: See ``TNPKRModel``.
        scan_above: See ``TNPKRModel``.
        torch_device: Device of the model and the acquisition optimisation (e.g. "cuda").
        search_space: When given, its encoded dimension is checked against the network's
            ``max_dim`` now (``configure_tnpkr`` passes the client's).

    Returns:
        A ``GenerationStrategy`` named ``"Sobol+TNPKR"`` with nodes ``"Sobol"`` and
        ``"TNPKR"``.

    Raises:
        DimensionError: ``search_space`` encodes to more inputs than the network accepts.
        CheckpointError: The checkpoint cannot be found or read.
    """
    if isinstance(initialization_trials, bool) or not isinstance(initialization_trials, int):
        raise TypeError(f"initialization_trials must be an int, got {initialization_trials!r}.")
    if initialization_trials < 1:
        raise ValueError(
            "initialization_trials must be at least 1: TNPKRModel needs observations to "
            f"condition on, got {initialization_trials}."
        )
    _check_threshold("min_observed_initialization_trials", min_observed_initialization_trials)
    min_observed = min_observed_initialization_trials
    if min_observed is None:
        min_observed = max(1, initialization_trials // 2)
    model_config = tnpkr_model_config(checkpoint, linear_above=linear_above, scan_above=scan_above)
    if search_space is not None:
        check_search_space(search_space, model_config.model_options["checkpoint"], linear_above)
    acqf_class = resolve_acquisition(acquisition)
    optimizer_kwargs = _optimizer_kwargs(num_restarts, raw_samples, optimizer_options)
    discrete = search_space is not None and is_fully_discrete(search_space)
    if discrete and "options" in optimizer_kwargs:
        warnings.warn(
            "optimizer_options are not used: the search space is fully discrete, and Ax's "
            "discrete acquisition optimisers reject them.",
            UserWarning,
            stacklevel=2,
        )
        del optimizer_kwargs["options"]

    sobol = GenerationNode(
        name=SOBOL_NODE,
        generator_specs=[
            GeneratorSpec(generator_enum=Generators.SOBOL, generator_kwargs={"seed": seed})
        ],
        transition_criteria=[
            MinTrials(
                threshold=initialization_trials,
                transition_to=TNPKR_NODE,
                use_all_trials_in_exp=True,
                not_in_statuses=[TrialStatus.FAILED, TrialStatus.ABANDONED],
            ),
            MinTrials(
                threshold=min_observed,
                transition_to=TNPKR_NODE,
                use_all_trials_in_exp=True,
                only_in_statuses=[TrialStatus.COMPLETED],
                count_only_trials_with_data=True,
            ),
        ],
        pausing_criteria=[
            MaxTrialsAwaitingData(
                threshold=initialization_trials,
                not_in_statuses=[TrialStatus.FAILED, TrialStatus.ABANDONED],
                use_all_trials_in_exp=True,
            )
        ],
        should_deduplicate=True,
        suggested_experiment_status=ExperimentStatus.INITIALIZATION,
    )

    generator_kwargs: dict[str, Any] = {
        "surrogate_spec": SurrogateSpec(model_configs=[model_config]),
        "transform_configs": get_derelativize_config(derelativize_with_raw_status_quo=True),
    }
    if torch_device is not None:
        generator_kwargs["torch_device"] = torch.device(torch_device)
    if acqf_class is not None:
        generator_kwargs["botorch_acqf_class"] = acqf_class
    generator_gen_kwargs: dict[str, Any] = {}
    if optimizer_kwargs:
        generator_gen_kwargs["model_gen_options"] = {"optimizer_kwargs": optimizer_kwargs}
    model = GenerationNode(
        name=TNPKR_NODE,
        generator_specs=[
            GeneratorSpec(
                generator_enum=Generators.BOTORCH_MODULAR,
                generator_kwargs=generator_kwargs,
                generator_gen_kwargs=generator_gen_kwargs,
            )
        ],
        should_deduplicate=True,
        suggested_experiment_status=ExperimentStatus.OPTIMIZATION,
    )
    return GenerationStrategy(name=f"{SOBOL_NODE}+{TNPKR_NODE}", nodes=[sobol, model])


def configure_tnpkr(client: Any, **options: Any) -> GenerationStrategy:
    """Check the client's search space against the checkpoint, then set the TNP-KR strategy.

    The counterpart of ``Client.configure_generation_strategy``: call it after
    ``configure_experiment``. A search space too large for the network raises
    ``DimensionError`` here, before any trial is generated.

    Args:
        client: An ``ax.api.Client`` with a configured experiment.
        options: Arguments of ``tnpkr_generation_strategy`` (not ``search_space``).

    Returns:
        The strategy now set on the client.
    """
    if "search_space" in options:
        raise TypeError("configure_tnpkr takes the search space from the client.")
    strategy = tnpkr_generation_strategy(search_space=client._experiment.search_space, **options)
    client.set_generation_strategy(strategy)
    return strategy


__all__ = [
    "SOBOL_NODE",
    "TNPKR_NODE",
    "configure_tnpkr",
    "resolve_acquisition",
    "tnpkr_generation_strategy",
    "tnpkr_model_config",
]
