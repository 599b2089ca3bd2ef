"""The interface every attention backend implements.

A backend turns the (layer-normed) tokens of a key set into a *memory*, then lets query tokens
*read* that memory. Context->context attention is ``read(c, xc, memory(c, xc, mask))``;
test->context attention is ``read(t, xt, memory)`` with the memory built from the context.
Because the context stream never looks at test points, the memory of every block is computed
once (``TNPKR.encode``) and reused by every later prediction (``TNPKR.predict``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class AttentionBackend(nn.Module):
    """Multi-head attention from query tokens to a memory of key tokens.

    Subclasses implement ``memory`` and ``read``. ``x`` arguments are inputs already padded to
    ``max_dim`` and scaled so that Euclidean distances are the ones the kernel bias expects.
    """

    def memory(self, tokens: Tensor, x: Tensor, mask: Tensor) -> Any:
        """Summarise a key set.

        Args:
            tokens: `B x n x D` layer-normed key tokens.
            x: `B x n x max_dim` scaled key inputs.
            mask: `B x n` bool, True for valid keys; invalid keys never influence a read.

        Returns:
            A backend-specific memory (a tuple of tensors).
        """
        raise NotImplementedError

    def read(self, tokens: Tensor, x: Tensor, memory: Any) -> Tensor:
        """Attend from query tokens to a memory.

        Args:
            tokens: `B x nq x D` layer-normed query tokens.
            x: `B x nq x max_dim` scaled query inputs.
            memory: What ``memory`` returned for the key set.

        Returns:
            `B x nq x D` attention output (zero for a task without valid keys).
        """
        raise NotImplementedError
