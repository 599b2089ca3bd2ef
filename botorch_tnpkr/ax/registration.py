"""Teach Ax about ``TNPKRModel``: a no-op fit routine and the JSON/SQA storage class name.

Both registrations run when ``botorch_tnpkr.ax`` is imported; ``register_with_ax`` is
idempotent, so importing twice (or calling it again) changes nothing.
"""

from __future__ import annotations

from typing import Any

from ax.generators.torch.botorch_modular.utils import fit_botorch_model
from ax.storage.botorch_modular_registry import register_model

from botorch_tnpkr.model import TNPKRModel

_registered = False


def _fit_tnpkr(model: TNPKRModel, mll_class: Any = None, mll_options: Any = None) -> None:
    """Nothing to fit: the network is pretrained and the history was encoded at construction.

    Ax calls ``fit_botorch_model(model, mll_class, mll_options)`` after building every
    surrogate (and every cross-validation fold); the MLL arguments do not apply.
    """


def register_with_ax() -> None:
    """Register ``TNPKRModel`` with Ax's fit dispatcher and its storage registries."""
    global _registered
    if _registered:
        return
    fit_botorch_model.register(TNPKRModel)(_fit_tnpkr)
    # Encodes the class as "TNPKRModel" in JSON / SQA snapshots of a strategy and decodes
    # it back, so that ``Client.save_to_json_file`` / ``load_from_json_file`` work.
    register_model(TNPKRModel)
    _registered = True


__all__ = ["register_with_ax"]
