"""``nn.near``: the readout's nearest-neighbour path (``TNPKRConfig.near_path``)."""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.errors import ConfigError
from botorch_tnpkr.nn import TNPKRConfig
from botorch_tnpkr.nn.causal import predict_paths
from botorch_tnpkr.nn.grow import grow_network, growth_description
from botorch_tnpkr.nn.near import nearest
from tests.nn.helpers import SMALL, assert_same_prediction, make_model, make_task


def test_nearest_matches_brute_force_with_masks_and_tiles() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.rand(3, 11, 4, generator=gen, dtype=torch.float64)
    k = torch.rand(3, 13, 4, generator=gen, dtype=torch.float64)
    mask = torch.rand(3, 13, generator=gen) > 0.4
    mask[2] = False  # a task without any valid key
    got = nearest(q, k, mask, chunk=4)  # tiles smaller than both sides
    sq = torch.cdist(q, k).square().masked_fill(~mask.unsqueeze(1), float("inf"))
    want = sq.argmin(-1)
    assert torch.equal(got[:2], want[:2])
    assert torch.equal(got[2], torch.zeros_like(got[2]))
    assert bool(mask[:2].gather(1, got[:2]).all())  # never a padded key


def test_growth_adds_a_path_that_changes_nothing_until_trained() -> None:
    source = make_model("softmax", ard_bias=True, fine_basis=2)
    config = source.config.replace(near_path=True)
    assert growth_description(source.config, config) == "near_path False -> True"
    grown = grow_network(source, config).eval()
    xc, yc, xt = make_task(nc=12, nt=7, d=3)
    xt = torch.cat([xc[:, :3], xt], dim=1)  # some targets at the data
    with torch.no_grad():
        assert_same_prediction(grown(xc, yc, xt), source(xc, yc, xt), rtol=1e-10, atol=1e-12)
    grown.train()
    pred = grown(xc, yc, xt)
    ((pred.mean - torch.cos(xt.sum(-1))) ** 2 / pred.yvar + pred.yvar.log()).mean().backward()
    for layer in (grown.near_path.proj, grown.near_path.gate[-1]):  # no dead weights
        assert layer.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shrink near_path"):
        growth_description(config, source.config)
    with pytest.raises(ConfigError, match="cannot grow its width"):
        growth_description(config, config.replace(dim_model=32))


def test_an_open_gate_interpolates_the_data() -> None:
    """With the gate saturated, a test point at a context point takes that point's value and
    its latent variance falls to the head's floor; the gate changes nothing else."""
    model = make_model("softmax", near_path=True)
    xc, yc, xt = make_task(nc=15, nt=4, d=2)
    x_all = torch.cat([xc, xt], dim=1)
    with torch.no_grad():
        closed = model(xc, yc, x_all)
        model.near_path.gate[-1].weight.zero_()
        model.near_path.gate[-1].bias.fill_(30.0)
        opened = model(xc, yc, x_all)
    torch.testing.assert_close(opened.mean[:, :15], yc, rtol=0, atol=1e-10)
    floor = (model.config.min_std * model.encode(xc, yc).y_scale.unsqueeze(-1)) ** 2
    torch.testing.assert_close(opened.fvar, floor.expand_as(opened.fvar))
    assert bool((closed.fvar > 10 * floor).all())
    torch.testing.assert_close(opened.noise_var, closed.noise_var, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["softmax", "scan"])
def test_padding_is_never_a_neighbour_and_scan_agrees(mode: str) -> None:
    model = make_model(mode, near_path=True)
    xc, yc, xt = make_task(nc=20, nt=9, d=3)
    xt = torch.cat([xc[:, 10:13], xt], dim=1)  # at padded points: their neighbour is valid
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[:, 10:] = False
    with torch.no_grad():
        padded = model(xc, yc * 3.0 + mask * 0.0, xt, mask=mask)
        short = model(xc[:, :10], (yc * 3.0)[:, :10], xt)
        softmax = make_model("softmax", near_path=True)(xc, yc, xt)
        this = model(xc, yc, xt)
    assert_same_prediction(padded, short, rtol=1e-9, atol=1e-10)
    assert_same_prediction(this, softmax, rtol=1e-9, atol=1e-10)


def test_gradients_in_the_test_inputs_are_finite_at_the_data() -> None:
    model = make_model("softmax", near_path=True)
    xc, yc, _ = make_task(nc=10, nt=1, d=2)
    xt = xc[:, :4].clone().requires_grad_(True)  # distance exactly 0
    model(xc, yc, xt).mean.sum().backward()
    assert bool(torch.isfinite(xt.grad).all()) and xt.grad.abs().sum() > 0


def test_empty_context_and_joint_paths() -> None:
    model = make_model("softmax", near_path=True)
    xc, yc, xt = make_task(nc=8, nt=5, d=2)
    with torch.no_grad():
        empty = model(xc[:, :0], yc[:, :0], xt)
        assert bool(torch.isfinite(empty.mean).all() & torch.isfinite(empty.yvar).all())
        cache = model.encode(xc, yc)
        paths = predict_paths(model, cache, xt.unsqueeze(1))  # no added points
        direct = model.predict(cache, xt)
        round_trip = model.predict(cache.to(torch.float32).to(torch.float64), xt)
    torch.testing.assert_close(paths.mean[:, 0, 0], direct.mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(round_trip.mean, direct.mean, rtol=1e-5, atol=1e-6)
    assert cache.to(torch.float32).near_keys.dtype == torch.float32


def test_linear_backends_refuse_the_path() -> None:
    for attention in ("dka", "performer"):
        with pytest.raises(ConfigError, match="near_path needs an exact backend"):
            TNPKRConfig(**{**SMALL, "attention": attention, "near_path": True})
    with pytest.raises(ConfigError, match="must be a bool"):
        TNPKRConfig(near_path=1)
