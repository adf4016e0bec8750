"""Readers for the MNIST family's two distribution formats: IDX files (plain or gzipped, as
published and as torchvision stores them) and Keras's ``mnist.npz``.

Both give the official 60,000/10,000 split in the original order.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .base import Splits

# IDX type byte -> numpy dtype (big-endian): http://yann.lecun.com/exdb/mnist/
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# split key -> (file stem, IDX rank tag) of the four official files
IDX_FILES = {
    "x_train": ("train-images", "idx3"),
    "y_train": ("train-labels", "idx1"),
    "x_test": ("t10k-images", "idx3"),
    "y_test": ("t10k-labels", "idx1"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as an array; gzip is detected from the content, not the name."""
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path.name} is not an IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{path.name} is truncated: header says {dims}, file holds {len(data) - offset} bytes")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def idx_candidates(key: str) -> list[str]:
    """Accepted names of one official file: ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``, each optionally ``.gz``."""
    stem, rank = IDX_FILES[key]
    names = [f"{stem}-{rank}-ubyte", f"{stem}.{rank}-ubyte"]
    return [n + suffix for n in names for suffix in ("", ".gz")]


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain preferred over gzipped), or None if any is missing."""
    found: dict[str, Path] = {}
    for key in IDX_FILES:
        path = next((folder / n for n in idx_candidates(key) if (folder / n).is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def _images(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (N, H, W), got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _labels(arr: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(arr).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"{what} has {len(arr)} labels for {n} images")
    return arr.astype(np.int64)


def read_idx_splits(files: dict[str, Path]) -> Splits:
    """The four IDX files as official splits, images (N, 1, H, W)."""
    x_train = _images(read_idx(files["x_train"]), files["x_train"].name)
    x_test = _images(read_idx(files["x_test"]), files["x_test"].name)
    y_train = _labels(read_idx(files["y_train"]), len(x_train), files["y_train"].name)
    y_test = _labels(read_idx(files["y_test"]), len(x_test), files["y_test"].name)
    return Splits(x_train, y_train, x_test, y_test)


def read_npz_splits(path: Path) -> Splits:
    """Keras's ``mnist.npz`` layout: arrays x_train, y_train, x_test, y_test."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path.name} lacks {', '.join(missing)} (expected keys {', '.join(NPZ_KEYS)})")
        x_train = _images(z["x_train"], f"{path.name}:x_train")
        x_test = _images(z["x_test"], f"{path.name}:x_test")
        y_train = _labels(z["y_train"], len(x_train), f"{path.name}:y_train")
        y_test = _labels(z["y_test"], len(x_test), f"{path.name}:y_test")
    return Splits(x_train, y_train, x_test, y_test)
