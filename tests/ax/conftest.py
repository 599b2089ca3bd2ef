"""Fixtures of the Ax tests: a tiny random-init network file and tiny optimiser budgets.

The pretrained checkpoints may not be registered, and the tests check the integration, not
model quality: every strategy here loads a tiny untrained network from a file.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from botorch_tnpkr.nn import save_network
from tests.model.helpers import tiny_network

if importlib.util.find_spec("ax") is None:  # the Ax integration needs the "ax" extra
    collect_ignore_glob = ["test_*.py"]
else:
    from ax.utils.common.logger import set_ax_logger_levels

    set_ax_logger_levels(logging.WARNING)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exact-attention network (``max_dim=6``) saved to a file."""
    path = tmp_path_factory.mktemp("ax-networks") / "tiny-exact.safetensors"
    save_network(tiny_network("softmax"), path)
    return path


@pytest.fixture(scope="session")
def fast_options(tiny_checkpoint: Path) -> dict:
    """Strategy options for CI-sized loops: 3 Sobol trials, a tiny acquisition optimiser."""
    return {
        "initialization_trials": 3,
        "checkpoint": tiny_checkpoint,
        "num_restarts": 2,
        "raw_samples": 16,
        "optimizer_options": {"maxiter": 5},
        "seed": 0,
    }
