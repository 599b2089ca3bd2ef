"""Scan attention computes the same function as dense softmax attention, tile by tile."""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.errors import InputShapeError
from botorch_tnpkr.nn.attention import ExactAttention
from tests.nn.helpers import assert_same_prediction, make_model, make_task

CHUNK = 8
# Below, on, just past and at twice the tile size.
SIZES = (1, CHUNK, CHUNK + 3, 2 * CHUNK)
TOL = {"rtol": 1e-9, "atol": 1e-9}


def exact_pair(dtype: torch.dtype = torch.float64, chunk: int = CHUNK, **changes):
    """The same weights as a softmax network and as a scan network."""
    softmax = make_model("softmax", dtype, scan_chunk=chunk, **changes)
    scan = make_model("softmax", dtype, scan_chunk=chunk, **changes)
    scan.set_exact_backend("scan")
    modes = {m.mode for m in scan.modules() if isinstance(m, ExactAttention)}
    assert modes == {"scan"}
    return softmax, scan


@pytest.mark.parametrize("nc", SIZES)
@pytest.mark.parametrize("nt", SIZES)
def test_scan_equals_softmax(nc, nt):
    softmax, scan = exact_pair()
    xc, yc, xt = make_task(b=2, nc=nc, nt=nt, d=3)
    assert_same_prediction(scan(xc, yc, xt), softmax(xc, yc, xt), **TOL)


@pytest.mark.parametrize("nc", (CHUNK, CHUNK + 3, 2 * CHUNK + 5))
def test_scan_gradients_equal_softmax(nc):
    softmax, scan = exact_pair()
    xc, yc, xt = make_task(b=2, nc=nc, nt=CHUNK + 3, d=2)
    grads = []
    for model in (softmax, scan):
        x = xt.clone().requires_grad_(True)
        pred = model(xc, yc, x)
        (grad,) = torch.autograd.grad((pred.mean + pred.fvar.log()).sum(), x)
        grads.append(grad)
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], **TOL)


def test_scan_equals_softmax_with_masks():
    softmax, scan = exact_pair()
    nc = 2 * CHUNK + 3
    xc, yc, xt = make_task(b=3, nc=nc, nt=CHUNK + 1, d=2)
    mask = torch.rand(3, nc, generator=torch.Generator().manual_seed(5)) < 0.6
    mask[1, :CHUNK] = False  # a whole key tile of this task is padding
    mask[2] = False  # and this task has no valid point at all
    xc = xc.masked_fill(~mask.unsqueeze(-1), float("nan"))
    yvar = torch.full_like(yc, 0.01)
    assert_same_prediction(
        scan(xc, yc, xt, yvar=yvar, mask=mask), softmax(xc, yc, xt, yvar=yvar, mask=mask), **TOL
    )


@pytest.mark.parametrize(
    "changes", [{}, {"ard_bias": True}, {"ard_bias": True, "fine_basis": 2}], ids=str
)
def test_scan_training_gradients_equal_softmax(changes):
    """In training mode scan recomputes its tiles in the backward pass (checkpointing)."""
    softmax, scan = exact_pair(**changes)
    xc, yc, xt = make_task(b=2, nc=2 * CHUNK + 1, nt=CHUNK + 2, d=2)
    grads = []
    for model in (softmax, scan):
        model.train()
        model.zero_grad()
        pred = model(xc, yc, xt)
        (pred.mean.square().sum() + pred.yvar.log().sum()).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], **TOL, msg=key)


def test_scan_float32_close_to_softmax():
    softmax, scan = exact_pair(torch.float32)
    xc, yc, xt = make_task(b=2, nc=2 * CHUNK + 3, nt=CHUNK + 3, dtype=torch.float32)
    assert_same_prediction(scan(xc, yc, xt), softmax(xc, yc, xt), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk", (1, 3, 16, 1024))
def test_scan_built_directly_equals_softmax(chunk):
    """``attention="scan"`` has the same parameters as softmax and any chunk gives one answer."""
    softmax = make_model("softmax")
    scan = make_model("scan", scan_chunk=chunk)
    assert softmax.state_dict().keys() == scan.state_dict().keys()
    for key, value in softmax.state_dict().items():
        assert torch.equal(value, scan.state_dict()[key]), key
    xc, yc, xt = make_task(nc=CHUNK + 3, nt=5)
    assert_same_prediction(scan(xc, yc, xt), softmax(xc, yc, xt), **TOL)
    scan.set_exact_backend("softmax")
    assert_same_prediction(scan(xc, yc, xt), softmax(xc, yc, xt), rtol=0, atol=0)


@pytest.mark.parametrize("attention", ("dka", "performer"))
def test_set_exact_backend_rejects_linear_networks(attention):
    with pytest.raises(InputShapeError, match="softmax"):
        make_model(attention).set_exact_backend("scan")


def test_set_exact_backend_rejects_unknown_mode():
    with pytest.raises(InputShapeError, match="'flash'"):
        make_model("softmax").set_exact_backend("flash")
