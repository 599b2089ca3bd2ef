"""Invalid configs and inputs raise typed errors that name the problem and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from botorch_tnpkr.errors import (
    ConfigError,
    DimensionError,
    InputShapeError,
    NonFiniteInputError,
    TNPKRError,
)
from botorch_tnpkr.nn import TNPKRConfig
from tests.nn.helpers import make_model, make_task

POSITIVE_FIELDS = (
    "max_dim",
    "dim_model",
    "num_heads",
    "num_blocks",
    "dim_ffn",
    "num_basis",
    "scan_chunk",
    "dka_features",
    "performer_features",
)


# ------------------------------------------------------------------------- configs
def test_default_config_is_valid_and_round_trips():
    config = TNPKRConfig()
    assert TNPKRConfig.from_dict(config.to_dict()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dim_model = 8  # type: ignore[misc]


@pytest.mark.parametrize("attention", ["foo", "", "Softmax", None])
def test_unknown_attention(attention):
    with pytest.raises(ConfigError, match=r"attention must be one of .*'softmax'.*'scan'.*'dka'"):
        TNPKRConfig(attention=attention)


def test_dim_model_not_divisible_by_num_heads():
    with pytest.raises(ConfigError, match=r"dim_model \(30\).*num_heads \(4\)"):
        TNPKRConfig(dim_model=30, num_heads=4)


@pytest.mark.parametrize("field", POSITIVE_FIELDS)
@pytest.mark.parametrize("value", [-1, 0, True, 2.0, "4", None])
def test_integer_fields_must_be_positive_ints(field, value):
    with pytest.raises(ConfigError, match=rf"TNPKRConfig\.{field} must be a positive integer"):
        TNPKRConfig(**{field: value})


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", None])
def test_min_std_out_of_range(value):
    with pytest.raises(ConfigError, match=r"min_std must lie in \(0, 1\)"):
        TNPKRConfig(min_std=value)


@pytest.mark.parametrize("attention", ["dka", "performer"])
def test_ard_bias_needs_an_exact_backend(attention):
    with pytest.raises(ConfigError, match=r"ard_bias needs an exact backend.*'softmax'"):
        TNPKRConfig(attention=attention, ard_bias=True)
    with pytest.raises(ConfigError, match="ard_bias must be a bool"):
        TNPKRConfig(ard_bias=1)


@pytest.mark.parametrize("attention", ["dka", "performer"])
def test_fine_basis_needs_an_exact_backend(attention):
    with pytest.raises(ConfigError, match=r"fine_basis needs an exact backend.*'softmax'"):
        TNPKRConfig(attention=attention, fine_basis=2)
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ConfigError, match="fine_basis must be a non-negative integer"):
            TNPKRConfig(fine_basis=bad)


def test_from_dict_rejects_unknown_keys_by_name():
    data = {**TNPKRConfig().to_dict(), "dropout": 0.1, "heads": 2}
    with pytest.raises(ConfigError, match=r"\['dropout', 'heads'\].*allowed"):
        TNPKRConfig.from_dict(data)


def test_from_dict_rejects_non_dicts():
    with pytest.raises(ConfigError, match="from a dict, got list"):
        TNPKRConfig.from_dict([("dim_model", 16)])


def test_replace_validates():
    with pytest.raises(ConfigError, match="num_blocks"):
        TNPKRConfig().replace(num_blocks=-2)


def test_errors_are_value_errors():
    for error in (ConfigError, InputShapeError, DimensionError, NonFiniteInputError):
        assert issubclass(error, TNPKRError) and issubclass(error, ValueError)


# ------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def model():
    return make_model("softmax")


@pytest.fixture
def task():
    return make_task(b=2, nc=5, nt=3, d=2)


def test_wrong_ranks(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"xc must have shape B x n x d, got \(5, 2\)"):
        model(xc[0], yc, xt)
    with pytest.raises(InputShapeError, match=r"yc must have shape B x nC = \(2, 5\)"):
        model(xc, yc.unsqueeze(-1), xt)
    with pytest.raises(InputShapeError, match=r"xt must have shape B x n x d"):
        model(xc, yc, xt[0])
    with pytest.raises(
        InputShapeError, match=r"yc must have shape B x nC = \(2, 5\), got \(2, 4\)"
    ):
        model(xc, yc[:, :4], xt)


def test_dimension_zero(model, task):
    xc, yc, xt = task
    with pytest.raises(DimensionError, match="1 <= d <= max_dim"):
        model(xc[..., :0], yc, xt)


def test_mismatched_test_inputs(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"input dimension d=2, which xt must match"):
        model(xc, yc, torch.cat([xt, xt[..., :1]], dim=-1))
    with pytest.raises(InputShapeError, match="batch size 2"):
        model(xc, yc, xt[:1])


def test_dtype_mismatch(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"xc has dtype torch.float32.*\.to\(dtype\)"):
        model(xc.float(), yc, xt)
    with pytest.raises(InputShapeError, match="yc has dtype"):
        model(xc, yc.float(), xt)
    with pytest.raises(InputShapeError, match="xt has dtype"):
        model(xc, yc, xt.float())
    with pytest.raises(InputShapeError, match="yvar has dtype"):
        model(xc, yc, xt, yvar=torch.ones(2, 5))


def test_non_tensor_input(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"xc must be a torch\.Tensor, got list"):
        model(xc.tolist(), yc, xt)


def test_bad_mask(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"mask must be a bool tensor of shape \(2, 5\)"):
        model(xc, yc, xt, mask=torch.ones(2, 5))
    with pytest.raises(InputShapeError, match="mask must be a bool tensor"):
        model(xc, yc, xt, mask=torch.ones(2, 4, dtype=torch.bool))


def test_bad_yvar_shape(model, task):
    xc, yc, xt = task
    with pytest.raises(InputShapeError, match=r"yvar must have shape \(2, 5\)"):
        model(xc, yc, xt, yvar=torch.ones(2, 5, 1, dtype=xc.dtype))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs(model, task, value):
    xc, yc, xt = task
    bad_xc, bad_yc, bad_xt = xc.clone(), yc.clone(), xt.clone()
    bad_xc[1, 2, 0] = value
    bad_yc[0, 4] = value
    bad_xt[1, 0, 1] = value
    with pytest.raises(NonFiniteInputError, match="xc and yc must be finite"):
        model(bad_xc, yc, xt)
    with pytest.raises(NonFiniteInputError, match="xc and yc must be finite"):
        model(xc, bad_yc, xt)
    with pytest.raises(NonFiniteInputError, match="xt must be finite"):
        model(xc, yc, bad_xt)
    with pytest.raises(NonFiniteInputError, match="xt must be finite"):
        model.predict(model.encode(xc, yc), bad_xt)


@pytest.mark.parametrize("value", [-1e-3, float("nan"), float("inf")])
def test_bad_yvar_values(model, task, value):
    xc, yc, xt = task
    yvar = torch.full_like(yc, 0.1)
    yvar[1, 3] = value
    with pytest.raises(NonFiniteInputError, match=r"yvar must be finite and >= 0"):
        model(xc, yc, xt, yvar=yvar)
    # The same value at a masked point is ignored.
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3] = False
    assert torch.isfinite(model(xc, yc, xt, yvar=yvar, mask=mask).mean).all()
