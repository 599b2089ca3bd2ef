"""Repeated test points are predicted once, with the same values and gradients."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.model import dedupe, tnpkr_model
from tests.model.helpers import make_data


@pytest.fixture
def no_dedupe(monkeypatch):
    """Switch the de-duplication off (the reference path)."""

    def switch(enabled: bool) -> None:
        monkeypatch.setattr(dedupe, "MIN_ROWS", 256 if enabled else 10**9)

    return switch


def test_distinct_rows_finds_first_occurrences():
    base = torch.rand(2, 100, 3, dtype=torch.float64)
    xt = torch.cat([base, base, base[:, :60]], dim=1)  # 260 rows, 100 distinct
    first, inverse = dedupe.distinct_rows(xt)
    assert first.numel() == 100 and inverse.shape == (260,)
    assert torch.equal(xt[:, first][:, inverse], xt)
    assert bool((first < 100).all())  # the first copy of every row


def test_rows_differing_in_one_task_are_not_shared():
    xt = torch.rand(1, 300, 2).expand(2, 300, 2).clone()
    xt[1, 150:] = torch.rand(150, 2)  # same in task 0, different in task 1
    xt[:, 150:] = xt[:, :150].clone()
    xt[1, 150:, 0] += 0.5
    assert dedupe.distinct_rows(xt) is None  # 300 distinct rows: not worth it


def test_mostly_distinct_rows_are_left_alone():
    assert dedupe.distinct_rows(torch.rand(1, 1000, 2)) is None
    assert dedupe.distinct_rows(torch.rand(1, 100, 2).repeat(1, 2, 1)) is None  # < MIN_ROWS


def _baseline_batch(model_X, candidates):
    """What qLogNEI asks for: the baseline appended to every candidate batch."""
    b = candidates.shape[0]
    return torch.cat([model_X.expand(b, *model_X.shape), candidates], dim=-2)


@pytest.mark.parametrize("m", [1, 2])
def test_posterior_and_gradients_match_the_plain_path(exact_path, no_dedupe, m):
    X, Y = make_data(n=40, d=3, m=m, seed=3)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    results = []
    for enabled in (False, True):
        no_dedupe(enabled)
        cand = torch.rand(16, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        cand.requires_grad_(True)
        post = model.posterior(_baseline_batch(X, cand), observation_noise=True)
        loss = (post.mean.sin() + post.variance.sqrt()).sum()
        (grad,) = torch.autograd.grad(loss, cand)
        results.append((post.mean.detach(), post.variance.detach(), grad))
    for plain, shared in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(shared, plain, rtol=1e-10, atol=1e-12)
    assert results[1][2].abs().sum() > 0


def test_gradient_of_each_copy_is_its_own(exact_path, no_dedupe):
    """Identical rows that are separate variables each get their own gradient."""
    X, Y = make_data(n=20, d=2, seed=4)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    point = torch.rand(1, 1, 2, dtype=torch.float64)
    weights = torch.linspace(-1.0, 2.0, 300, dtype=torch.float64).view(300, 1)
    grads = []
    for enabled in (False, True):
        no_dedupe(enabled)
        Xq = point.expand(300, 1, 2).clone().requires_grad_(True)
        mean = model.posterior(Xq).mean.squeeze(-1)  # 300 x 1
        (grad,) = torch.autograd.grad((weights * mean).sum(), Xq)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(grads[1][0], grads[1][-1])  # weighted differently per copy


def test_gradients_reach_the_history_of_a_fantasy_model(exact_path, no_dedupe):
    """qKG differentiates through fantasised observations: the shared rows keep that path."""
    X, Y = make_data(n=20, d=2, seed=5)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    grads = []
    for enabled in (False, True):
        no_dedupe(enabled)
        new_X = torch.full((1, 2), 0.3, dtype=torch.float64, requires_grad=True)
        new_Y = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
        cond = model.condition_on_observations(new_X, new_Y)
        test = torch.rand(1, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        mean = cond.posterior(test.repeat(10, 1, 1)).mean
        grads.append(torch.autograd.grad(mean.sum(), (new_X, new_Y)))
    for plain, shared in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(shared, plain, rtol=1e-9, atol=1e-12)
        assert plain.abs().sum() > 0


def test_qlognei_value_and_gradient_unchanged(exact_path, no_dedupe, monkeypatch):
    X, Y = make_data(n=60, d=3, seed=6)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    calls = []
    real = tnpkr_model.predict_distinct

    def counting(predict, xt, rows):
        calls.append((xt.shape[1], rows[0].numel()))
        return real(predict, xt, rows)

    monkeypatch.setattr(tnpkr_model, "predict_distinct", counting)
    out = []
    for enabled in (False, True):
        no_dedupe(enabled)
        acqf = qLogNoisyExpectedImprovement(
            model,
            X_baseline=X,
            sampler=SobolQMCNormalSampler(torch.Size([32]), seed=0),
            prune_baseline=False,
        )
        cand = torch.rand(8, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        cand.requires_grad_(True)
        value = acqf(cand)
        (grad,) = torch.autograd.grad(value.sum(), cand)
        out.append((value.detach(), grad))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-7, atol=1e-10)
    assert calls == [(8 * 62, 60 + 16)]  # the shared path ran once, on the distinct rows
