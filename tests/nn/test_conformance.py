"""One conformance suite that every attention backend passes.

``BackendConformance`` holds the checks; one subclass per backend runs them (the pattern of
GPyTorch's ``BaseKernelTestCase``). A new backend gets the whole suite by adding a subclass.
"""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.errors import DimensionError
from botorch_tnpkr.nn import ATTENTION_BACKENDS
from botorch_tnpkr.nn.model import SCALE_PRIOR_WEIGHT
from tests.nn.helpers import SMALL, assert_same_prediction, make_model, make_task

F64 = {"rtol": 1e-10, "atol": 1e-10}


class BackendConformance:
    """Checks every backend passes; subclasses set ``attention``."""

    attention: str
    linear_memory = False  # True where the cached context has a size independent of nC

    def model(self, dtype: torch.dtype = torch.float64, **changes):
        return make_model(self.attention, dtype, **changes)

    # ---------------------------------------------------------------- shapes and dtypes
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_shapes_dtypes_and_positive_variances(self, dtype):
        model = self.model(dtype)
        xc, yc, xt = make_task(b=3, nc=7, nt=5, d=2, dtype=dtype)
        pred = model(xc, yc, xt)
        for value in (pred.mean, pred.fvar, pred.noise_var, pred.yvar):
            assert value.shape == (3, 5)
            assert value.dtype == dtype
            assert torch.isfinite(value).all()
        assert (pred.fvar > 0).all() and (pred.noise_var > 0).all()
        torch.testing.assert_close(pred.yvar, pred.fvar + pred.noise_var)
        # The floor min_std holds in units of the context's standard deviation of y.
        floor = (model.config.min_std * yc.std(dim=-1, unbiased=False)) ** 2
        assert (pred.fvar >= floor.unsqueeze(-1) * (1 - 1e-4)).all()

    def test_float32_agrees_with_float64(self):
        xc, yc, xt = make_task(nc=12, nt=5)
        ref = self.model(torch.float64)(xc, yc, xt)
        low = self.model(torch.float32)(xc.float(), yc.float(), xt.float())
        assert_same_prediction(low, ref, rtol=1e-3, atol=1e-4, check_dtype=False)

    def test_repeated_calls_are_deterministic(self):
        model = self.model()
        xc, yc, xt = make_task()
        assert_same_prediction(model(xc, yc, xt), model(xc, yc, xt), rtol=0, atol=0)

    # ---------------------------------------------------------------- set structure
    def test_invariant_to_context_order(self):
        model = self.model()
        xc, yc, xt = make_task(nc=13)
        yvar = 0.01 + 0.1 * torch.rand(yc.shape, dtype=yc.dtype)
        perm = torch.randperm(13, generator=torch.Generator().manual_seed(3))
        assert_same_prediction(model(xc[:, perm], yc[:, perm], xt), model(xc, yc, xt), **F64)
        assert_same_prediction(
            model(xc[:, perm], yc[:, perm], xt, yvar=yvar[:, perm]),
            model(xc, yc, xt, yvar=yvar),
            **F64,
        )

    def test_prediction_ignores_other_test_points(self):
        model = self.model()
        xc, yc, xt = make_task(nc=10, nt=9)
        full = model(xc, yc, xt)
        for index in ([0, 4, 7], [8], [3, 2, 1]):
            part = model(xc, yc, xt[:, index])
            for name in ("mean", "fvar", "noise_var"):
                torch.testing.assert_close(
                    getattr(part, name), getattr(full, name)[:, index], **F64
                )

    # ---------------------------------------------------------------- cached context
    def test_predict_from_cache_equals_forward(self):
        model = self.model()
        xc, yc, xt = make_task(nc=11, nt=7)
        yvar = torch.full_like(yc, 0.05)
        assert_same_prediction(model.predict(model.encode(xc, yc), xt), model(xc, yc, xt), **F64)
        assert_same_prediction(
            model.predict(model.encode(xc, yc, yvar=yvar), xt), model(xc, yc, xt, yvar=yvar), **F64
        )

    def test_cache_reused_for_two_test_sets(self):
        model = self.model()
        xc, yc, xt = make_task(nc=11, nt=7)
        other = torch.rand(2, 4, 2, dtype=xt.dtype, generator=torch.Generator().manual_seed(9))
        cache = model.encode(xc, yc)
        first = model.predict(cache, xt)
        second = model.predict(cache, other)
        assert_same_prediction(first, model(xc, yc, xt), **F64)
        assert_same_prediction(second, model(xc, yc, other), **F64)
        # Reading the cache must not alter it.
        assert_same_prediction(model.predict(cache, xt), first, rtol=0, atol=0)

    def test_cache_size(self):
        model = self.model()

        def memory_shapes(nc: int) -> list[tuple[int, ...]]:
            xc, yc, _ = make_task(nc=nc)
            cache = model.encode(xc, yc)
            return [tuple(t.shape) for memory in cache.memories for t in memory if t is not None]

        small, large = memory_shapes(10), memory_shapes(100)
        assert len(small) == len(large) > 0
        if self.linear_memory:
            assert small == large
        else:
            assert small != large

    # ---------------------------------------------------------------- masks and padding
    def test_padding_changes_nothing(self):
        model = self.model()
        xc, yc, xt = make_task(b=2, nc=8, nt=5)
        yvar = 0.01 + 0.1 * torch.rand(yc.shape, dtype=yc.dtype)
        ref = model(xc, yc, xt, yvar=yvar)
        # Interleave 5 padding rows holding NaN, inf and huge values.
        pad = 5
        order = torch.randperm(8 + pad, generator=torch.Generator().manual_seed(4))
        junk_x = torch.tensor([float("nan"), 1e30, float("inf"), -1e30, 7.0], dtype=xc.dtype)
        junk_y = torch.tensor([float("nan"), float("inf"), -1e30, 1e30, 3.0], dtype=xc.dtype)
        xc_p = torch.cat([xc, junk_x.view(1, pad, 1).expand(2, pad, 2)], dim=1)[:, order]
        yc_p = torch.cat([yc, junk_y.expand(2, pad)], dim=1)[:, order]
        yvar_p = torch.cat([yvar, (-junk_y).expand(2, pad)], dim=1)[:, order]
        mask = torch.cat([torch.ones(2, 8), torch.zeros(2, pad)], dim=1).bool()[:, order]
        out = model(xc_p, yc_p, xt, yvar=yvar_p, mask=mask)
        assert_same_prediction(out, ref, **F64)
        out = model(xc_p, yc_p, xt, mask=mask)
        assert_same_prediction(out, model(xc, yc, xt), **F64)

    def test_contexts_of_different_sizes_share_a_batch(self):
        model = self.model()
        sizes = (3, 12, 1, 0)
        xc, yc, xt = make_task(b=len(sizes), nc=max(sizes), nt=6)
        mask = torch.arange(max(sizes)).unsqueeze(0) < torch.tensor(sizes).unsqueeze(-1)
        batched = model(xc, yc, xt, mask=mask)
        for i, n in enumerate(sizes):
            alone = model(xc[i : i + 1, :n], yc[i : i + 1, :n], xt[i : i + 1])
            for name in ("mean", "fvar", "noise_var"):
                torch.testing.assert_close(
                    getattr(batched, name)[i : i + 1], getattr(alone, name), **F64
                )

    def test_empty_context_gives_finite_prior(self):
        model = self.model()
        _, _, xt = make_task(nt=6)
        xt = torch.cat([xt[:1], xt[:1]])  # the same test points in both tasks
        empty_x = xt.new_zeros(2, 0, 2)
        prior = model(empty_x, xt.new_zeros(2, 0), xt)
        for value in (prior.mean, prior.fvar, prior.noise_var):
            assert torch.isfinite(value).all()
        assert (prior.fvar > 0).all()
        # No data: the prior is the same for every task of the batch.
        torch.testing.assert_close(prior.mean[0], prior.mean[1], **F64)
        torch.testing.assert_close(prior.fvar[0], prior.fvar[1], **F64)
        cache = model.encode(empty_x, xt.new_zeros(2, 0))
        assert_same_prediction(model.predict(cache, xt), prior, **F64)

    def test_all_masked_context_equals_empty_context(self):
        model = self.model()
        xc, yc, xt = make_task(nc=9, nt=6)
        mask = torch.zeros(2, 9, dtype=torch.bool)
        empty = model(xc[:, :0], yc[:, :0], xt)
        assert_same_prediction(model(xc, yc, xt, mask=mask), empty, **F64)
        yvar = torch.full_like(yc, 0.3)
        assert_same_prediction(model(xc, yc, xt, yvar=yvar, mask=mask), empty, **F64)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_all_masked_task_has_finite_gradients(self, dtype):
        model = self.model(dtype)
        xc, yc, xt = make_task(nc=9, nt=4, dtype=dtype)
        mask = torch.ones(2, 9, dtype=torch.bool)
        mask[1] = False
        xt.requires_grad_(True)
        pred = model(xc, yc, xt, mask=mask)
        (grad,) = torch.autograd.grad((pred.mean + pred.yvar).sum(), xt)
        assert torch.isfinite(grad).all()
        model.train()
        model(xc, yc, xt.detach(), mask=mask).mean.sum().backward()
        for name, param in model.named_parameters():
            assert param.grad is None or torch.isfinite(param.grad).all(), name

    # ---------------------------------------------------------------- input dimension
    @pytest.mark.parametrize("d", range(1, SMALL["max_dim"] + 1))
    def test_every_input_dimension_up_to_max_dim(self, d):
        model = self.model()
        xc, yc, xt = make_task(nc=6, nt=3, d=d)
        pred = model(xc, yc, xt)
        assert pred.mean.shape == (2, 3)
        assert torch.isfinite(pred.mean).all() and torch.isfinite(pred.yvar).all()

    def test_dimension_above_max_dim_raises(self):
        model = self.model()
        max_dim = model.config.max_dim
        xc, yc, xt = make_task(nc=6, nt=3, d=max_dim + 1)
        with pytest.raises(DimensionError, match=rf"max_dim={max_dim}"):
            model(xc, yc, xt)
        with pytest.raises(DimensionError, match=rf"max_dim={max_dim}"):
            model.encode(xc, yc)
        cache = model.encode(xc[..., :2], yc)
        with pytest.raises(DimensionError, match=rf"max_dim={max_dim}"):
            model.predict(cache, xt)

    # ---------------------------------------------------------------- gradients
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_gradients_wrt_test_inputs_are_finite_and_nonzero(self, dtype):
        model = self.model(dtype)
        xc, yc, xt = make_task(nc=8, nt=5, dtype=dtype)
        xt = xt.clone()
        xt[:, 0] = xc[:, 0]  # a test point exactly on a context point
        xt[:, 1] = xc[:, 3]
        xt.requires_grad_(True)
        pred = model(xc, yc, xt)
        for value in (pred.mean, pred.fvar):
            (grad,) = torch.autograd.grad(value.sum(), xt, retain_graph=True)
            assert torch.isfinite(grad).all()
            assert (grad.norm(dim=-1) > 0).all()

    # ---------------------------------------------------------------- y units
    def test_shift_equivariance_and_scale_estimate_in_y(self):
        model = self.model()
        xc, yc, xt = make_task(nc=9)
        b = -12.5
        ref = model(xc, yc, xt)
        out = model(xc, yc + b, xt)
        torch.testing.assert_close(out.mean, ref.mean + b, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(out.fvar, ref.fvar, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out.noise_var, ref.noise_var, rtol=1e-9, atol=1e-12)
        yvar = torch.full_like(yc, 0.02)
        ref = model(xc, yc, xt, yvar=yvar)
        out = model(xc, yc + b, xt, yvar=yvar)
        torch.testing.assert_close(out.mean, ref.mean + b, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(out.yvar, ref.yvar, rtol=1e-9, atol=1e-12)
        # The internal scale is the shrunk standard deviation of the module docstring.
        cache = model.encode(xc, yc * 3.7)
        dev = ((yc * 3.7 - (yc * 3.7).mean(-1, keepdim=True)) ** 2).sum(-1)
        k = SCALE_PRIOR_WEIGHT
        torch.testing.assert_close(cache.y_scale**2, (dev + k) / (yc.shape[-1] + k))
        # Outputs scale with y: huge and tiny magnitudes stay finite and positive.
        for a in (1e12, 1e-12):
            pred = model(xc, yc * a, xt)
            assert torch.isfinite(pred.mean).all() and (pred.fvar > 0).all()
            assert (pred.noise_var > 0).all()

    def test_known_noise_changes_predictions(self):
        model = self.model()
        xc, yc, xt = make_task(nc=9)
        plain = model(xc, yc, xt)
        results = [model(xc, yc, xt, yvar=torch.full_like(yc, v)) for v in (0.0, 1e-4, 1.0, 1e6)]
        for pred in results:
            for value in (pred.mean, pred.fvar, pred.noise_var):
                assert torch.isfinite(value).all()
            assert (pred.mean - plain.mean).abs().max() > 1e-6
        assert (results[1].mean - results[2].mean).abs().max() > 1e-6


class TestSoftmax(BackendConformance):
    attention = "softmax"


class TestScan(BackendConformance):
    attention = "scan"


class TestSoftmaxBeyondTrainedContext(BackendConformance):
    """Log-n scaling active: the tasks' contexts (10 points) exceed ``trained_context``."""

    attention = "softmax"

    def model(self, dtype: torch.dtype = torch.float64, **changes):
        return make_model(self.attention, dtype, **{"trained_context": 4, **changes})


class TestScanBeyondTrainedContext(TestSoftmaxBeyondTrainedContext):
    attention = "scan"


class TestSoftmaxARD(BackendConformance):
    """Keys stretch the input dimensions of their bias distances (``ard_bias``)."""

    attention = "softmax"

    def model(self, dtype: torch.dtype = torch.float64, **changes):
        return make_model(self.attention, dtype, **{"ard_bias": True, **changes})


class TestScanARDBeyondTrainedContext(BackendConformance):
    """ARD distances, tiles and log-n scaling together."""

    attention = "scan"

    def model(self, dtype: torch.dtype = torch.float64, **changes):
        changes = {"ard_bias": True, "trained_context": 4, **changes}
        return make_model(self.attention, dtype, **changes)


class TestScanFineARDBeyondTrainedContext(BackendConformance):
    """Fine kernel-bias functions (``fine_basis``) with ARD distances, tiles and log-n."""

    attention = "scan"

    def model(self, dtype: torch.dtype = torch.float64, **changes):
        changes = {"ard_bias": True, "fine_basis": 2, "trained_context": 4, **changes}
        return make_model(self.attention, dtype, **changes)


class TestDeepKernelAttention(BackendConformance):
    attention = "dka"
    linear_memory = True


class TestPerformer(BackendConformance):
    attention = "performer"
    linear_memory = True


def test_every_backend_has_a_conformance_class():
    covered = {cls.attention for cls in BackendConformance.__subclasses__()}
    assert covered == set(ATTENTION_BACKENDS)
