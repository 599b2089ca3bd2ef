"""ard_response measures how an ARD network's distance factors follow a task's anisotropy."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import ard_response
from botorch_tnpkr.nn import TNPKR, TNPKRConfig, save_network

SMALL = TNPKRConfig(
    max_dim=4, dim_model=16, num_heads=2, num_blocks=2, dim_ffn=32, num_basis=3, ard_bias=True
)


def test_zero_for_untrained_ard_layers_and_nonzero_for_task_dependent_ones(tmp_path) -> None:
    torch.manual_seed(0)
    network = TNPKR(SMALL)  # ARD layers at zero: every factor is 1 on every task
    save_network(network, tmp_path / "flat.safetensors")
    with torch.no_grad():
        for block in network.blocks:
            torch.nn.init.normal_(block.attention.ard.weight, std=1.0)
    save_network(network, tmp_path / "live.safetensors")
    out = tmp_path / "r.json"
    args = ["--checkpoints", str(tmp_path / "flat.safetensors"), str(tmp_path / "live.safetensors")]
    records = ard_response.main(
        [*args, "--dims", "2", "3", "--seeds", "2", "--n", "24", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == records
    flat, live = records
    assert set(flat["response_by_dim"]) == {"2", "3"}
    assert all(v == 0.0 for values in flat["response_by_dim"].values() for v in values)
    assert len(live["response_by_dim"]["2"]) == SMALL.num_blocks
    assert any(v != 0.0 for values in live["response_by_dim"].values() for v in values)


def test_refuses_a_network_without_ard(tmp_path) -> None:
    save_network(TNPKR(SMALL.replace(ard_bias=False)), tmp_path / "iso.safetensors")
    with pytest.raises(SystemExit, match="no ARD"):
        ard_response.main(["--checkpoints", str(tmp_path / "iso.safetensors"), "--seeds", "1"])
