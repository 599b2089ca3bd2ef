"""The strategy and model config: structure, storability, validation and registration."""

from __future__ import annotations

import json

import pytest
import torch
from ax.adapter.registry import Generators
from ax.api.client import Client
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
from ax.generators.torch.botorch_modular.utils import fit_botorch_model
from ax.storage.botorch_modular_registry import CLASS_TO_REVERSE_REGISTRY
from ax.storage.json_store.decoder import object_from_json
from ax.storage.json_store.encoder import object_to_json
from botorch.acquisition import LogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.models.model import Model

import botorch_tnpkr.ax.dimension as dimension
from botorch_tnpkr.ax import (
    SOBOL_NODE,
    TNPKR_NODE,
    check_search_space,
    checkpoint_max_dim,
    encoded_dimension,
    register_with_ax,
    tnpkr_generation_strategy,
    tnpkr_model_config,
)
from botorch_tnpkr.ax.dimension import is_fully_discrete
from botorch_tnpkr.errors import CheckpointError, DimensionError
from botorch_tnpkr.model import TNPKRModel
from tests.model.helpers import make_data, tiny_network


def _spec(strategy, node_name):
    node = next(n for n in strategy._nodes if n.name == node_name)
    return node.generator_specs[0]


def test_strategy_is_sobol_then_tnpkr_with_the_options(fast_options, tiny_checkpoint):
    strategy = tnpkr_generation_strategy(**fast_options)
    assert strategy.name == "Sobol+TNPKR"
    assert [n.name for n in strategy._nodes] == [SOBOL_NODE, TNPKR_NODE]
    sobol = _spec(strategy, SOBOL_NODE)
    assert sobol.generator_enum == Generators.SOBOL
    assert sobol.generator_kwargs["seed"] == 0
    spec = _spec(strategy, TNPKR_NODE)
    assert spec.generator_enum == Generators.BOTORCH_MODULAR
    (config,) = spec.generator_kwargs["surrogate_spec"].model_configs
    assert config.botorch_model_class is TNPKRModel
    assert config.model_options["checkpoint"] == str(tiny_checkpoint.resolve())
    assert "botorch_acqf_class" not in spec.generator_kwargs  # Ax's choice: qLogNEI / qLogNEHVI
    optimizer = spec.generator_gen_kwargs["model_gen_options"]["optimizer_kwargs"]
    assert optimizer == {"num_restarts": 2, "raw_samples": 16, "options": {"maxiter": 5}}


def test_strategy_round_trips_through_json(fast_options):
    strategy = tnpkr_generation_strategy(**fast_options, acquisition=qLogNoisyExpectedImprovement)
    encoded = json.loads(json.dumps(object_to_json(strategy)))
    decoded = object_from_json(encoded)
    spec = _spec(decoded, TNPKR_NODE)
    assert spec.generator_kwargs["surrogate_spec"].model_configs[0].botorch_model_class is (
        TNPKRModel
    )
    assert spec.generator_kwargs["botorch_acqf_class"] is qLogNoisyExpectedImprovement
    assert spec.generator_gen_kwargs == _spec(strategy, TNPKR_NODE).generator_gen_kwargs


def test_model_config_keeps_names_and_absolute_paths(tiny_checkpoint, monkeypatch):
    monkeypatch.chdir(tiny_checkpoint.parent)
    config = tnpkr_model_config(tiny_checkpoint.name, linear_above=None, scan_above=64)
    assert config.model_options == {
        "checkpoint": str(tiny_checkpoint.resolve()),
        "linear_above": None,
        "scan_above": 64,
    }
    assert config.name == "TNPKR"


