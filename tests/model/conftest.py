"""Fixtures of the model tests: tiny random-init networks saved to files.

The pretrained checkpoints are not registered yet, so every test passes ``checkpoint=<path>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from botorch_tnpkr.nn import save_network
from tests.model.helpers import tiny_network


@pytest.fixture(scope="session")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("networks")


@pytest.fixture(scope="session")
def exact_path(network_dir: Path) -> Path:
    path = network_dir / "tiny-exact.safetensors"
    save_network(tiny_network("softmax"), path)
    return path


@pytest.fixture(scope="session")
def dka_path(network_dir: Path) -> Path:
    path = network_dir / "tiny-dka.safetensors"
    save_network(tiny_network("dka", seed=1), path)
    return path
