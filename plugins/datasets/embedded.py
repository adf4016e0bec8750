"""Datasets that need no files: scikit-learn's real 8x8 digits, and a tiny synthetic set for tests.

Both are fixed: their train/test split never depends on the run seed, so the same seed gives the
same forget set on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from unlearnkit import Augment, Dataset, Options, RawDataset

from .base import channel_stats

DIGITS_TEST_FRACTION = 0.2


def stratified_tail_split(y: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean test mask: the last ``fraction`` of each class in dataset order (rounded, at least one)."""
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_test = min(len(idx) - 1, max(1, int(np.floor(len(idx) * fraction + 0.5))))
        test[idx[len(idx) - n_test :]] = True
    return test


class Digits(Dataset):
    """1,797 real handwritten digits (UCI, bundled with scikit-learn): CPU-sized but not synthetic."""

    name = "digits"
    default = True  # what `unlearnkit run` uses when none is named
    algorithm_version = 1
    summary = "scikit-learn's 1,797 real 8x8 handwritten digits, fixed stratified 80/20 split (embedded)."
    embedded = True
    augment = Augment(crop_padding=1)
    default_train_recipe = "quick"

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # 0..16 grey levels -> 0..255, rounding half up
        x = np.floor(bunch.images.astype(np.float64) * 255.0 / 16.0 + 0.5).astype(np.uint8)[:, None]
        y = bunch.target.astype(np.int64)
        test = stratified_tail_split(y, DIGITS_TEST_FRACTION)
        x_train, y_train = x[~test], y[~test]
        mean, std = channel_stats(x_train)
        return RawDataset(x_train, y_train, x[test], y[test], [str(d) for d in range(10)], mean, std)


class SyntheticOptions(Options):
    num_classes: int = Field(4, ge=2, le=1000, description="Number of classes.")
    per_class_train: int = Field(40, ge=2, description="Training images per class.")
    per_class_test: int = Field(20, ge=1, description="Test images per class.")
    size: int = Field(8, ge=4, le=256, description="Image height and width in pixels.")
    channels: int = Field(1, ge=1, le=3, description="Channels per image, 1 to 3 (1: grey, 3: RGB).")
    noise: float = Field(
        0.5, ge=0, le=5, description="Pixel noise around each class's pattern (keeps test accuracy < 1)."
    )


class Synthetic(Dataset):
    """A class pattern plus Gaussian noise per image: learnable, memorisable, imperfect on unseen
    images, and identical on every machine (fixed numpy seeds)."""

    name = "synthetic"
    algorithm_version = 1
    summary = "Tiny deterministic synthetic images (default 4 classes, 1x8x8, 40+20 per class) for tests (embedded)."
    embedded = True
    augment = Augment()
    default_train_recipe = "fast"
    Options = SyntheticOptions

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        o = self.options
        assert isinstance(o, SyntheticOptions)
        shape = (o.channels, o.size, o.size)
        # separate streams: changing the train size does not change the patterns or the test images
        proto_rng, train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(20240).spawn(3))
        protos = proto_rng.uniform(0.0, 1.0, size=(o.num_classes, *shape))

        def draw(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
            y = np.tile(np.arange(o.num_classes, dtype=np.int64), per_class)  # classes interleaved, like real data
            x = protos[y] + rng.normal(0.0, o.noise, size=(len(y), *shape))
            return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), y

        x_train, y_train = draw(train_rng, o.per_class_train)
        x_test, y_test = draw(test_rng, o.per_class_test)
        mean, std = channel_stats(x_train)
        names = [f"class{k}" for k in range(o.num_classes)]
        return RawDataset(x_train, y_train, x_test, y_test, names, mean, std)
