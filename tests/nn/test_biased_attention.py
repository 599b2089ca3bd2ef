"""The CPU training path of exact attention computes what SDPA computes, values and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from botorch_tnpkr.nn.attention.exact import biased_attention
from tests.nn.helpers import make_model, make_task

TOL = {"rtol": 1e-10, "atol": 1e-12}


def test_biased_attention_equals_sdpa_with_gradients():
    gen = torch.Generator().manual_seed(0)
    b, h, nq, nk, dh = 2, 3, 5, 7, 4
    # q as the heads of a projection: a transposed, non-contiguous view, as the network makes.
    q = torch.randn(b, nq, h, dh, generator=gen, dtype=torch.float64).transpose(1, 2)
    k, v = (torch.randn(b, h, nk, dh, generator=gen, dtype=torch.float64) for _ in range(2))
    bias = torch.randn(b, h, nq, nk, generator=gen, dtype=torch.float64)
    weights = torch.randn(b, h, nq, dh, generator=gen, dtype=torch.float64)
    results = []
    for fn in (biased_attention, lambda *a: F.scaled_dot_product_attention(*a[:3], attn_mask=a[3])):
        inputs = [t.detach().clone().requires_grad_(True) for t in (q, k, v, bias)]
        out = fn(*inputs)
        grads = torch.autograd.grad((out * weights).sum(), inputs)
        results.append((out, *grads))
    assert results[0][4].abs().max() > 0  # the bias receives a gradient
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, **TOL)


def _parameter_grads(model, xc, yc, xt, mask):
    model.zero_grad(set_to_none=True)
    pred = model(xc, yc, xt, mask=mask)
    (pred.mean.square() + pred.fvar.log() + pred.noise_var.log()).sum().backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_training_gradients_unchanged_by_a_padded_key():
    """All-valid batches skip the mask fill; one padded key must change nothing."""
    model = make_model("softmax").train()
    xc, yc, xt = make_task(b=2, nc=9, nt=5, d=2)
    full = torch.ones(2, 9, dtype=torch.bool)
    padded_x = torch.cat([xc, torch.rand(2, 1, 2, dtype=xc.dtype)], dim=1)
    padded_y = torch.cat([yc, torch.full((2, 1), 3.0, dtype=yc.dtype)], dim=1)
    padded_mask = torch.cat([full, torch.zeros(2, 1, dtype=torch.bool)], dim=1)
    plain = _parameter_grads(model, xc, yc, xt, full)
    padded = _parameter_grads(model, padded_x, padded_y, xt, padded_mask)
    assert len(plain) == len(padded) == sum(1 for _ in model.parameters())
    bias_grads = [
        p.grad for n, p in model.named_parameters() if ".bias.amplitude" in n and p.grad is not None
    ]
    assert bias_grads and all(g.abs().max() > 0 for g in bias_grads)
    for a, b in zip(plain, padded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
