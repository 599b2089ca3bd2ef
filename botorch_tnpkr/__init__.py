"""botorch-tnpkr: a pretrained Transformer Neural Process (TNP-KR) as a BoTorch surrogate."""

from __future__ import annotations

__version__ = "0.1.0"
