"""Datasets held as uint8 tensors on the device, batched, augmented and normalised there.

Small-image benchmarks fit in device memory many times over, so there is no DataLoader, no
worker process and no per-sample Python: a batch is an index into a resident tensor, and the
random crop, flip, resize and normalisation run as a handful of batched tensor ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from unlearnkit.api import Augment
from unlearnkit.errors import UnlearnkitError


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
        self, x: torch.Tensor, *, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # uint8 images are scaled to [0, 1]; float images (a notebook's tensors) are taken as they are,
        # never modified in place
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clone()
        if train and self.augment.crop_padding:
            x = random_crop(x, self.augment.crop_padding, generator)
        if train and self.augment.flip:
            flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding=pad) for a whole batch at once (zero padding)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Split:
    """One named split: images (uint8, NCHW) and labels resident on the device."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    pre: Preprocess

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def subset(self, idx: torch.Tensor, name: str | None = None) -> Split:
        idx = idx.to(self.device)
        return replace(self, name=name or self.name, x=self.x[idx], y=self.y[idx])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)``: inputs preprocessed on the device, in a seeded order."""
        for x, y, _ in self.indexed_batches(
            batch_size, shuffle=shuffle, augment=augment, generator=generator, drop_last=drop_last
        ):
            yield x, y

    def indexed_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like :meth:`batches`, plus each sample's position in the split, to look up per-sample
        values a method keeps beside the split (LoTUS's forget/retain flag)."""
        n = len(self)
        order = torch.randperm(n, generator=generator, device=self.device) if shuffle else None
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            if order is None:  # in order: slices are views, no gather
                end = min(start + batch_size, n)
                sel = torch.arange(start, end, device=self.device)
                x, y = self.x[start:end], self.y[start:end]
            else:
                sel = order[start : start + batch_size]
                x, y = self.x[sel], self.y[sel]
            yield self.pre(x, train=augment, generator=generator), y, sel

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)


def concat(a: Split, b: Split, name: str) -> tuple[Split, torch.Tensor]:
    """Union of two splits plus a flag per sample (1 = from ``a``): LoTUS/Bad Teacher mix D_f, D_r."""
    flags = torch.cat([torch.ones(len(a), device=a.device), torch.zeros(len(b), device=b.device)])
    return replace(a, name=name, x=torch.cat([a.x, b.x]), y=torch.cat([a.y, b.y])), flags


class SplitAccessError(UnlearnkitError):
    """A method read a split it did not declare (its leaderboard access level would be a lie)."""


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

    @property
    def forget(self) -> Split:
        return self.get("forget")

    @property
    def retain(self) -> Split:
        return self.get("retain")

    @property
    def unseen(self) -> Split:
        return self.get("unseen")

    @property
    def test(self) -> Split:
        return self.get("test")
