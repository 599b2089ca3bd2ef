"""The checkpoints shipped inside the package load, verify, and come with a model card."""

from __future__ import annotations

import pytest
import torch

from botorch_tnpkr.checkpoints import (
    DEFAULT_CHECKPOINT,
    LINEAR_CHECKPOINT,
    available_checkpoints,
    checkpoint_info,
    load_checkpoint,
)
from botorch_tnpkr.checkpoints.registry import CHECKPOINT_DIR


def test_default_and_linear_checkpoints_are_registered() -> None:
    assert {DEFAULT_CHECKPOINT, LINEAR_CHECKPOINT} <= set(available_checkpoints())


@pytest.mark.parametrize("name", available_checkpoints())
def test_shipped_checkpoint_loads_and_predicts(name: str) -> None:
    info = checkpoint_info(name)
    path = CHECKPOINT_DIR / info["file"]
    assert path.stat().st_size <= 10 * 1024 * 1024
    card = (CHECKPOINT_DIR / f"{name}.md").read_text()
    assert "## Training" in card and "## Evaluation against the oracle GP" in card
    network = load_checkpoint(name)  # verifies the sha256 first
    assert network.config.attention == info["attention"]
    # The description names the architecture the file holds (it once lagged a growth).
    assert info["description"].startswith(network.config.describe())
    gen = torch.Generator().manual_seed(0)
    xc = torch.rand(2, 30, 3, generator=gen)
    yc = torch.sin(6 * xc.sum(-1))
    xt = torch.rand(2, 5, 3, generator=gen)
    with torch.no_grad():
        pred = network(xc, yc, xt)
    assert torch.isfinite(pred.mean).all() and (pred.fvar > 0).all()
