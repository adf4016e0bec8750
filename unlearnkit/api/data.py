"""Datasets held as uint8 tensors on the device, batched, augmented and normalised there.

Small-image benchmarks fit in device memory many times over, so there is no DataLoader, no
worker process and no per-sample Python: a batch is an index into a resident tensor, and the
random crop, flip, resize and normalisation run as a handful of batched tensor ops. Data larger
than the device budget (ImageNet) is *streamed* instead: DataLoader workers decode each batch
from the archive, pinned and prefetched, and the same batched preprocessing runs on the device;
batch order and augmentation draws are the same either way, so the two paths give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack, overload

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.api.types import Augment
from unlearnkit.errors import UnlearnkitError
from unlearnkit.parallel.torchrun import Part, World, whole


@dataclass(frozen=True)
class Preprocess:
    """uint8 NCHW -> normalised float at the model's resolution, with optional augmentation."""

    mean: torch.Tensor  # (1, C, 1, 1) on the device
    std: torch.Tensor
    size: tuple[int, int]
    augment: Augment
    channels_last: bool = False

    @classmethod
    def create(
        cls,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        size: tuple[int, int],
        augment: Augment,
        device: torch.device,
        channels_last: bool = False,
    ) -> Preprocess:
        as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
        return cls(as_t(mean), as_t(std), size, augment, channels_last)

    def __call__(
        self,
        x: torch.Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
        part: Part | None = None,
    ) -> torch.Tensor:
        """``part``: ``x`` is this rank's part of a global batch; the augmentation is drawn for the
        whole global batch (the draws a single process makes) and this part's rows are applied."""
        # uint8 images are scaled to [0, 1]; float images (a notebook's tensors) are taken as they are,
        # never modified in place
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clone()
        part = part or whole(x.shape[0])
        if train and self.augment.crop_padding:
            x = random_crop(x, self.augment.crop_padding, generator, part)
        if train and self.augment.flip:
            flip = part.take(torch.rand(part.total, generator=generator, device=x.device)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None, part: Part | None = None) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding=pad) for a whole batch at once (zero padding);
    offsets drawn for ``part``'s global batch when ``x`` is one rank's part of it."""
    b, _, h, w = x.shape
    part = part or whole(b)
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = part.take(torch.randint(0, 2 * pad + 1, (part.total,), generator=generator, device=x.device))
    ox = part.take(torch.randint(0, 2 * pad + 1, (part.total,), generator=generator, device=x.device))
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Stream:
    """Images decoded on demand (an :class:`~unlearnkit.api.ImageArray` and the positions of this
    split's images in it), fed through a DataLoader: worker processes decode, batches are pinned
    and prefetched, so the device never waits on JPEG decoding when enough workers run."""

    images: Any  # ImageArray: picklable, indexed with an integer array
    index: np.ndarray
    workers: int = 4
    prefetch: int = 2

    def load(self, positions: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """uint8 batches for each tensor of split positions, in order, on ``device``."""
        from torch.utils.data import DataLoader

        plan = [self.index[p.cpu().numpy()] for p in positions]
        workers = self.workers if len(plan) > 1 else 0
        loader = DataLoader(
            _Batches(self.images, plan),
            batch_size=None,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=self.prefetch if workers else None,
            persistent_workers=False,
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)


class _Batches:
    """A map-style dataset whose items are whole batches: one ``images[idx]`` call per batch."""

    def __init__(self, images: Any, plan: list[np.ndarray]) -> None:
        self.images, self.plan = images, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[self.plan[i]]))


class Augmentation(TypedDict, total=False):
    """Whether a pass over a split applies the training augmentation (``augment``, off by default),
    drawn from ``generator``: the keywords every helper that reads a split forwards unchanged."""

    augment: bool
    generator: torch.Generator | None


class BatchOrder(Augmentation, total=False):
    """How :meth:`Split.sharded_batches` draws a pass, besides the augmentation: ``shuffle``
    (seeded by ``generator``) and ``drop_last``, both off by default."""

    shuffle: bool
    drop_last: bool


@dataclass(frozen=True)
class Split:
    """One named split: labels resident on the device, and images either resident there as uint8
    (``x``) or decoded on demand from an archive (``stream``, for data larger than the device)."""

    name: str
    x: torch.Tensor | None
    y: torch.Tensor
    pre: Preprocess
    stream: Stream | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.y.device

    @property
    def streamed(self) -> bool:
        return self.stream is not None

    def subset(self, idx: torch.Tensor, name: str | None = None) -> Split:
        idx = idx.to(self.device)
        if self.stream is not None:
            stream = replace(self.stream, index=self.stream.index[idx.cpu().numpy()])
            return replace(self, name=name or self.name, y=self.y[idx], stream=stream)
        assert self.x is not None
        return replace(self, name=name or self.name, x=self.x[idx], y=self.y[idx])

    def batches(self, batch_size: int, **order: Unpack[BatchOrder]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)``: inputs preprocessed on the device, in a seeded order."""
        for x, y, _ in self.indexed_batches(batch_size, **order):
            yield x, y

    def indexed_batches(
        self, batch_size: int, **order: Unpack[BatchOrder]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like :meth:`batches`, plus each sample's position in the split, to look up per-sample
        values a method keeps beside the split (LoTUS's forget/retain flag)."""
        for x, y, pos, _ in self.sharded_batches(batch_size, None, **order):
            yield x, y, pos

    def sharded_batches(
        self,
        batch_size: int,
        world: World | None,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, Part]]:
        """This rank's part of every global batch: ``(inputs, labels, positions, part)``.

        The global batches are :meth:`indexed_batches`'s (one seeded order, drawn alike on every
        rank), each split into ``world.size`` contiguous parts (:meth:`World.part`), and the
        augmentation is drawn for the whole global batch: the ranks' parts together are exactly a
        single process's batch, whatever the number of ranks. ``world`` None or of one process:
        the whole batch (``part.whole``)."""
        n = len(self)
        order = torch.randperm(n, generator=generator, device=self.device) if shuffle else None
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        starts = range(0, stop, batch_size)
        world = world if world is not None and world.active else None
        if self.stream is not None:  # decoded by DataLoader workers, in the same seeded order
            host_order = order.cpu() if order is not None else torch.arange(n)  # one sync per pass
            batches = [host_order[s : s + batch_size] for s in starts]
            parts = [world.part(len(b)) if world else whole(len(b)) for b in batches]
            positions = [part.take(b) for b, part in zip(batches, parts)]
            for sel, part, x in zip(positions, parts, self.stream.load(positions, self.device)):
                sel = sel.to(self.device, non_blocking=True)
                yield self.pre(x, train=augment, generator=generator, part=part), self.y[sel], sel, part
            return
        assert self.x is not None
        for start in starts:
            if order is None:  # in order: slices are views, no gather
                end = min(start + batch_size, n)
                part = world.part(end - start) if world else whole(end - start)
                lo, hi = start + part.lo, start + part.hi
                sel = torch.arange(lo, hi, device=self.device)
                x, y = self.x[lo:hi], self.y[lo:hi]
            else:
                sel = order[start : start + batch_size]
                part = world.part(len(sel)) if world else whole(len(sel))
                sel = part.take(sel)
                x, y = self.x[sel], self.y[sel]
            yield self.pre(x, train=augment, generator=generator, part=part), y, sel, part

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)


def concat(a: Split, b: Split, name: str) -> tuple[Split, torch.Tensor]:
    """Union of two splits plus a flag per sample (1 = from ``a``): LoTUS/Bad Teacher mix D_f, D_r.
    Streamed splits over the same images concatenate their positions; nothing is decoded."""
    flags = torch.cat([torch.ones(len(a), device=a.device), torch.zeros(len(b), device=b.device)])
    y = torch.cat([a.y, b.y])
    if a.stream is not None and b.stream is not None and a.stream.images is b.stream.images:
        stream = replace(a.stream, index=np.concatenate([a.stream.index, b.stream.index]))
        return replace(a, name=name, y=y, stream=stream), flags
    if a.x is None or b.x is None:
        raise UnlearnkitError(f"Cannot join the splits '{a.name}' and '{b.name}': one is streamed from other images.")
    return replace(a, name=name, x=torch.cat([a.x, b.x]), y=y), flags


class SplitAccessError(UnlearnkitError):
    """A method read a split it did not declare (its leaderboard access level would be a lie)."""


class NamedSplit:
    """An attribute of :class:`UnlearnData` reading the split of its own name through ``get``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, data: None, owner: type | None = None) -> NamedSplit: ...
    @overload
    def __get__(self, data: UnlearnData, owner: type | None = None) -> Split: ...
    def __get__(self, data: UnlearnData | None, owner: type | None = None) -> Split | NamedSplit:
        return self if data is None else data.get(self.name)


class UnlearnData:
    """The splits a method may read; reading an undeclared one raises ``SplitAccessError``."""

    def __init__(self, splits: dict[str, Split], allowed: frozenset[str], method: str = "method") -> None:
        self._splits = splits
        self._allowed = allowed
        self._method = method
        self.touched: set[str] = set()

    def get(self, name: str) -> Split:
        if name not in self._allowed:
            raise SplitAccessError(
                f"Method '{self._method}' read the '{name}' split but declares access to "
                f"{sorted(self._allowed) or 'no split'}; declare it in `access`/`extra_splits`."
            )
        self.touched.add(name)
        return self._splits[name]

    forget = NamedSplit()  # data.forget is data.get("forget"): the same access check
    retain = NamedSplit()
    unseen = NamedSplit()
    test = NamedSplit()
