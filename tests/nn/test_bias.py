"""The inference path of the kernel bias equals the training path, values and gradients."""

from __future__ import annotations

import torch

from botorch_tnpkr.nn.bias import KernelBias, frozen_rbf_bias, rbf_bias


def _params(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    bias = KernelBias(num_heads=3, num_basis=4).double()
    with torch.no_grad():
        for p in bias.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        bias.width[0, 1].neg_()  # a negative width counts as its absolute value
    return bias


def test_frozen_bias_values_are_bitwise_equal():
    bias = _params()
    dist = torch.rand(2, 7, 11, dtype=torch.float64) * 1.5
    reference = rbf_bias(dist, bias.amplitude, bias.width, bias.centre)
    assert torch.equal(frozen_rbf_bias(dist, bias.amplitude, bias.width, bias.centre), reference)


def test_frozen_bias_gradient_in_distance_matches_autograd():
    bias = _params(1)
    dist = (torch.rand(2, 5, 9, dtype=torch.float64) * 1.5).requires_grad_(True)
    weights = torch.randn(2, 3, 5, 9, dtype=torch.float64)
    params = [p.detach() for p in (bias.amplitude, bias.width, bias.centre)]
    (expected,) = torch.autograd.grad((rbf_bias(dist, *params) * weights).sum(), dist)
    (got,) = torch.autograd.grad((frozen_rbf_bias(dist, *params) * weights).sum(), dist)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda r: frozen_rbf_bias(r, *params), (dist[:1, :2, :3],))


def test_module_picks_the_training_path_when_parameters_need_gradients():
    bias = _params(2)
    dist = torch.rand(1, 4, 6, dtype=torch.float64)
    bias(dist).sum().backward()  # parameters train: they receive gradients
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bias.parameters())
    bias.requires_grad_(False)
    with torch.no_grad():
        frozen = bias(dist)
    torch.testing.assert_close(frozen, rbf_bias(dist, bias.amplitude, bias.width, bias.centre))
