"""Typed errors, warnings, checkpoint selection and construct_inputs of TNPKRModel."""

from __future__ import annotations

import pytest
import torch
from botorch.exceptions.errors import (
    BotorchTensorDimensionError,
    InputDataError,
    UnsupportedError,
)
from botorch.exceptions.warnings import InputDataWarning
from botorch.utils.datasets import SupervisedDataset

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.checkpoints import DEFAULT_CHECKPOINT, LINEAR_CHECKPOINT
from botorch_tnpkr.errors import CheckpointError
from botorch_tnpkr.model import auto_checkpoint_name
from tests.model.helpers import TINY, make_data


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["train_X", "train_Y", "train_Yvar", "X"])
def test_non_finite_values_raise_input_data_error(exact_path, bad, where):
    train_X, train_Y = make_data(n=6, d=2)
    data = {"train_X": train_X, "train_Y": train_Y, "train_Yvar": torch.full_like(train_Y, 0.1)}
    X = torch.rand(3, 2, dtype=torch.float64)
    if where == "X":
        X[1, 0] = bad
        model = TNPKRModel(**data, checkpoint=exact_path)
        with pytest.raises(InputDataError, match="X contains"):
            model.posterior(X)
    else:
        data[where] = data[where].clone()
        data[where][2, 0] = bad
        with pytest.raises(InputDataError, match=where):
            TNPKRModel(**data, checkpoint=exact_path)


def test_negative_variances_raise(exact_path):
    train_X, train_Y = make_data(n=6, d=2)
    with pytest.raises(InputDataError, match="negative"):
        TNPKRModel(train_X, train_Y, -torch.ones_like(train_Y), checkpoint=exact_path)


def test_dimension_above_max_dim_is_unsupported(exact_path):
    d = TINY["max_dim"] + 1
    train_X, train_Y = make_data(n=6, d=d)
    with pytest.raises(UnsupportedError, match=f"max_dim={TINY['max_dim']}"):
        TNPKRModel(train_X, train_Y, checkpoint=exact_path)


@pytest.mark.parametrize(
    "shape, error",
    [((3, 3), BotorchTensorDimensionError), ((3,), BotorchTensorDimensionError)],
)
def test_wrong_test_inputs_raise_typed_errors(exact_path, shape, error):
    model = TNPKRModel(*make_data(n=6, d=2), checkpoint=exact_path)
    with pytest.raises(error, match="X"):
        model.posterior(torch.rand(*shape, dtype=torch.float64))
    with pytest.raises(InputDataError, match="dtype"):
        model.posterior(torch.rand(3, 2, dtype=torch.float32))
    with pytest.raises(BotorchTensorDimensionError, match="batch shape"):
        TNPKRModel(*make_data(n=6, d=2, batch=(2,)), checkpoint=exact_path).posterior(
            torch.rand(3, 4, 2, dtype=torch.float64)
        )
    with pytest.raises(BotorchTensorDimensionError, match="output_indices"):
        model.posterior(torch.rand(3, 2, dtype=torch.float64), output_indices=[1])
    with pytest.raises(BotorchTensorDimensionError, match="observation_noise"):
        model.posterior(
            torch.rand(3, 2, dtype=torch.float64),
            observation_noise=torch.ones(4, dtype=torch.float64),
        )


def test_wrong_training_shapes_raise(exact_path):
    train_X, train_Y = make_data(n=6, d=2)
    with pytest.raises(BotorchTensorDimensionError, match="explicit output dimension"):
        TNPKRModel(train_X, train_Y.squeeze(-1), checkpoint=exact_path)
    with pytest.raises(BotorchTensorDimensionError, match="share"):
        TNPKRModel(train_X, train_Y[:-1], checkpoint=exact_path)
    with pytest.raises(BotorchTensorDimensionError, match="train_Yvar"):
        TNPKRModel(train_X, train_Y, train_Yvar=train_Y[:, :0], checkpoint=exact_path)
    with pytest.raises(InputDataError, match="dtype"):
        TNPKRModel(train_X, train_Y.float(), checkpoint=exact_path)
    model = TNPKRModel(train_X, train_Y, checkpoint=exact_path)
    with pytest.raises(BotorchTensorDimensionError, match="Y must have shape"):
        model.condition_on_observations(train_X[:2], train_Y[:3])


def test_inputs_outside_the_unit_cube_warn_like_botorch(exact_path):
    train_X, train_Y = make_data(n=6, d=2)
    with pytest.warns(InputDataWarning, match="unit cube"):
        TNPKRModel(5.0 * train_X, train_Y, checkpoint=exact_path)


def test_auto_checkpoint_needs_registered_checkpoints(monkeypatch):
    import botorch_tnpkr.model.network as network_module

    monkeypatch.setattr(network_module, "available_checkpoints", lambda: [])
    with pytest.raises(CheckpointError, match=r"checkpoint='auto'.*tnpkr-exact.*path"):
        TNPKRModel(*make_data(n=6, d=2))
    assert auto_checkpoint_name(4096, 4096) == DEFAULT_CHECKPOINT
    assert auto_checkpoint_name(4097, 4096) == LINEAR_CHECKPOINT
    assert auto_checkpoint_name(10**6, None) == DEFAULT_CHECKPOINT


def test_auto_checkpoint_switches_to_linear_attention(monkeypatch, exact_path, dka_path):
    import botorch_tnpkr.model.network as network_module
    from botorch_tnpkr.nn import load_network

    files = {DEFAULT_CHECKPOINT: exact_path, LINEAR_CHECKPOINT: dka_path}
    monkeypatch.setattr(network_module, "available_checkpoints", lambda: sorted(files))
    monkeypatch.setattr(network_module, "load_checkpoint", lambda name: load_network(files[name]))
    train_X, train_Y = make_data(n=30, d=2)
    assert TNPKRModel(train_X, train_Y).network.config.attention == "softmax"
    model = TNPKRModel(train_X, train_Y, linear_above=20)
    assert model.network.config.attention == "dka" and model.checkpoint_source == LINEAR_CHECKPOINT


def test_unknown_checkpoint_and_bad_types(tmp_path):
    train_X, train_Y = make_data(n=6, d=2)
    with pytest.raises(CheckpointError):
        TNPKRModel(train_X, train_Y, checkpoint=tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="checkpoint"):
        TNPKRModel(train_X, train_Y, checkpoint=3)


def test_construct_inputs_passes_yvar_and_options(exact_path):
    train_X, train_Y = make_data(n=6, d=2)
    Yvar = torch.full_like(train_Y, 0.1)
    dataset = SupervisedDataset(
        train_X, train_Y, Yvar=Yvar, feature_names=["a", "b"], outcome_names=["y"]
    )
    inputs = TNPKRModel.construct_inputs(dataset, checkpoint=exact_path, categorical_features=[])
    assert set(inputs) == {"train_X", "train_Y", "train_Yvar", "checkpoint"}
    assert torch.equal(inputs["train_Yvar"], Yvar)
    model = TNPKRModel(**inputs)
    assert torch.equal(model.train_Yvar, Yvar)
    with pytest.raises(UnsupportedError, match="fidelity"):
        TNPKRModel.construct_inputs(dataset, fidelity_features=[1])
    with pytest.raises(UnsupportedError, match="Unknown TNPKRModel options"):
        TNPKRModel.construct_inputs(dataset, lengthscale=3)
