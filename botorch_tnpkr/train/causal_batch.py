"""Training through the causal path: the last points of a context added, not encoded.

Joint predictions (``TNPKRModel(joint="autoregressive")``) add sampled points to an encoded
context with ``nn.causal.extend``: an added point attends to the context and to the points
added before it, but the context tokens never attend to it. A network trained only on full
encodings has never seen that shortcut. Presets with ``causal_share > 0`` route that share of
training batches through it: the first ``n - a`` context points are encoded, the last ``a``
added causally, and the targets predicted from both. The oracle still conditions on all ``n``
points, so the loss asks the shortcut to be as good as the full encoding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from botorch_tnpkr.nn import TNPKR, Prediction
from botorch_tnpkr.nn.causal import extend, predict_paths
from botorch_tnpkr.priors import TaskBatch


def num_added(num_context: int, max_added: int, gen: torch.Generator) -> int:
    """How many of ``num_context`` points to add causally: 1..min(max_added, n - 1), or 0."""
    top = min(max_added, num_context - 1)
    if top < 1:
        return 0
    return 1 + int(torch.randint(top, (1,), generator=gen))


def causal_prediction(
    network: TNPKR, batch: TaskBatch, added: int, yvar: Tensor | None = None
) -> Prediction:
    """Predict the targets of ``batch`` with its last ``added`` context points added causally.

    Args:
        network: The network (gradients flow through the encoding and the extension).
        batch: Tasks with `B x n` contexts (``n > added``) and `B x nT` targets.
        added: Number of trailing context points to add, ``1 <= added < n``.
        yvar: Optional `B x n` known noise variances of the context.

    Returns:
        The `B x nT` prediction.
    """
    base = batch.xc.shape[1] - added
    cache = network.encode(
        batch.xc[:, :base],
        batch.yc[:, :base],
        yvar=None if yvar is None else yvar[:, :base],
        mask=batch.mask[:, :base],
    )
    paths = extend(
        network,
        cache,
        batch.xc[:, None, base:],
        batch.yc[:, None, None, base:],
        yvar=None if yvar is None else yvar[:, None, None, base:],
    )
    pred = predict_paths(network, paths, batch.xt[:, None])
    return Prediction(
        mean=pred.mean[:, 0, 0], fvar=pred.fvar[:, 0, 0], noise_var=pred.noise_var[:, 0, 0]
    )
