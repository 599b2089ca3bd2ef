"""Causal extension of a context cache (``nn/causal.py``): one suite every backend passes.

The reference for a multi-block network is written with the backends' public ``memory`` and
``read`` only: an added point is a context token that attends to the context's tokens of its
block, to the points added before it and to itself; test points attend to all of them.
"""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.errors import InputShapeError, NonFiniteInputError
from botorch_tnpkr.nn.causal import PathCache, extend, predict_paths, sample_autoregressive
from botorch_tnpkr.nn.model import Prediction, context_features
from tests.nn.helpers import assert_same_prediction, make_model, make_task

F64 = {"rtol": 1e-9, "atol": 1e-10}


def _reference(model, xc, yc, xa, ya, xt, yvar_a=None) -> Prediction:
    """Causal extension of one path (`B` tasks) through the public backend API."""
    cache = model.encode(xc, yc)
    b, n, _ = xc.shape
    loc, scale = cache.y_loc.unsqueeze(-1), cache.y_scale.unsqueeze(-1)
    keep = torch.ones_like(yc)
    x_pad, x_bias = model._pad_inputs(xc)
    c = model.embed(torch.cat([x_pad, context_features((yc - loc) / scale, keep, None)], -1))
    ratio = None if yvar_a is None else yvar_a / scale**2
    a_pad, a_bias = model._pad_inputs(xa)
    extra = context_features((ya - loc) / scale, torch.ones_like(ya), ratio)
    added = model.embed(torch.cat([a_pad, extra], -1))  # (B, a, D)
    t_pad, t_bias = model._pad_inputs(xt)
    t = model.embed(torch.cat([t_pad, t_pad.new_zeros(*t_pad.shape[:-1], 4)], -1))
    a = xa.shape[1]
    for block in model.blocks:
        attn = block.attention
        cn, an = block.norm_attn(c), block.norm_attn(added)
        keys_x = torch.cat([x_bias, a_bias], 1)
        new_added = []
        for j in range(a):
            keys = torch.cat([cn, an[:, : j + 1]], 1)
            mask = torch.ones(b, n + j + 1, dtype=torch.bool)
            memory = attn.memory(keys, keys_x[:, : n + j + 1], mask)
            aj = added[:, j : j + 1]
            aj = aj + attn.read(an[:, j : j + 1], a_bias[:, j : j + 1], memory)
            new_added.append(aj + block.ffn(block.norm_ffn(aj)))
        memory = attn.memory(torch.cat([cn, an], 1), keys_x, torch.ones(b, n + a, dtype=torch.bool))
        t = t + attn.read(block.norm_attn(t), t_bias, memory)
        t = t + block.ffn(block.norm_ffn(t))
        c, _ = block.context_step(c, x_bias, torch.ones(b, n, dtype=torch.bool))
        added = torch.cat(new_added, 1)
    return model.readout(t, loc, scale, near=model.near_inputs(cache, xt))


def _paths_pred(pred: Prediction, g: int = 0, s: int = 0) -> Prediction:
    return Prediction(pred.mean[:, g, s], pred.fvar[:, g, s], pred.noise_var[:, g, s])


