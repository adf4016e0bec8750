"""Networks whose initial weights are computed from their training images.

Some architectures start from weights that are a statistic of the data rather than a random draw:
a first layer that whitens the images' local patches, for example. Such a network cannot be
finished in ``Model.build`` (which sees only the image shape), and it must not be finished from
images the model is not trained on: a retrained model's statistics must not include D_f. So the
training loop, which knows the split it trains on, finishes it: ``uk.fit`` calls
``init_from_data`` once, before its first step, when the network it trains implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

# How many of the training split's images ``uk.fit`` passes: the first this many, in split order.
INIT_SAMPLE = 5000


@runtime_checkable
class InitialisesFromData(Protocol):
    """An ``nn.Module`` that completes its initialisation from a sample of its training images.

    ``uk.fit`` calls ``init_from_data`` on the network it trains (the module itself, before any
    data-parallel or compiled wrapper is made), once, before the first optimisation step, under
    ``torch.no_grad()``, with the first ``min(5000, len(split))`` images of the training split in
    split order: preprocessed as the network sees them (normalised, at its input size, on the
    device, channels-last where the run uses it) but never augmented. The same split gives the
    same sample on every rank and every rerun, so the result is deterministic.

    A network loaded from trained weights should keep them: the method may return without
    changing anything when the weights it would compute are already there (a flag in the
    state dict, say). A network without the method is trained as it was built."""

    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the data-dependent weights from ``images`` (N, C, H, W, float32)."""
        ...
