"""CIFAR-20: CIFAR-100's images with its 20 coarse labels (superclasses) as the classes, and the
100 fine labels kept as every image's sub-class (``RawDataset.subclasses``), the setting of
sub-class forgetting (``--forget subclass:rocket``).

Only the python-version archive carries both labels (``cifar-100-python/train``, ``test``,
``meta``), so that is the one layout read. Nothing is downloaded: a missing file is one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import unlearnkit as uk
from unlearnkit import DataError, RawDataset

from .base import READ_ERRORS, Source, Splits, integers
from .cifar import CIFAR100_CLASSES, Cifar10, _Cifar, label_names, read_pickle
from .download import one_line

CIFAR20_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)  # fmt: skip


def _names(meta: dict, key: str, expected: tuple[str, ...]) -> list[str]:
    """The archive's own names (read_pickle gives str keys, whatever the file held), else ours."""
    return label_names(meta, key) or list(expected)


def _fine_labels(path: Path, n: int, k: int) -> np.ndarray:
    """The fine labels of the batch at ``path``: one per image, each in 0..k-1, as a scenario indexes names by them."""
    d = read_pickle(path)
    if "fine_labels" not in d:
        raise ValueError(f"{path.name} lacks 'fine_labels'")
    y = integers(d["fine_labels"], f"{path.name}'s fine_labels").astype(np.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{path.name} has {len(y)} fine labels for {n} images")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ValueError(f"{path.name}'s fine labels run {int(y.min())}..{int(y.max())}, expected 0..{k - 1}")
    return y


class Cifar20(_Cifar):
    """CIFAR-100 relabelled by superclass; the fine class of every image is its sub-class."""

    name = "cifar20"
    algorithm_version = 1
    summary = (
        "CIFAR-100 by its 20 coarse superclasses, fine classes as sub-classes (cifar-100-python/ pickles; no download)."
    )
    title = "CIFAR-20"
    wants = "cifar-100-python/ (train, test, meta)"
    looks_for = "cifar-100-python/{train,test,meta} (the python-version archive, which holds the coarse labels)"
    class_names = CIFAR20_CLASSES
    mean, std = Cifar10.mean, Cifar10.std  # as the CIFAR-100 default (the LoTUS code's constants)
    pickle_dir = "cifar-100-python"
    train_batches = ("train",)
    test_batches = ("test",)
    label_key = "coarse_labels"
    downloadable = False
    official_tarball = "cifar-100-python.tar.gz"
    Options = uk.Options

    def incomplete(self, root: Path) -> str:
        """Only the pickled batches are read: a class-folder tree is no partial CIFAR-20."""
        return " ".join(part for part in (self.missing_batches(root), self.unextracted(root)) if part)

    def find(self, root: Path) -> Source | None:
        for batches in (root / self.pickle_dir, root):
            files = [batches / n for n in ("train", "test")]
            if all(p.is_file() for p in files):
                return Source(
                    "pickle",
                    batches,
                    lambda f=files: list(f),
                    lambda b=batches, f=files: self.read_batches(b, f[:1], f[1:]),
                )
        return None

    def read_batches(self, batches: Path, train: list[Path], test: list[Path]) -> Splits:
        splits = super().read_batches(batches, train, test)
        meta = read_pickle(batches / "meta") if (batches / "meta").is_file() else {}
        return Splits(
            splits.x_train,
            splits.y_train,
            splits.x_test,
            splits.y_test,
            _names(meta, "coarse_label_names", CIFAR20_CLASSES),
        )

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        raw = super().load(data_dir, cache_dir)
        source = self.locate(data_dir)
        assert source is not None  # super().load found it (no download)
        try:
            meta = read_pickle(source.where / "meta") if (source.where / "meta").is_file() else {}
            names = _names(meta, "fine_label_names", CIFAR100_CLASSES)
            train, test = source.files()
            train_fine = _fine_labels(train, len(raw.y_train), len(names))
            test_fine = _fine_labels(test, len(raw.y_test), len(names))
        except READ_ERRORS as err:
            what = f"{self.title} in {source.where}"
            raise DataError(f"Cannot read {what}: {one_line(err)}. Check or replace the file(s).") from None
        return dataclasses.replace(raw, subclasses=train_fine, subclasses_test=test_fine, subclass_names=names)
