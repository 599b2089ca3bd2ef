"""Real Ax loops (3 Sobol + a few TNP-KR trials, tiny network) through ``ax.api.Client``
and the legacy ``AxClient``.

Model quality is not tested: the network is untrained. With it Ax's deduplication may fall
back to Sobol inside the TNPKR node; the loops record such trials instead of failing on them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from ax.adapter.cross_validation import compute_diagnostics, cross_validate
from ax.analysis.plotly.cross_validation import CrossValidationPlot
from ax.api.client import Client
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
from ax.core.analysis_card import ErrorAnalysisCard
from ax.core.trial_status import TrialStatus
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.exceptions.errors import UnsupportedError

from botorch_tnpkr.ax import (
    SOBOL_NODE,
    TNPKR_NODE,
    configure_tnpkr,
    tnpkr_generation_strategy,
)
from botorch_tnpkr.errors import DimensionError
from botorch_tnpkr.model import TNPKRModel

MIXED = [
    RangeParameterConfig(name="x", parameter_type="float", bounds=(-1.0, 2.0)),
    RangeParameterConfig(name="lr", parameter_type="float", bounds=(1e-4, 1.0), scaling="log"),
    RangeParameterConfig(name="k", parameter_type="int", bounds=(1, 8)),
]


def loss(p: dict) -> float:
    return (p["x"] - 0.3) ** 2 + (math.log10(p["lr"]) + 2.0) ** 2 + 0.1 * p["k"]


def run_loop(client: Client, evaluate, rounds: int, max_trials: int = 2) -> None:
    for _ in range(rounds):
        for index, parameters in client.get_next_trials(max_trials=max_trials).items():
            client.complete_trial(index, raw_data=evaluate(parameters))


def nodes(client: Client) -> list[str]:
    return [t.generator_run._generation_node_name for t in client._experiment.trials.values()]


def sobol_fallbacks(client: Client) -> int:
    """Trials of the TNPKR node that Ax generated with Sobol (its deduplication fallback)."""
    return sum(
        t.generator_run._generation_node_name == TNPKR_NODE
        and t.generator_run._generator_key != "BoTorch"
        for t in client._experiment.trials.values()
    )


def statuses(client: Client) -> list[TrialStatus]:
    return [t.status for t in client._experiment.trials.values()]


@pytest.fixture(scope="module")
def single(fast_options) -> Client:
    """A finished single-objective loop: 3 Sobol + 5 TNP-KR trials, asking for 2 at a time.

    Ax hands out 2, 1 Sobol trials (the node stops at 3), then 1 TNP-KR trial (the call
    that transitions is still limited by the Sobol node), then 2 and 2.
    """
    client = Client(random_seed=0)
    client.configure_experiment(parameters=MIXED, name="single")
    client.configure_optimization(objective="-loss")
    configure_tnpkr(client, **fast_options)
    run_loop(client, lambda p: {"loss": loss(p)}, rounds=5)
    return client


def test_loop_uses_sobol_then_tnpkr_with_batches(single):
    trial_nodes = nodes(single)
    assert trial_nodes[:3] == [SOBOL_NODE] * 3
    assert trial_nodes[3:] == [TNPKR_NODE] * (len(trial_nodes) - 3)
    assert len(trial_nodes) == 8
    assert set(statuses(single)) == {TrialStatus.COMPLETED}
    surrogate = single._generation_strategy.adapter.generator.surrogate
    assert isinstance(surrogate.model, TNPKRModel)
    assert surrogate.model.train_X.shape == (6, 3)  # trained before the last batch
    acqf = single._generation_strategy.adapter.generator._acquisition.acqf
    assert type(acqf).__name__ == "qLogNoisyExpectedImprovement"
    for trial in single._experiment.trials.values():
        parameters = trial.arm.parameters
        assert -1.0 <= parameters["x"] <= 2.0 and 1e-4 <= parameters["lr"] <= 1.0
        assert isinstance(parameters["k"], int) and 1 <= parameters["k"] <= 8
    # Untrained network: Ax may fall back to Sobol when its candidates repeat (not asserted).
    assert sobol_fallbacks(single) <= 4


def test_best_parameterization_and_predict(single):
    parameters, values, index, _ = single.get_best_parameterization(use_model_predictions=False)
    observed = [loss(t.arm.parameters) for t in single._experiment.trials.values()]
    assert values["loss"][0] == pytest.approx(min(observed))
    assert single._experiment.trials[index].arm.parameters == parameters
    parameters, values, _, _ = single.get_best_parameterization()  # model-based (or fallback)
    assert math.isfinite(values["loss"][0])
    (prediction,) = single.predict([{"x": 0.3, "lr": 0.01, "k": 2}])
    mean, sem = prediction["loss"]
    assert math.isfinite(mean) and sem > 0


def test_cross_validation_and_diagnostics(single):
    adapter = single._generation_strategy.adapter
    results = cross_validate(adapter)  # leave-one-out: a TNPKRModel per fold
    assert len(results) == adapter.generator.surrogate.model.train_X.shape[-2]
    for result in results:
        assert np.isfinite(result.predicted.means).all()
        assert (np.diag(result.predicted.covariance) > 0).all()
    diagnostics = compute_diagnostics(results)
    assert set(diagnostics["Rank correlation"]) == {"loss"}
    cards = single.compute_analyses(analyses=[CrossValidationPlot()], display=False)
    leaves = [leaf for card in cards for leaf in card.flatten()]
    assert leaves and not any(isinstance(leaf, ErrorAnalysisCard) for leaf in leaves)


def test_default_analyses_run(single):
    cards = single.compute_analyses(display=False)
    leaves = [leaf for card in cards for leaf in card.flatten()]
    errors = [leaf.title for leaf in leaves if isinstance(leaf, ErrorAnalysisCard)]
    assert leaves and not errors


def test_json_round_trip_continues_with_the_same_strategy(single, tmp_path):
    path = tmp_path / "snapshot.json"
    single.save_to_json_file(str(path))
    loaded = Client.load_from_json_file(str(path))
    strategy = loaded._generation_strategy
    assert strategy.name == "Sobol+TNPKR"
    assert strategy.current_node_name == TNPKR_NODE
    spec = strategy._curr.generator_specs[0]
    config = spec.generator_kwargs["surrogate_spec"].model_configs[0]
    assert config.botorch_model_class is TNPKRModel
    assert spec.generator_gen_kwargs["model_gen_options"]["optimizer_kwargs"]["num_restarts"] == 2
    before = len(loaded._experiment.trials)
    run_loop(loaded, lambda p: {"loss": loss(p)}, rounds=1)
    assert len(loaded._experiment.trials) == before + 2
    assert nodes(loaded)[-2:] == [TNPKR_NODE] * 2
    assert isinstance(strategy.adapter.generator.surrogate.model, TNPKRModel)


def test_multi_objective_with_outcome_constraint_and_choice(fast_options):
    client = Client(random_seed=1)
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name="x1", parameter_type="float", bounds=(0.0, 1.0)),
            RangeParameterConfig(name="x2", parameter_type="float", bounds=(0.0, 1.0)),
            ChoiceParameterConfig(
                name="c", parameter_type="str", values=["a", "b", "c"], is_ordered=False
            ),
        ],
        name="moo",
    )
    # Explicit objective thresholds (constraints on the objectives): without them Ax infers
    # thresholds from the model's predicted frontier, and a tiny untrained network's
    # predictions can put every observed point behind them (an empty frontier).
    client.configure_optimization(
        objective="f1, -f2", outcome_constraints=["g <= 0.8", "f1 >= 0.0", "f2 <= 2.0"]
    )
    configure_tnpkr(client, **fast_options)
    shift = {"a": 0.0, "b": 0.3, "c": 0.6}

    def evaluate(p):
        s = shift[p["c"]]
        return {"f1": p["x1"] + s, "f2": (p["x2"] - 0.5) ** 2 + s, "g": p["x1"] * p["x2"]}

    run_loop(client, evaluate, rounds=4)
    assert nodes(client).count(TNPKR_NODE) == 3
    generator = client._generation_strategy.adapter.generator
    assert isinstance(generator._acquisition.acqf, qLogNoisyExpectedHypervolumeImprovement)
    models = generator.surrogate.model.models  # one TNPKRModel per metric
    assert [type(m) for m in models] == [TNPKRModel] * 3
    assert models[0].train_X.shape[-1] == 2 + 3  # one-hot "c"
    assert {t.arm.parameters["c"] for t in client._experiment.trials.values()} <= set(shift)
    front = client.get_pareto_frontier(use_model_predictions=False)
    assert front and all({"f1", "f2"} <= set(values) for _, values, _, _ in front)
    # the observed frontier is exactly the feasible points no other feasible point dominates
    observed = {
        name: (v["f1"], v["f2"])
        for name, v in (
            (t.arm.name, evaluate(t.arm.parameters)) for t in client._experiment.trials.values()
        )
        if v["g"] <= 0.8
    }
    dominated = {
        a
        for a, (f1, f2) in observed.items()
        for b, (g1, g2) in observed.items()
        if b != a and g1 >= f1 and g2 <= f2 and (g1, g2) != (f1, f2)
    }
    assert {arm for _, _, _, arm in front} == set(observed) - dominated


def test_too_many_encoded_dimensions_fail_before_any_trial(fast_options):
    client = Client()
    client.configure_experiment(
        parameters=[
            *(
                RangeParameterConfig(name=f"x{i}", parameter_type="float", bounds=(0.0, 1.0))
                for i in range(4)
            ),
            ChoiceParameterConfig(
                name="c", parameter_type="str", values=["a", "b", "c", "d"], is_ordered=False
            ),
        ]
    )
    client.configure_optimization(objective="y")
    with pytest.raises(DimensionError, match=r"d=8 .*max_dim=6"):
        configure_tnpkr(client, **fast_options)
    with pytest.raises(DimensionError, match="max_dim=6"):
        tnpkr_generation_strategy(**fast_options, search_space=client._experiment.search_space)
    assert not client._experiment.trials
    # Without the early check, the model refuses the inputs when it is first built.
    client.set_generation_strategy(tnpkr_generation_strategy(**fast_options))
    run_loop(client, lambda p: {"y": p["x0"]}, rounds=2)
    with pytest.raises(UnsupportedError, match="max_dim=6"):
        client.get_next_trials(max_trials=1)


def test_legacy_axclient_loop_and_json_round_trip(fast_options, tmp_path):
    from ax.service.ax_client import AxClient, ObjectiveProperties

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = AxClient(
            generation_strategy=tnpkr_generation_strategy(**fast_options),
            verbose_logging=False,
        )
    client.create_experiment(
        name="legacy",
        parameters=[
            {"name": "x", "type": "range", "bounds": [0.0, 1.0]},
            {"name": "k", "type": "range", "bounds": [1, 5], "value_type": "int"},
        ],
        objectives={"y": ObjectiveProperties(minimize=True)},
    )
    for _ in range(3):
        trials, _ = client.get_next_trials(max_trials=2)
        for index, p in trials.items():
            client.complete_trial(index, raw_data={"y": (p["x"] - 0.3) ** 2 + 0.1 * p["k"]})
    assert client.generation_strategy.current_node_name == TNPKR_NODE
    path = tmp_path / "legacy.json"
    client.save_to_json_file(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = AxClient.load_from_json_file(str(path), verbose_logging=False)
    parameters, index = loaded.get_next_trial()
    loaded.complete_trial(index, raw_data={"y": parameters["x"]})
    run = loaded.experiment.trials[index].generator_run
    assert run._generation_node_name == TNPKR_NODE
    best, _ = loaded.get_best_parameters(use_model_predictions=False)
    assert set(best) == {"x", "k"}