class CausalConformance:
    attention: str

    def model(self, **changes):
        return make_model(self.attention, **changes)

    def union_targets(self, xc, xt):
        """Test points of ``test_one_block_extension_equals_encoding_the_union``."""
        return xt

    def test_without_added_points_equals_predict(self):
        model = self.model()
        xc, yc, xt = make_task(nc=10, nt=5)
        cache = model.encode(xc, yc)
        pred = predict_paths(model, cache, xt.unsqueeze(1))
        assert pred.mean.shape == (2, 1, 1, 5)
        assert_same_prediction(_paths_pred(pred), model.predict(cache, xt), **F64)

    def test_extending_by_zero_points_changes_nothing(self):
        model = self.model()
        xc, yc, xt = make_task(nc=10, nt=5)
        cache = model.encode(xc, yc)
        paths = extend(model, cache, xt[:, None, :0], yc.new_zeros(2, 1, 3, 0))
        assert paths.num_added == 0
        assert_same_prediction(
            _paths_pred(predict_paths(model, paths, xt.unsqueeze(1))),
            model.predict(cache, xt),
            **F64,
        )

    @pytest.mark.parametrize("known", [False, True])
    def test_one_block_extension_equals_encoding_the_union(self, known):
        # With one block a key's memory depends on its own token only; added values at
        # loc +- scale leave the context's y_loc and y_scale unchanged.
        model = self.model(num_blocks=1)
        xc, yc, xt = make_task(nc=9, nt=5)
        xt = self.union_targets(xc, xt)
        yvar = torch.full_like(yc, 0.02) if known else None
        cache = model.encode(xc, yc, yvar=yvar)
        xa = torch.rand(2, 2, 2, dtype=xc.dtype, generator=torch.Generator().manual_seed(5))
        ya = torch.stack([cache.y_loc + cache.y_scale, cache.y_loc - cache.y_scale], -1)
        yvar_a = torch.full_like(ya, 0.03) if known else None
        union = model(
            torch.cat([xc, xa], 1),
            torch.cat([yc, ya], 1),
            xt,
            yvar=None if yvar is None else torch.cat([yvar, yvar_a], 1),
        )
        paths = extend(
            model,
            cache,
            xa.unsqueeze(1),
            ya.view(2, 1, 1, 2),
            None if yvar_a is None else yvar_a.view(2, 1, 1, 2),
        )
        assert_same_prediction(_paths_pred(predict_paths(model, paths, xt[:, None])), union, **F64)

    @pytest.mark.parametrize("known", [False, True])
    def test_matches_reference_through_public_backend_api(self, known):
        model = self.model()
        xc, yc, xt = make_task(nc=10, nt=4)
        gen = torch.Generator().manual_seed(6)
        xa = torch.rand(2, 3, 2, dtype=xc.dtype, generator=gen)
        ya = torch.randn(2, 3, dtype=xc.dtype, generator=gen)
        yvar_a = torch.full_like(ya, 1e-4) if known else None
        ref = _reference(model, xc, yc, xa, ya, xt, yvar_a)
        paths = extend(
            model,
            model.encode(xc, yc),
            xa.unsqueeze(1),
            ya.view(2, 1, 1, 3),
            None if yvar_a is None else yvar_a.view(2, 1, 1, 3),
        )
        out = _paths_pred(predict_paths(model, paths, xt.unsqueeze(1)))
        assert_same_prediction(out, ref, **F64)
        # The added points do change the prediction (the test could not pass vacuously).
        assert (out.mean - model(xc, yc, xt).mean).abs().max() > 1e-4

    def test_adding_points_one_by_one_equals_adding_them_together(self):
        model = self.model()
        xc, yc, xt = make_task(nc=8, nt=3)
        gen = torch.Generator().manual_seed(7)
        xa = torch.rand(2, 1, 3, 2, dtype=xc.dtype, generator=gen)
        ya = torch.randn(2, 1, 4, 3, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        together = extend(model, cache, xa, ya)
        one = cache
        for j in range(3):
            one = extend(model, one, xa[..., j : j + 1, :], ya[..., j : j + 1])
        assert isinstance(one, PathCache) and one.num_added == 3 and one.num_paths == 4
        torch.testing.assert_close(one.x, together.x)
        assert_same_prediction(
            predict_paths(model, one, xt.unsqueeze(1)),
            predict_paths(model, together, xt.unsqueeze(1)),
            **F64,
        )

    def test_order_of_the_context_is_irrelevant(self):
        model = self.model()
        xc, yc, xt = make_task(nc=12, nt=4)
        gen = torch.Generator().manual_seed(8)
        xa = torch.rand(2, 1, 2, 2, dtype=xc.dtype, generator=gen)
        ya = torch.randn(2, 1, 3, 2, dtype=xc.dtype, generator=gen)
        perm = torch.randperm(12, generator=gen)
        out = [
            predict_paths(model, extend(model, model.encode(x, y), xa, ya), xt[:, None])
            for x, y in ((xc, yc), (xc[:, perm], yc[:, perm]))
        ]
        assert_same_prediction(out[0], out[1], **F64)

    def test_batched_groups_and_paths_equal_single_ones(self):
        model = self.model()
        xc, yc, _ = make_task(nc=10, nt=3)
        gen = torch.Generator().manual_seed(9)
        groups, paths = 3, 4
        xa = torch.rand(2, groups, 2, 2, dtype=xc.dtype, generator=gen)
        ya = torch.randn(2, groups, paths, 2, dtype=xc.dtype, generator=gen)
        xq = torch.rand(2, groups, 3, 2, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        batched = predict_paths(model, extend(model, cache, xa, ya), xq)
        assert batched.mean.shape == (2, groups, paths, 3)
        for g in range(groups):
            for s in range(paths):
                single = extend(model, cache, xa[:, g : g + 1], ya[:, g : g + 1, s : s + 1])
                alone = predict_paths(model, single, xq[:, g : g + 1])
                assert_same_prediction(_paths_pred(alone), _paths_pred(batched, g, s), **F64)

    def test_autoregressive_samples(self):
        model = self.model()
        xc, yc, _ = make_task(nc=10)
        gen = torch.Generator().manual_seed(10)
        xt = torch.rand(2, 3, 4, 2, dtype=xc.dtype, generator=gen).requires_grad_(True)
        z = torch.randn(2, 1, 5, 4, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        samples = sample_autoregressive(model, cache, xt, z, known_noise=1e-4)
        assert samples.shape == (2, 3, 5, 4)
        # The first point is drawn from its independent predictive.
        first = model.predict(cache, xt[:, :, 0].detach())
        expected = first.mean.unsqueeze(-1) + first.fvar.sqrt().unsqueeze(-1) * z[:, :, :, 0]
        torch.testing.assert_close(samples[..., 0], expected, **F64)
        # Later points depend on earlier draws: other z_1 change f_2.
        other = sample_autoregressive(model, cache, xt, torch.cat([-z[..., :1], z[..., 1:]], -1))
        assert (other[..., 1] - samples[..., 1]).abs().max() > 1e-6
        # Reparameterised: finite gradients w.r.t. every input.
        (grad,) = torch.autograd.grad(samples.sum(), xt)
        assert torch.isfinite(grad).all() and (grad[..., 1:, :].abs() > 0).any()

    @pytest.mark.parametrize("known", [None, 1e-4])
    def test_autoregressive_samples_equal_extend_then_predict(self, known):
        model = self.model()
        xc, yc, _ = make_task(nc=9)
        gen = torch.Generator().manual_seed(12)
        xt = torch.rand(2, 2, 3, 2, dtype=xc.dtype, generator=gen)
        z = torch.randn(2, 1, 4, 3, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        paths, manual = cache, []
        for k in range(3):
            pred = predict_paths(model, paths, xt[:, :, k : k + 1])
            f = pred.mean + pred.fvar.sqrt() * z[..., k : k + 1]
            manual.append(f)
            # known_noise is in units of y_scale^2.
            yvar = None if known is None else known * cache.y_scale.view(2, 1, 1, 1) ** 2
            paths = extend(model, paths, xt[:, :, k : k + 1], f, yvar)
        fused = sample_autoregressive(model, cache, xt, z, known_noise=known)
        torch.testing.assert_close(fused, torch.cat(manual, -1), **F64)

    def test_independent_points_come_first_and_condition_the_others(self):
        model = self.model()
        xc, yc, _ = make_task(nc=9)
        gen = torch.Generator().manual_seed(13)
        xt = torch.rand(2, 1, 3, 2, dtype=xc.dtype, generator=gen)
        z = torch.randn(2, 1, 4, 3, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        flags = torch.tensor([False, True, False])
        out = sample_autoregressive(model, cache, xt, z, independent=flags)
        first = model.predict(cache, xt[:, 0])
        f1 = first.mean[:, 1, None] + first.fvar[:, 1, None].sqrt() * z[:, 0, :, 1]
        torch.testing.assert_close(out[:, 0, :, 1], f1, **F64)
        # The others: autoregressive in their own order, after point 1.
        rest = sample_autoregressive(
            model,
            cache,
            xt[:, :, [1, 0, 2]],
            z[..., [1, 0, 2]],
            independent=torch.tensor([True, False, False]),
        )
        torch.testing.assert_close(out, rest[..., [1, 0, 2]], **F64)
        paths = extend(model, cache, xt[:, :, 1:2], f1.view(2, 1, 4, 1))
        pred = predict_paths(model, paths, xt[:, :, :1])
        f0 = pred.mean + pred.fvar.sqrt() * z[..., :1]
        torch.testing.assert_close(out[..., :1], f0, **F64)
        # All independent: the independent predictive, point by point.
        alone = sample_autoregressive(model, cache, xt, z, independent=torch.ones(3).bool())
        full = model.predict(cache, xt[:, 0])
        expected = full.mean.unsqueeze(1) + full.fvar.sqrt().unsqueeze(1) * z[:, 0]
        torch.testing.assert_close(alone[:, 0], expected, **F64)

    def test_centred_reference_path_has_the_independent_means(self):
        model = self.model()
        xc, yc, _ = make_task(nc=9)
        xt = torch.rand(2, 2, 3, 2, dtype=xc.dtype, generator=torch.Generator().manual_seed(14))
        cache = model.encode(xc, yc)
        zero = torch.zeros(2, 1, 1, 3, dtype=xc.dtype)
        centred = sample_autoregressive(model, cache, xt, zero, centre=True)
        means = model.predict(cache, xt.reshape(2, 6, 2)).mean.view(2, 2, 1, 3)
        torch.testing.assert_close(centred, means, **F64)
        plain = sample_autoregressive(model, cache, xt, zero)
        assert (plain[..., 1:] - means[..., 1:]).abs().max() > 1e-6

    def test_shared_prefix_is_sampled_once_with_the_same_result(self):
        model = self.model()
        xc, yc, _ = make_task(nc=10)
        gen = torch.Generator().manual_seed(11)
        prefix = torch.rand(2, 1, 2, 2, dtype=xc.dtype, generator=gen).expand(2, 3, 2, 2)
        tail = torch.rand(2, 3, 2, 2, dtype=xc.dtype, generator=gen)
        xt = torch.cat([prefix, tail], 2)
        z = torch.randn(2, 1, 6, 4, dtype=xc.dtype, generator=gen)
        cache = model.encode(xc, yc)
        joint = sample_autoregressive(model, cache, xt, z)
        for g in range(3):
            alone = sample_autoregressive(model, cache, xt[:, g : g + 1], z)
            torch.testing.assert_close(joint[:, g : g + 1], alone, **F64)

    def test_bad_inputs_raise_typed_errors(self):
        model = self.model()
        xc, yc, xt = make_task(nc=6, nt=2)
        cache = model.encode(xc, yc)
        with pytest.raises(InputShapeError):
            extend(model, cache, xt, yc[:, :2])  # x must be B x G x a x d
        with pytest.raises(InputShapeError):
            extend(model, cache, xt[:, None], yc.new_zeros(2, 1, 3, 5))  # a mismatch
        with pytest.raises(InputShapeError):
            predict_paths(model, cache, torch.rand(2, 1, 2, 3, dtype=xc.dtype))  # d mismatch
        with pytest.raises(InputShapeError):
            predict_paths(model, cache, xt[:, None].float())  # dtype mismatch
        bad = xt[:, None].clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(NonFiniteInputError):
            predict_paths(model, cache, bad)
        with pytest.raises(NonFiniteInputError):
            extend(model, cache, xt[:, None], torch.full((2, 1, 1, 2), float("inf")))
        with pytest.raises(InputShapeError):
            sample_autoregressive(model, cache, xt[:, None], torch.randn(2, 1, 4, 3))


class TestSoftmax(CausalConformance):
    attention = "softmax"


class TestScan(CausalConformance):
    attention = "scan"

    def test_scan_equals_softmax(self):
        # scan_chunk is 8 and the context has 10 points: the context keys span two tiles.
        xc, yc, xt = make_task(nc=10, nt=3)
        xa = torch.rand(2, 2, 2, 2, dtype=xc.dtype, generator=torch.Generator().manual_seed(3))
        ya = torch.randn(2, 2, 3, 2, dtype=xc.dtype, generator=torch.Generator().manual_seed(4))
        out = []
        for mode in ("scan", "softmax"):
            model = make_model(mode)
            out.append(
                predict_paths(model, extend(model, model.encode(xc, yc), xa, ya), xt[:, None])
            )
        assert_same_prediction(out[0], out[1], **F64)


class TestSoftmaxARD(CausalConformance):
    """Added keys carry ARD scales of their own, one set per path."""

    attention = "softmax"

    def model(self, **changes):
        return make_model(self.attention, **{"ard_bias": True, **changes})


class TestScanARD(TestSoftmaxARD):
    attention = "scan"


class TestSoftmaxFineARD(CausalConformance):
    """Fine kernel-bias functions with ARD: added keys read as part of the union."""

    attention = "softmax"

    def model(self, **changes):
        return make_model(self.attention, **{"ard_bias": True, "fine_basis": 2, **changes})


class TestSoftmaxBeyondTrainedContext(CausalConformance):
    """Log-n scaling active: context plus added points (10 + a) exceed ``trained_context``."""

    attention = "softmax"

    def model(self, **changes):
        return make_model(self.attention, **{"trained_context": 4, **changes})


class TestScanBeyondTrainedContext(TestSoftmaxBeyondTrainedContext):
    attention = "scan"


class TestDKA(CausalConformance):
    attention = "dka"


class TestPerformer(CausalConformance):
    attention = "performer"


class TestSoftmaxNearPath(CausalConformance):
    """The readout's near path: it reads the context's points, not the added ones."""

    attention = "softmax"

    def model(self, **changes):
        return make_model(self.attention, **{"near_path": True, **changes})

    def union_targets(self, xc, xt):
        """Test points at context points: extension equals the union only when every test
        point's nearest point is a context point, since the path does not read added ones."""
        return xc[:, : xt.shape[1]] + 1e-4
