"""Suite-wide guards."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_defaults():
    """A test (or a script it runs in-process) must not change torch's defaults for the next."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
