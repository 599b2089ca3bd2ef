"""Ax integration of botorch-tnpkr: the only module of the package that imports Ax.

Importing it registers ``TNPKRModel`` with Ax: a no-op fit routine (there is no fitting step)
and the storage class name, so JSON snapshots of a strategy that names ``TNPKRModel`` save
and load.

Example:
    >>> from ax.api.client import Client
    >>> from botorch_tnpkr.ax import configure_tnpkr
    >>> client = Client()
    >>> client.configure_experiment(parameters=[...])
    >>> client.configure_optimization(objective="-loss")
    >>> configure_tnpkr(client, initialization_trials=8, checkpoint="auto")
    >>> trials = client.get_next_trials(max_trials=4)
"""

from __future__ import annotations

from botorch_tnpkr.ax.dimension import check_search_space, checkpoint_max_dim, encoded_dimension
from botorch_tnpkr.ax.registration import register_with_ax
from botorch_tnpkr.ax.strategy import (
    SOBOL_NODE,
    TNPKR_NODE,
    configure_tnpkr,
    tnpkr_generation_strategy,
    tnpkr_model_config,
)

register_with_ax()

__all__ = [
    "SOBOL_NODE",
    "TNPKR_NODE",
    "check_search_space",
    "checkpoint_max_dim",
    "configure_tnpkr",
    "encoded_dimension",
    "register_with_ax",
    "tnpkr_generation_strategy",
    "tnpkr_model_config",
]
