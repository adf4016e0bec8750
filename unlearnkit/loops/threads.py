"""torch's intra-op CPU thread count, pinned for a block and put back: the one place that sets it,
for a run at its request's count, a pack of models training side by side, and the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` for the block, then put back: a notebook, a
    test or a sweep runs many runs in one process, and one run's pin must not leak into the next
    (which would then run, and be recorded, at a count nobody asked for). None: left as it is."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
