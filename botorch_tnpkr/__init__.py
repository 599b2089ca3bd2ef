"""botorch-tnpkr: a pretrained Transformer Neural Process (TNP-KR) as a BoTorch surrogate.

``TNPKRModel`` is imported lazily, so that the network (``botorch_tnpkr.nn``) and the
training code stay importable without BoTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from botorch_tnpkr.model import TNPKRModel

__all__ = ["TNPKRModel", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "TNPKRModel":
        from botorch_tnpkr.model import TNPKRModel

        return TNPKRModel
    raise AttributeError(f"module 'botorch_tnpkr' has no attribute {name!r}")
