"""SVHN (cropped digits): 32x32 RGB house-number digits, the official 73,257/26,032 train/test split.

Read from torchvision's ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB v5, via scipy); the
``extra`` split is not used. The files label the digit 0 as 10; here it is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unlearnkit import Augment

from .base import FileDataset, Source, Splits, integers, lacking, load_mat, pixels

MAT_FILES = ("train_32x32.mat", "test_32x32.mat")


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file: X (32, 32, 3, N) -> uint8 (N, 3, 32, 32); y (N, 1) with 10 -> 0."""
    mat = load_mat(path, variable_names=("X", "y"))
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path.name} lacks the variables X and y")
    x = np.asarray(mat["X"])
    if x.ndim != 4 or x.shape[2] != 3:
        raise ValueError(f"{path.name}: X has shape {x.shape}, expected (H, W, 3, N)")
    x = np.ascontiguousarray(pixels(x, f"{path.name}: X").transpose(3, 2, 0, 1))
    y = integers(mat["y"], f"{path.name}: y").reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise ValueError(f"{path.name} has {len(y)} labels for {len(x)} images")
    return x, np.where(y == 10, 0, y)


def read_svhn_splits(folder: Path) -> Splits:
    (x_train, y_train), (x_test, y_test) = (read_mat(folder / name) for name in MAT_FILES)
    return Splits(x_train, y_train, x_test, y_test)


class Svhn(FileDataset):
    name = "svhn"
    algorithm_version = 1
    summary = "SVHN cropped digits, 32x32 RGB, 73k/26k (train_32x32.mat + test_32x32.mat; download)."
    title = "SVHN"
    wants = "train_32x32.mat and test_32x32.mat"
    looks_for = "train_32x32.mat + test_32x32.mat (or in svhn/)"
    class_names = tuple(str(d) for d in range(10))
    mean = (0.4377, 0.4438, 0.4728)  # the commonly published SVHN training-set statistics
    std = (0.1980, 0.2010, 0.1970)
    augment = Augment(crop_padding=4)  # house numbers must not flip

    def find(self, root: Path) -> Source | None:
        for folder in (root, root / "svhn", root / "SVHN"):
            files = [folder / name for name in MAT_FILES]
            if all(p.is_file() for p in files):
                return Source("mat", folder, lambda f=files: list(f), lambda d=folder: read_svhn_splits(d))
        return None

    def incomplete(self, root: Path) -> str:
        """A folder holding one of the two .mat files: which one it lacks."""
        return " ".join(
            filter(None, (lacking(f, MAT_FILES, ".mat files") for f in (root, root / "svhn", root / "SVHN")))
        )

    def fetch(self, root: Path) -> None:
        import torchvision.datasets

        for split in ("train", "test"):
            torchvision.datasets.SVHN(root=str(root), split=split, download=True)
