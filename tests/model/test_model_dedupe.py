"""Repeated test points are predicted once, with the same values and gradients."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement
from botorch.sampling import SobolQMCNormalSampler

from botorch_tnpkr import TNPKRModel
from botorch_tnpkr.model import dedupe
from tests.model.helpers import make_data


@pytest.fixture
def no_dedupe(monkeypatch):
    """Switch the de-duplication off (the reference path)."""

    def switch(enabled: bool, model: TNPKRModel | None = None) -> None:
        monkeypatch.setattr(dedupe, "MIN_ROWS", 32 if enabled else 10**9)
        monkeypatch.setattr(dedupe, "MAX_UNIQUE_SHARE", 0.75 if enabled else -1.0)
        if model is not None:
            model._memo = None

    return switch


def _find(xt):
    b, n, d = xt.shape
    rows = xt.transpose(0, 1).reshape(n, b * d)
    return dedupe._Distinct.find(rows, dedupe._hash(rows, torch.randn(b * d, dtype=torch.float64)))


def test_distinct_rows_finds_first_occurrences():
    base = torch.rand(2, 100, 3, dtype=torch.float64)
    xt = torch.cat([base, base, base[:, :60]], dim=1)  # 260 rows, 100 distinct
    found = _find(xt)
    assert found.first.numel() == 100 and found.inverse.shape == (260,)
    assert torch.equal(xt[:, found.first][:, found.inverse], xt)
    assert bool((found.first < 100).all())  # the first copy of every row
    assert sorted(found.counts.tolist()) == [2] * 40 + [3] * 60


def test_rows_differing_in_one_task_are_not_shared():
    xt = torch.rand(2, 150, 2).repeat(1, 2, 1)
    xt[1, 150:, 0] += 0.5  # same point for task 0, another for task 1
    assert _find(xt).first.numel() == 300


def test_hash_collisions_never_merge_different_rows():
    rows = torch.rand(50, 4, dtype=torch.float64).repeat(2, 1)
    found = dedupe._Distinct.find(rows, torch.zeros(100, dtype=torch.float64))  # all collide
    assert torch.equal(rows[found.first][found.inverse], rows)
    assert found.first.numel() == 99  # row 0 and its copy stay grouped; 98 rows split off


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
        no_dedupe(enabled, model)
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
        no_dedupe(enabled, model)
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
        no_dedupe(enabled, model)
        new_X = torch.full((1, 2), 0.3, dtype=torch.float64, requires_grad=True)
        new_Y = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
        cond = model.condition_on_observations(new_X, new_Y)
        test = torch.rand(1, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        mean = cond.posterior(test.repeat(10, 1, 1)).mean
        grads.append(torch.autograd.grad(mean.sum(), (new_X, new_Y)))
    for plain, shared in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(shared, plain, rtol=1e-9, atol=1e-12)
        assert plain.abs().sum() > 0


class _RowCounter:
    """Counts the test rows the network is asked to predict."""

    def __init__(self, model: TNPKRModel, monkeypatch) -> None:
        self.rows: list[int] = []
        real = model.network.predict

        def counting(cache, xt):
            self.rows.append(xt.shape[-2])
            return real(cache, xt)

        monkeypatch.setattr(model.network, "predict", counting)


def test_repeated_rows_are_remembered_across_calls(exact_path, no_dedupe, monkeypatch):
    """The baseline is predicted once per encoding; later calls predict the candidates only."""
    X, Y = make_data(n=60, d=3, seed=7)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    reference = TNPKRModel(X, Y, checkpoint=str(exact_path))
    counter = _RowCounter(model, monkeypatch)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # raw samples: no gradients, the memo learns the baseline
        model.posterior(_baseline_batch(X, torch.rand(32, 1, 3, generator=gen).double()))
    assert counter.rows == [60 + 32]

    def lbfgs_like_call(m: TNPKRModel, seed: int):
        cand = torch.rand(8, 1, 3, generator=torch.Generator().manual_seed(seed)).double()
        cand.requires_grad_(True)
        post = m.posterior(_baseline_batch(X, cand))
        loss = (post.mean.sin() * post.variance).sum()
        return post.mean.detach(), torch.autograd.grad(loss, cand)[0]

    for seed in (4, 5):
        shared = lbfgs_like_call(model, seed)
        no_dedupe(False, reference)
        plain = lbfgs_like_call(reference, seed)
        no_dedupe(True)
        for a, b in zip(shared, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # The 8 candidates, the Jacobians of the remembered rows once, then the candidates only.
    assert counter.rows[1:] == [8, 60, 8]
    model.condition_on_observations(X[:1], Y[:1])  # a new model: this one's memo is intact
    assert model._memo is not None and model._memo.size == 60


def test_the_memo_is_dropped_with_the_cache(exact_path):
    X, Y = make_data(n=30, d=2, seed=8)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    model.posterior(_baseline_batch(X, torch.rand(20, 1, 2, dtype=torch.float64)))
    assert model._memo is not None and model._memo.size == 30
    model.load_state_dict(model.state_dict())
    assert model._memo is None
    model.posterior(_baseline_batch(X, torch.rand(20, 1, 2, dtype=torch.float64)))
    model = model.to(torch.float32)
    assert model._memo is None


def test_qlognei_value_and_gradient_unchanged(exact_path, no_dedupe, monkeypatch):
    X, Y = make_data(n=60, d=3, seed=6)
    model = TNPKRModel(X, Y, checkpoint=str(exact_path))
    counter = _RowCounter(model, monkeypatch)
    out = []
    for enabled in (False, True):
        no_dedupe(enabled, model)
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
    assert counter.rows == [8 * 62, 16, 60]  # plain path; candidates, then the baseline once
