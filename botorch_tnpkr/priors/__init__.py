"""Synthetic GP priors for BO-like regression tasks, with the exact-GP oracle."""

from __future__ import annotations

from botorch_tnpkr.priors.kernels import (
    KERNELS,
    KernelFunction,
    kernel_index,
    kernel_matrix,
    kernel_names,
    register_kernel,
)
from botorch_tnpkr.priors.oracle import (
    GPHyper,
    expected_nll,
    gaussian_entropy,
    gaussian_logpdf,
    gp_posterior,
)
from botorch_tnpkr.priors.sampler import PriorConfig, TaskBatch, sample_hyper, sample_tasks
from botorch_tnpkr.priors.standardize import standardize_batch, standardize_context

__all__ = [
    "KERNELS",
    "GPHyper",
    "KernelFunction",
    "PriorConfig",
    "TaskBatch",
    "expected_nll",
    "gaussian_entropy",
    "gaussian_logpdf",
    "gp_posterior",
    "kernel_index",
    "kernel_matrix",
    "kernel_names",
    "register_kernel",
    "sample_hyper",
    "sample_tasks",
    "standardize_batch",
    "standardize_context",
]
