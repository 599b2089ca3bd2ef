"""Saving and loading networks: exact round trips, and typed errors for every bad file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from botorch_tnpkr.errors import CheckpointError
from botorch_tnpkr.nn import (
    ATTENTION_BACKENDS,
    TNPKRConfig,
    load_network,
    read_metadata,
    save_network,
)
from botorch_tnpkr.nn.io import FORMAT_NAME, FORMAT_VERSION
from tests.nn.helpers import SMALL, assert_same_prediction, make_model, make_task


def _metadata(network_config: TNPKRConfig, **changes: str) -> dict[str, str]:
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(network_config.to_dict()),
        "extra": "{}",
    }
    meta.update(changes)
    return meta


def _tensors(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture
def saved(tmp_path):
    model = make_model("softmax", torch.float32)
    path = tmp_path / "net.safetensors"
    save_network(model, path)
    return model, path


@pytest.mark.parametrize("attention", [*ATTENTION_BACKENDS, "softmax+near"])
def test_round_trip_gives_identical_outputs(tmp_path, attention):
    attention, near = attention.removesuffix("+near"), attention.endswith("+near")
    model = make_model(attention, torch.float32, near_path=near)
    path = tmp_path / f"{attention}.safetensors"
    save_network(model, path, extra={"step": 12})
    loaded = load_network(path)
    assert not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    xc, yc, xt = make_task(nc=9, nt=4, dtype=torch.float32)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 3] = False
    assert_same_prediction(
        loaded(xc, yc, xt, mask=mask), model(xc, yc, xt, mask=mask), rtol=0, atol=0
    )
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_metadata_round_trip(tmp_path):
    model = make_model("dka", torch.float32, max_dim=3, min_std=0.01)
    extra = {"step": 1000, "prior": "gp-rbf", "nested": {"loss": [0.5, -0.25]}}
    path = tmp_path / "net.safetensors"
    save_network(model, path, extra=extra)
    meta = read_metadata(path)
    assert meta["config"] == model.config
    assert meta["config"].max_dim == 3 and meta["config"].min_std == 0.01
    assert meta["extra"] == extra
    save_network(model, path)  # overwriting works and extra defaults to empty
    assert read_metadata(path)["extra"] == {}


def test_saved_float64_network_loads_as_float32(tmp_path):
    model = make_model("performer", torch.float64)
    path = tmp_path / "net.safetensors"
    save_network(model, path)
    loaded = load_network(path)
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[key], value.float(), rtol=0, atol=0)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="No network file"):
        load_network(tmp_path / "nothing.safetensors")


def test_unknown_format_version(tmp_path):
    model = make_model("softmax", torch.float32)
    path = tmp_path / "future.safetensors"
    save_file(_tensors(model), str(path), metadata=_metadata(model.config, format_version="99"))
    with pytest.raises(CheckpointError, match=r"version '99'.*\[1\]"):
        load_network(path)
    with pytest.raises(CheckpointError, match="version"):
        read_metadata(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match=f"not a {FORMAT_NAME} network file"):
        load_network(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.01])
def test_truncated_file(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError):
        load_network(path)


def test_random_bytes_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    gen = torch.Generator().manual_seed(0)
    path.write_bytes(
        bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist())
    )
    with pytest.raises(CheckpointError):
        load_network(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_network(path)


def test_tensors_that_do_not_match_the_config(tmp_path):
    model = make_model("softmax", torch.float32)
    path = tmp_path / "mismatch.safetensors"
    wider = model.config.replace(dim_model=32)
    save_file(_tensors(model), str(path), metadata=_metadata(wider))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_network(path)
    deeper = model.config.replace(num_blocks=3)
    save_file(_tensors(model), str(path), metadata=_metadata(deeper))
    with pytest.raises(CheckpointError, match="missing"):
        load_network(path)
    tensors = _tensors(model)
    tensors["surplus"] = torch.zeros(2)
    save_file(tensors, str(path), metadata=_metadata(model.config))
    with pytest.raises(CheckpointError, match="surplus"):
        load_network(path)


def test_other_backend_weights_do_not_load(tmp_path):
    path = tmp_path / "swap.safetensors"
    dka = make_model("dka", torch.float32)
    save_file(_tensors(dka), str(path), metadata=_metadata(dka.config.replace(attention="softmax")))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_network(path)


def test_non_finite_weights(tmp_path):
    model = make_model("softmax", torch.float32)
    tensors = _tensors(model)
    tensors["head.0.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=_metadata(model.config))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_network(path)


@pytest.mark.parametrize(
    "config",
    [
        "not json",
        json.dumps({**SMALL, "attention": "softmax", "colour": "red"}),
        json.dumps({**SMALL, "attention": "flash"}),
        json.dumps([1, 2]),
    ],
)
def test_invalid_config_in_file(tmp_path, config):
    model = make_model("softmax", torch.float32)
    path = tmp_path / "bad_config.safetensors"
    save_file(_tensors(model), str(path), metadata=_metadata(model.config, config=config))
    with pytest.raises(CheckpointError, match="invalid config"):
        load_network(path)
