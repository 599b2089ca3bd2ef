"""The inference path of the kernel bias equals the training path, values and gradients."""

from __future__ import annotations

import torch

from botorch_tnpkr.nn.bias import (
    KernelBias,
    ard_distance,
    frozen_rbf_bias,
    rbf_bias,
    scaled_distance,
)


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


def test_per_head_distances_frozen_equals_training_path_values_and_gradients():
    """ARD gives each head its own distances (`B x H x nq x nk`): no sum over heads."""
    bias = _params(3)
    dist = (torch.rand(2, 3, 5, 9, dtype=torch.float64) * 1.5).requires_grad_(True)
    params = [p.detach() for p in (bias.amplitude, bias.width, bias.centre)]
    reference = rbf_bias(dist, *params)
    assert reference.shape == (2, 3, 5, 9)
    assert torch.equal(frozen_rbf_bias(dist.detach(), *params), reference.detach())
    weights = torch.randn(2, 3, 5, 9, dtype=torch.float64)
    (expected,) = torch.autograd.grad((reference * weights).sum(), dist)
    (got,) = torch.autograd.grad((frozen_rbf_bias(dist, *params) * weights).sum(), dist)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # Head h of a per-head bias only depends on head h's distances.
    shared = torch.rand(2, 5, 9, dtype=torch.float64)
    per_head = shared.unsqueeze(1).expand(2, 3, 5, 9)
    torch.testing.assert_close(rbf_bias(per_head, *params), rbf_bias(shared, *params))


def test_ard_distance_is_the_stretched_euclidean_distance():
    gen = torch.Generator().manual_seed(4)
    xq = torch.rand(2, 1, 6, 3, generator=gen, dtype=torch.float64)
    xk = torch.rand(2, 1, 8, 3, generator=gen, dtype=torch.float64)
    scale_sq = torch.rand(2, 4, 8, 3, generator=gen, dtype=torch.float64) * 3
    got = ard_distance(xq, xk, scale_sq)  # (B, H, nq, nk)
    diff = xq.unsqueeze(-2) - xk.unsqueeze(-3)  # (B, 1, nq, nk, D)
    want = (diff.square() * scale_sq.unsqueeze(-3)).sum(-1).sqrt()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-7)
    # Unit scales give the isotropic distances.
    ones = torch.ones(2, 1, 8, 3, dtype=torch.float64)
    torch.testing.assert_close(
        ard_distance(xq, xk, ones)[:, 0], scaled_distance(xq[:, 0], xk[:, 0], 1.0)
    )


def test_fine_basis_functions_join_the_bias_and_train():
    """``num_fine`` functions ``a exp(-exp(v) r^2)`` add to the bias; they start at zero."""
    base = _params(5)
    fine = KernelBias(num_heads=3, num_basis=4, num_fine=2).double()
    fine.load_state_dict(base.state_dict(), strict=False)
    dist = torch.rand(2, 5, 9, dtype=torch.float64) * 0.2
    with torch.no_grad():
        torch.testing.assert_close(fine(dist), base(dist), rtol=0, atol=0)
        fine.fine_amplitude.normal_()
    amplitude, log_width = fine.fine_amplitude, fine.fine_log_width
    extra = sum(
        amplitude[:, g].view(1, -1, 1, 1)
        * torch.exp(-log_width[:, g].exp().view(1, -1, 1, 1) * dist.unsqueeze(1) ** 2)
        for g in range(2)
    )
    torch.testing.assert_close(fine(dist), base(dist) + extra, rtol=1e-12, atol=1e-12)
    fine(dist).sum().backward()  # both fine parameters receive gradients
    assert amplitude.grad.abs().min() > 0 and log_width.grad.abs().sum() > 0
    fine.requires_grad_(False)  # the inference path computes the same values
    with torch.no_grad():
        torch.testing.assert_close(fine(dist), base(dist) + extra.detach(), rtol=1e-12, atol=1e-12)
    # Initial lengthscales span 0.003 to 0.03 of the scaled distance.
    lengths = (0.5 / KernelBias(3, 4, num_fine=2).fine_log_width.exp()).sqrt()
    torch.testing.assert_close(lengths[0], torch.tensor([0.003, 0.03]))


def test_sharp_basis_functions_produce_no_subnormal_numbers():
    """exp() of the exponents of sharp functions at ordinary distances falls among float32's
    subnormals (10-100x slower on x86 CPUs); the exponent floor keeps every term normal."""
    from botorch_tnpkr.nn.bias import EXP_FLOOR

    bias = KernelBias(num_heads=2, num_basis=3, num_fine=2)
    with torch.no_grad():
        bias.fine_amplitude.fill_(0.01)
    dist = torch.linspace(0.0, 3.0, 301).view(1, 1, -1)
    tiny = torch.finfo(torch.float32).tiny
    for out in (bias(dist), rbf_bias(dist, *bias.basis())):
        assert not ((out != 0) & (out.abs() < tiny)).any()
    with torch.no_grad():
        frozen = frozen_rbf_bias(dist, *bias.basis())
    assert not ((frozen != 0) & (frozen.abs() < tiny)).any()
    # Where no exponent reaches the floor the values are the plain formula's.
    amplitude, width, centre = (p.detach().double() for p in bias.basis())
    near = dist.double()[..., :3]  # r <= 0.02: every exponent above EXP_FLOOR
    assert (-(width * (near.max() - centre) ** 2)).min() > EXP_FLOOR
    plain = sum(
        amplitude[:, f].view(1, -1, 1, 1)
        * torch.exp(
            -width[:, f].view(1, -1, 1, 1)
            * (near.unsqueeze(1) - centre[:, f].view(1, -1, 1, 1)) ** 2
        )
        for f in range(amplitude.shape[1])
    )
    torch.testing.assert_close(rbf_bias(near, amplitude, width, centre), plain)
