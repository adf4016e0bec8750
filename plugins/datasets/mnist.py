"""MNIST and Fashion-MNIST: 28x28 greyscale, 10 classes, the official 60,000/10,000 split.

Both are read from Keras's ``.npz`` or the four IDX files (torchvision's ``<Name>/raw/`` layout or
loose in the folder); Fashion-MNIST also from the Debian package ``dataset-fashion-mnist``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from unlearnkit import Augment, DataError, RawDataset

from .base import FileDataset, Source
from .idx import IDX_FILES, find_idx_files, missing_idx_files, read_idx_splits, read_npz_splits

_IDX_LAYOUT = "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"


class _MnistFamily(FileDataset):
    """Shared finder: an ``.npz`` first (one file, lossless), then IDX files in the known sub-folders."""

    npz_names: ClassVar[tuple[str, ...]] = ()
    idx_folders: ClassVar[tuple[str, ...]] = ()  # relative to the root; "" is the root itself
    torchvision_class: ClassVar[str] = ""
    augment = Augment(crop_padding=2)  # the paper's pad-4 crop at 32 px, scaled to 28 px; digits must not flip
    balanced: ClassVar[bool] = False  # Fashion-MNIST has exactly 6,000 training images per class, MNIST does not

    def find(self, root: Path) -> Source | None:
        for name in self.npz_names:
            path = root / name
            if path.is_file():
                return Source("npz", path, lambda p=path: [p], lambda p=path: read_npz_splits(p))
        for sub in self.idx_folders:
            files = find_idx_files(root / sub) if (root / sub).is_dir() else None
            if files is not None:
                return Source("idx", root / sub, lambda f=files: list(f.values()), lambda f=files: read_idx_splits(f))
        return None

    def incomplete(self, root: Path) -> str:
        """A folder holding some of the four IDX files (a copy cut short): which ones it lacks."""
        for sub in self.idx_folders:
            missing = missing_idx_files(root / sub)
            if 0 < len(missing) < len(IDX_FILES):
                held = len(IDX_FILES) - len(missing)
                return f"{root / sub} lacks {', '.join(missing)} (it holds {held} of the {len(IDX_FILES)} IDX files)."
        return ""

    def fetch(self, root: Path) -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, self.torchvision_class)(root=str(root), train=True, download=True)

    def decode(self, source: Source) -> RawDataset:
        raw = super().decode(source)
        if len(raw.y_train) == 60000:  # the two share file names: catch one passed off as the other
            is_balanced = bool(np.all(np.bincount(raw.y_train, minlength=10) == 6000))
            if is_balanced != self.balanced:
                other = "Fashion-MNIST" if is_balanced else "MNIST"
                raise DataError(
                    f"The files in {source.where} look like {other}, not {self.title} "
                    f"(class counts {'are' if is_balanced else 'are not'} exactly 6,000 each). "
                    f"Point --data-dir at the {self.title} files."
                )
        return raw


class Mnist(_MnistFamily):
    name = "mnist"
    algorithm_version = 1
    summary = "MNIST handwritten digits, 28x28 grey, 60k/10k (mnist.npz or IDX files; torchvision download)."
    title = "MNIST"
    wants = "mnist.npz or the four MNIST IDX files (train-images-idx3-ubyte.gz, ...)"
    looks_for = f"mnist.npz, MNIST/raw/{_IDX_LAYOUT} or those four files directly"
    class_names = tuple(str(d) for d in range(10))
    mean = (0.1307,)
    std = (0.3081,)
    npz_names = ("mnist.npz",)
    idx_folders = ("MNIST/raw", "mnist", "")
    torchvision_class = "MNIST"


class FashionMnist(_MnistFamily):
    name = "fashion_mnist"
    algorithm_version = 1
    summary = "Fashion-MNIST clothing, 28x28 grey, 60k/10k (IDX files, Debian dataset-fashion-mnist, download)."
    title = "Fashion-MNIST"
    wants = "the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...) or fashion-mnist.npz"
    looks_for = f"fashion-mnist.npz, FashionMNIST/raw/{_IDX_LAYOUT}, fashion-mnist/ or those four files directly"
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    mean = (0.2860,)
    std = (0.3530,)
    npz_names = ("fashion-mnist.npz", "fashion_mnist.npz")
    idx_folders = ("FashionMNIST/raw", "fashion-mnist", "fashion_mnist", "")
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    install_hint = "run `apt-get install dataset-fashion-mnist` (puts them in /usr/share/datasets/fashion-mnist/)"
    torchvision_class = "FashionMNIST"
    balanced = True
