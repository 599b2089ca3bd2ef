"""Log-n attention scaling beyond the trained context (``TNPKRConfig.trained_context``)."""

from __future__ import annotations

import math

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKRConfig
from botorch_tnpkr.nn.attention.exact import ExactAttention, logit_scale
from botorch_tnpkr.nn.bias import scaled_distance
from botorch_tnpkr.nn.grow import grow_network, growth_description
from tests.nn.helpers import SMALL, assert_same_prediction, make_model, make_task


@pytest.mark.parametrize("attention", ["softmax", "scan"])
def test_contexts_up_to_the_trained_size_are_bit_for_bit_unchanged(attention: str) -> None:
    plain = make_model(attention)
    scaled = plain.with_trained_context(10)
    xc, yc, xt = make_task(nc=10, nt=5)
    with torch.no_grad():
        a, b = plain(xc, yc, xt), scaled(xc, yc, xt)
    for name in ("mean", "fvar", "noise_var"):
        assert torch.equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("attention", ["softmax", "scan"])
def test_larger_contexts_change_and_backends_agree(attention: str) -> None:
    plain = make_model(attention)
    xc, yc, xt = make_task(nc=20, nt=5)
    with torch.no_grad():
        a = plain(xc, yc, xt)
        b = plain.with_trained_context(10)(xc, yc, xt)
        other = "scan" if attention == "softmax" else "softmax"
        c = make_model(other).with_trained_context(10)(xc, yc, xt)
    assert not torch.allclose(a.mean, b.mean)
    assert_same_prediction(b, c, rtol=1e-10, atol=1e-10)


def test_read_multiplies_all_logits_by_log_n_over_log_trained() -> None:
    """One attention read against a hand-written softmax with the documented factor."""
    torch.manual_seed(0)
    trained, n, nq, dim, heads = 4, 9, 3, 8, 2
    attn = ExactAttention(dim, heads, 3, "softmax", 1024, trained_context=trained).double()
    keys = torch.randn(2, n, dim, dtype=torch.float64)
    queries = torch.randn(2, nq, dim, dtype=torch.float64)
    xk, xq = torch.rand(2, n, 3, dtype=torch.float64), torch.rand(2, nq, 3, dtype=torch.float64)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, 6:] = False  # task 1 has 6 valid keys: its own factor
    with torch.no_grad():
        got = attn.read(queries, xq, attn.memory(keys, xk, mask))
        q = attn.q_proj(queries).view(2, nq, heads, -1).transpose(1, 2)
        k, v = (t.view(2, n, heads, -1).transpose(1, 2) for t in attn.kv_proj(keys).chunk(2, -1))
        logits = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)
        logits = logits + attn.bias(scaled_distance(xq, xk, 1.0))
        factor = torch.tensor([math.log(9), math.log(6)], dtype=torch.float64) / math.log(4)
        logits = logits * factor.view(2, 1, 1, 1)
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, nq, dim)
        want = attn.out_proj(out)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_logit_scale_values() -> None:
    counts = torch.tensor([0, 1, 4, 512, 513, 2048])
    assert logit_scale(counts, None, torch.float64) is None
    got = logit_scale(counts, 512, torch.float64)
    want = [1.0, 1.0, 1.0, 1.0, math.log(513) / math.log(512), 11.0 / 9.0]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    # No read beyond the trained size: no factors at all (the logits are left untouched).
    assert logit_scale(counts[:4], 512, torch.float64) is None


def test_padding_does_not_count_as_keys() -> None:
    model = make_model("softmax", trained_context=8)
    xc, yc, xt = make_task(b=1, nc=12, nt=4)
    pad_x = torch.cat([xc, torch.rand(1, 30, 2, dtype=xc.dtype)], 1)
    pad_y = torch.cat([yc, torch.zeros(1, 30, dtype=yc.dtype)], 1)
    mask = torch.cat([torch.ones(1, 12), torch.zeros(1, 30)], 1).bool()
    with torch.no_grad():
        want = model(xc, yc, xt)
        got = model.predict(model.encode(pad_x, pad_y, mask=mask), xt)
    assert_same_prediction(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad", [0, 1, -5, 2.5, True, "512"])
def test_bad_trained_context_is_refused(bad) -> None:
    with pytest.raises(ConfigError, match="trained_context must be an integer >= 2 or None"):
        TNPKRConfig(**SMALL, trained_context=bad)


def test_with_trained_context_copies_weights_and_mode() -> None:
    model = make_model("softmax", trained_context=8)
    off = model.with_trained_context(None)
    assert off.config.trained_context is None and not off.training
    assert next(off.parameters()).dtype == torch.float64
    for key, value in model.state_dict().items():
        assert torch.equal(off.state_dict()[key], value)
    assert model.config.trained_context == 8  # the original is unchanged
    with pytest.raises(ConfigError, match="trained_context"):
        model.with_trained_context(1)


def test_old_configs_load_without_it_and_growth_ignores_it() -> None:
    data = TNPKRConfig(**SMALL).to_dict()
    del data["trained_context"]  # a checkpoint written before the setting existed
    assert TNPKRConfig.from_dict(data).trained_context is None
    source = make_model("softmax", trained_context=16)
    target = source.config.replace(num_blocks=3, trained_context=64)
    assert growth_description(source.config, target) == "num_blocks 2 -> 3"
    assert grow_network(source, target).config.trained_context == 64