def test_acquisition_by_name_and_analytic_warning(fast_options):
    strategy = tnpkr_generation_strategy(**fast_options, acquisition="qLogNoisyExpectedImprovement")
    kwargs = _spec(strategy, TNPKR_NODE).generator_kwargs
    assert kwargs["botorch_acqf_class"] is qLogNoisyExpectedImprovement
    with pytest.warns(UserWarning, match="pending"):
        tnpkr_generation_strategy(**fast_options, acquisition=LogExpectedImprovement)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"initialization_trials": 0}, ValueError, "initialization_trials"),
        ({"acquisition": "qNoSuchAcquisition"}, ValueError, "Unknown acquisition"),
        ({"acquisition": 3}, TypeError, "acquisition"),
        ({"num_restarts": 0}, ValueError, "num_restarts"),
        ({"optimizer_options": {"batch_initial_conditions": 1}}, ValueError, "Ax builds"),
        ({"checkpoint": "/no/such/network.safetensors"}, CheckpointError, "No checkpoint"),
        ({"checkpoint": tiny_network()}, TypeError, "save_network"),
        ({"linear_above": -1}, TypeError, "linear_above"),
    ],
)
def test_invalid_options_raise_naming_them(fast_options, change, error, match):
    with pytest.raises(error, match=match):
        tnpkr_generation_strategy(**{**fast_options, **change})


def test_auto_without_registered_checkpoints_fails_early(monkeypatch):
    monkeypatch.setattr(dimension, "available_checkpoints", lambda: [])
    with pytest.raises(CheckpointError, match="not registered"):
        checkpoint_max_dim("auto")


def _search_space(parameters):
    client = Client()
    client.configure_experiment(parameters=parameters)
    return client._experiment.search_space


def test_encoded_dimension_counts_one_hot_columns(tiny_checkpoint):
    space = _search_space(
        [
            RangeParameterConfig(name="x", parameter_type="float", bounds=(0.0, 1.0)),
            RangeParameterConfig(
                name="lr", parameter_type="float", bounds=(1e-4, 1.0), scaling="log"
            ),
            RangeParameterConfig(name="n", parameter_type="int", bounds=(1, 8)),
            ChoiceParameterConfig(
                name="c", parameter_type="str", values=["a", "b", "c"], is_ordered=False
            ),
            ChoiceParameterConfig(
                name="o", parameter_type="int", values=[1, 2, 4], is_ordered=True
            ),
        ]
    )
    assert encoded_dimension(space) == 3 + 3 + 1
    with pytest.raises(DimensionError, match=r"d=7 .*'c': 3.*max_dim=6"):
        check_search_space(space, tiny_checkpoint)


def test_registration_is_idempotent_and_fit_is_a_no_op(tiny_checkpoint):
    register_with_ax()
    register_with_ax()
    assert CLASS_TO_REVERSE_REGISTRY[Model]["TNPKRModel"] is TNPKRModel
    X, Y = make_data(n=6, d=2)
    model = TNPKRModel(X, Y, checkpoint=tiny_checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_botorch_model(model, mll_class=None, mll_options={})
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_optimizer_options_are_dropped_for_fully_discrete_spaces(fast_options):
    discrete = _search_space(
        [
            RangeParameterConfig(name="n", parameter_type="int", bounds=(1, 8)),
            ChoiceParameterConfig(name="c", parameter_type="str", values=["a", "b"]),
            ChoiceParameterConfig(
                name="o", parameter_type="int", values=[1, 2, 4], is_ordered=True
            ),
        ]
    )
    assert is_fully_discrete(discrete)
    with pytest.warns(UserWarning, match="fully discrete"):
        strategy = tnpkr_generation_strategy(**fast_options, search_space=discrete)
    optimizer = _spec(strategy, TNPKR_NODE).generator_gen_kwargs["model_gen_options"]
    assert optimizer["optimizer_kwargs"] == {"num_restarts": 2, "raw_samples": 16}
    mixed = _search_space(
        [
            RangeParameterConfig(name="n", parameter_type="int", bounds=(1, 8)),
            ChoiceParameterConfig(
                name="c", parameter_type="str", values=["a", "b", "c"], is_ordered=False
            ),
        ]
    )
    assert not is_fully_discrete(mixed)  # one-hot columns are continuous to Ax
    strategy = tnpkr_generation_strategy(**fast_options, search_space=mixed)
    optimizer = _spec(strategy, TNPKR_NODE).generator_gen_kwargs["model_gen_options"]
    assert optimizer["optimizer_kwargs"]["options"] == {"maxiter": 5}
