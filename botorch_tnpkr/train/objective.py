"""Training objective: expected NLL under the oracle's predictive, reported as a gap (KL)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from botorch_tnpkr.nn import Prediction
from botorch_tnpkr.priors import TaskBatch, expected_nll, gaussian_entropy


@dataclass
class Losses:
    """Per-batch means, in nats per target point.

    Attributes:
        loss: What is minimised: ``f_weight * gap_f + gap_y`` (each task's gap softly
            capped first when ``cap`` is given).
        gap_f: KL from the oracle's predictive of the noiseless f to the model's.
        gap_y: The same for the noisy y (model variance ``fvar + noise_var``).
    """

    loss: Tensor
    gap_f: Tensor
    gap_y: Tensor


def soft_cap(gap: Tensor, cap: float | None) -> Tensor:
    """``cap * log1p(gap / cap)``: the gap itself while small, logarithmic beyond ``cap``.

    Per-task gaps are heavy-tailed when contexts are standardised: two points with nearly
    equal values standardise to +-0.71 while the function varies far more, and the KL of such
    a task runs into the thousands. Capping softly keeps those tasks from setting the
    direction of every step; they still push towards wider intervals.
    """
    if cap is None:
        return gap
    return cap * torch.log1p(gap.clamp_min(0.0) / cap)


def oracle_gap(
    pred: Prediction, batch: TaskBatch, f_weight: float = 1.0, cap: float | None = None
) -> Losses:
    """Gaps of a prediction to the oracle GP on a task batch.

    The expected NLL of a target under the oracle's predictive equals the NLL of a sampled
    target in expectation but without its sampling noise; subtracting the oracle's entropy
    (a constant) turns it into a KL divergence, which is zero for the Bayes-optimal predictor
    with the true hyperparameters and is invariant to the scale of ``y``. ``cap`` (see
    ``soft_cap``) applies to each task's mean gap in ``loss`` only; ``gap_f`` and ``gap_y``
    are always the plain means.
    """
    o_mean, o_var = batch.oracle_mean, batch.oracle_var
    o_yvar = o_var + batch.noise
    gap_f = expected_nll(o_mean, o_var, pred.mean, pred.fvar) - gaussian_entropy(o_var)
    gap_y = expected_nll(o_mean, o_yvar, pred.mean, pred.yvar) - gaussian_entropy(o_yvar)
    task_f, task_y = gap_f.mean(-1), gap_y.mean(-1)
    loss = (f_weight * soft_cap(task_f, cap) + soft_cap(task_y, cap)).mean()
    return Losses(loss=loss, gap_f=task_f.mean(), gap_y=task_y.mean())
