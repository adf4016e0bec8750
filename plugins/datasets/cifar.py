"""CIFAR-10 and CIFAR-100: 32x32 RGB, the official 50,000/10,000 split in the original order.

Sources, in order of preference (canonical and lossless first): torchvision's pickled batches,
then (CIFAR-10) the ``cifar10-images.tar.gz`` archive of JPEGs read straight from the tar, then a
``train/<class>/`` + ``test/<class>/`` image tree (in the folder or one level below it).
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from unlearnkit import Augment, RawDataset

from .base import DownloadOptions, FileDataset, Source, Splits, integers, lacking, pixels
from .folder import decode_listing, decode_tar, find_tree, list_tree, listed, subdirs, tree_at

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR10_ARCHIVES = ("cifar10-images.tar.gz", "cifar10-images.tgz", "cifar10-images.tar")
SIZE = (32, 32)

# The only globals a CIFAR pickle needs (numpy arrays); anything else in a file is refused.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only: a pickle in a user's folder cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")
        return super().find_class(module, name)


# What the allowed numpy calls raise on crafted arguments (a 1 TiB shape, a dtype of 1).
_CRAFTED = (TypeError, AttributeError, OverflowError, MemoryError, RecursionError)


def read_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python-version batch as a dict with str keys (the files have bytes keys)."""
    with open(path, "rb") as f:
        try:
            d = _ArrayUnpickler(f, encoding="bytes").load()
        except _CRAFTED as err:
            raise pickle.UnpicklingError(f"{path.name} is not a CIFAR pickle ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path.name} is not a CIFAR batch (holds a {type(d).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def label_names(meta: dict[str, Any], key: str) -> list[str]:
    """The names a ``meta`` pickle lists under ``key`` ([] when absent); anything but a list of strings is refused."""
    raw = meta.get(key, [])
    if not isinstance(raw, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in raw):
        raise ValueError(f"meta's {key} is not a list of names")
    return [n.decode() if isinstance(n, bytes) else n for n in raw]


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path)
    if "data" not in d or label_key not in d:
        raise ValueError(f"{path.name} lacks '{label_key}' or 'data'")
    x = pixels(d["data"], f"{path.name}'s data").reshape(-1, 3, *SIZE)  # rows are R, G, B planes
    y = integers(d[label_key], f"{path.name}'s {label_key}").astype(np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{path.name} has {len(y)} labels for {len(x)} images")
    return x, y


def read_pickled_splits(train: list[Path], test: list[Path], label_key: str) -> Splits:
    """The official batches, concatenated in file order (the canonical image order)."""
    parts = [[_batch(p, label_key) for p in files] for files in (train, test)]
    (x_tr, y_tr), (x_te, y_te) = ((np.concatenate([x for x, _ in b]), np.concatenate([y for _, y in b])) for b in parts)
    return Splits(x_tr, y_tr, x_te, y_te)


class _Cifar(FileDataset):
    """Shared finder: pickled batches, then an archive, then a class-folder tree."""

    pickle_dir: ClassVar[str] = ""
    train_batches: ClassVar[tuple[str, ...]] = ()
    test_batches: ClassVar[tuple[str, ...]] = ()
    label_key: ClassVar[str] = "labels"
    archives: ClassVar[tuple[str, ...]] = ()
    torchvision_class: ClassVar[str] = ""
    official_tarball: ClassVar[str] = ""  # what torchvision downloads, extracted into pickle_dir
    augment = Augment(crop_padding=4, flip=False)  # the paper: RandomCrop(32, padding=4), no flip

    def find(self, root: Path) -> Source | None:
        for batches in (root / self.pickle_dir, root):  # the data dir may be the batches folder itself
            train = [batches / n for n in self.train_batches]
            test = [batches / n for n in self.test_batches]
            if all(p.is_file() for p in train + test):
                return Source(
                    "pickle",
                    batches,
                    lambda f=train + test: list(f),
                    lambda b=batches, tr=train, te=test: self.read_batches(b, tr, te),
                )
        for name in self.archives:
            path = root / name
            if path.is_file():
                return Source(
                    "tar",
                    path,
                    lambda p=path: [p],
                    lambda p=path: decode_tar(p, self.class_names, mode="RGB", size=SIZE),
                )
        tree = find_tree(root, self.class_names)
        if tree is not None:
            listing = functools.cache(lambda: list_tree(tree, self.class_names))  # listed on load only, once
            return Source(
                "folder", tree.root, lambda: listing().files(), lambda: decode_listing(listing(), mode="RGB", size=SIZE)
            )
        return None

    def read_batches(self, batches: Path, train: list[Path], test: list[Path]) -> Splits:
        return read_pickled_splits(train, test, self.label_key)

    def incomplete(self, root: Path) -> str:
        """What ``root`` holds of this dataset in part: some of the batches, the official tarball not yet
        extracted, or a class-folder tree whose class folders are not this dataset's."""
        found = [self.missing_batches(root), self.unextracted(root), self.tree_mismatch(root)]
        return " ".join(part for part in found if part)

    def missing_batches(self, root: Path) -> str:
        """A batches folder missing some batches (a copy cut short): which ones."""
        return lacking(root / self.pickle_dir, (*self.train_batches, *self.test_batches), "batches")

    def unextracted(self, root: Path) -> str:
        """The official ``<pickle_dir>.tar.gz`` torchvision downloads, left packed (it is read only extracted)."""
        if (root / self.pickle_dir).is_dir():
            return ""
        packed = root / self.official_tarball
        if not self.official_tarball or not packed.is_file():
            return ""
        return f"{packed} is there but not extracted: run `tar -xzf {packed} -C {root}` to get {self.pickle_dir}/."

    def tree_mismatch(self, root: Path) -> str:
        """A train/ + test/ tree (here or one folder below) whose class folders are not this dataset's."""
        wanted = set(self.class_names)
        for folder in [root] + [root / name for name in sorted(subdirs(root))]:
            tree = tree_at(folder)
            if tree is None:
                continue
            problems = []
            for split, have in ((tree.train, tree.train_classes), (tree.test, tree.test_classes)):
                if have == wanted:
                    continue
                missing, extra = sorted(wanted - have), sorted(have - wanted)
                parts = [f"lacks {listed(missing)}"] if missing else []
                parts += [f"has the unexpected {listed(extra)}"] if extra else []
                problems.append(f"{split}/ {' and '.join(parts)}")
            if problems:
                return (
                    f"Found a class-folder tree in {folder}, but {'; '.join(problems)} "
                    f"(a {self.title} tree has exactly its {len(wanted)} class folders: {listed(list(self.class_names))})."
                )
        return ""

    def fetch(self, root: Path) -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, self.torchvision_class)(root=str(root), train=True, download=True)


