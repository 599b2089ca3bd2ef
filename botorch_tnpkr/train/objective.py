"""Training objective: expected NLL under the oracle's predictive, reported as a gap (KL)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from botorch_tnpkr.nn import Prediction
from botorch_tnpkr.priors import TaskBatch, expected_nll, gaussian_entropy


@dataclass
class Losses:
    """Per-batch means, in nats per target point.

    Attributes:
        loss: What is minimised: ``f_weight * gap_f + gap_y``.
        gap_f: KL from the oracle's predictive of the noiseless f to the model's.
        gap_y: The same for the noisy y (model variance ``fvar + noise_var``).
    """

    loss: Tensor
    gap_f: Tensor
    gap_y: Tensor


def oracle_gap(pred: Prediction, batch: TaskBatch, f_weight: float = 1.0) -> Losses:
    """Gaps of a prediction to the oracle GP on a task batch.

    The expected NLL of a target under the oracle's predictive equals the NLL of a sampled
    target in expectation but without its sampling noise; subtracting the oracle's entropy
    (a constant) turns it into a KL divergence, which is zero for the Bayes-optimal predictor
    with the true hyperparameters and is invariant to the scale of ``y``.
    """
    o_mean, o_var = batch.oracle_mean, batch.oracle_var
    o_yvar = o_var + batch.noise
    gap_f = expected_nll(o_mean, o_var, pred.mean, pred.fvar) - gaussian_entropy(o_var)
    gap_y = expected_nll(o_mean, o_yvar, pred.mean, pred.yvar) - gaussian_entropy(o_yvar)
    gap_f, gap_y = gap_f.mean(), gap_y.mean()
    return Losses(loss=f_weight * gap_f + gap_y, gap_f=gap_f, gap_y=gap_y)
