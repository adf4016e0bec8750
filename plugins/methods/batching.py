"""Loop pieces several built-in methods share beyond the public helpers (``unlearnkit.ce_epoch``,
``relabel_epoch``, ...): a shuffled pass that hands each batch's logits to the method's own loss,
and a share of samples counted on the device and read once over every rank."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

import unlearnkit as uk


def forward_batches(
    forward: Callable[[torch.Tensor], torch.Tensor],
    split: uk.Split,
    batch_size: int,
    augment: bool,
    ctx: uk.UnlearnContext,
    generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, uk.Part]]:
    """One shuffled pass over ``split``: per batch (this rank's part of every global batch), the
    logits of ``forward`` under ``ctx.autocast()``, the labels and the part. The loss is left to the
    caller, because that is where the methods differ (descent, ascent, a penalty, other targets)."""
    for x, y, _, part in split.sharded_batches(
        batch_size, ctx.world, shuffle=True, augment=augment, generator=generator
    ):
        with ctx.autocast():
            logits = forward(x)
        yield logits, y, part


class GlobalShare:
    """How many of the samples seen were hits (crossed a boundary, landed in the shadow class), kept
    on the device so that no step waits for the host; read once, summed over every rank."""

    def __init__(self, ctx: uk.UnlearnContext) -> None:
        self.hits = torch.zeros(1, dtype=torch.float64, device=ctx.device)
        self.seen = 0
        self.world = ctx.world

    def add(self, hit: torch.Tensor) -> None:
        """Count one batch: ``hit`` holds one flag per sample."""
        self.hits += hit.sum()
        self.seen += hit.numel()

    def reset(self) -> None:
        self.hits.zero_()
        self.seen = 0

    def share(self) -> float:
        """Hits over samples seen on all ranks together (0 when none was seen)."""
        hits, total = self.world.sum(torch.cat([self.hits, self.hits.new_tensor([self.seen])])).tolist()
        return hits / max(1.0, total)
