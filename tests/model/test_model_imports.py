"""The network stays importable without BoTorch; TNPKRModel is exported lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_network_import_does_not_import_botorch():
    code = (
        "import sys, botorch_tnpkr, botorch_tnpkr.nn, botorch_tnpkr.checkpoints; "
        "assert 'botorch' not in sys.modules, 'botorch imported'; "
        "from botorch_tnpkr import TNPKRModel; "
        "assert 'botorch' in sys.modules and TNPKRModel.__name__ == 'TNPKRModel'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