class Cifar10(_Cifar):
    name = "cifar10"
    algorithm_version = 1
    summary = "CIFAR-10, 32x32 RGB, 10 classes, 50k/10k (cifar10-images.tar.gz, pickles or class folders; download)."
    title = "CIFAR-10"
    wants = "cifar10-images.tar.gz or cifar-10-batches-py/"
    looks_for = "cifar-10-batches-py/, cifar10-images.tar.gz or train/<class>/ + test/<class>/ image folders"
    class_names = CIFAR10_CLASSES
    mean = (0.4914, 0.4822, 0.4465)  # the values the paper's code uses
    std = (0.2023, 0.1994, 0.2010)
    pickle_dir = "cifar-10-batches-py"
    train_batches = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_batches = ("test_batch",)
    archives = CIFAR10_ARCHIVES
    torchvision_class = "CIFAR10"
    official_tarball = "cifar-10-python.tar.gz"


class Cifar100Options(DownloadOptions):
    normalization: Literal["cifar10", "cifar100"] = Field(
        "cifar10",
        description="Normalisation constants: CIFAR-10's, as the LoTUS code uses for both CIFAR datasets (the "
        "paper's setting), or CIFAR-100's own channel statistics.",
    )


class Cifar100(_Cifar):
    name = "cifar100"
    algorithm_version = 2
    Options = Cifar100Options
    summary = "CIFAR-100, 32x32 RGB, 100 fine classes, 50k/10k (cifar-100-python/ pickles or class folders; download)."
    title = "CIFAR-100"
    wants = "cifar-100-python/ (train, test, meta) or train/<class>/ + test/<class>/ folders"
    looks_for = "cifar-100-python/{train,test} or train/<class>/ + test/<class>/ image folders of the 100 fine classes"
    class_names = CIFAR100_CLASSES
    mean = (0.5071, 0.4865, 0.4409)  # CIFAR-100's own statistics (normalization="cifar100")
    std = (0.2673, 0.2564, 0.2762)
    pickle_dir = "cifar-100-python"
    train_batches = ("train",)
    test_batches = ("test",)
    label_key = "fine_labels"
    torchvision_class = "CIFAR100"
    official_tarball = "cifar-100-python.tar.gz"

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        raw = super().load(data_dir, cache_dir)
        if self.options.normalization == "cifar10":  # type: ignore[attr-defined]
            return dataclasses.replace(raw, mean=Cifar10.mean, std=Cifar10.std)
        return raw

    def read_batches(self, batches: Path, train: list[Path], test: list[Path]) -> Splits:
        """The batches, with class names from ``meta`` when it is there (the authoritative list)."""
        splits = super().read_batches(batches, train, test)
        meta = batches / "meta"
        if not meta.is_file():
            return splits
        names = label_names(read_pickle(meta), "fine_label_names")
        if len(names) != len(CIFAR100_CLASSES):
            return splits
        return Splits(splits.x_train, splits.y_train, splits.x_test, splits.y_test, names)
