"""Readers for the MNIST family's two distribution formats: IDX files (plain or gzipped, as
published and as torchvision stores them) and Keras's ``mnist.npz``.

Both give the official 60,000/10,000 split in the original order.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
from pathlib import Path

import numpy as np

from .base import Splits, integers

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
_MAX_INFLATE = 1032  # deflate's largest compression ratio: no .gz holds more than this times its size


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as an array; gzip is detected from the content, not the name.

    Only what the header declares is read, and a file holding more is refused: a small .gz that
    inflates to gigabytes past its header is never decompressed into memory.
    """
    with open(path, "rb") as f:
        head = f.read(2)
    gzipped = head == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_DTYPES:
            raise ValueError(f"{path.name} is not an IDX file (bad magic number)")
        ndim = magic[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        dtype = np.dtype(_IDX_DTYPES[magic[2]])
        count = math.prod(dims)
        size = count * dtype.itemsize
        room = path.stat().st_size * (_MAX_INFLATE if gzipped else 1)
        if size > room:
            raise ValueError(f"{path.name} is truncated: header says {dims}, the file cannot hold that many values")
        data = _read_at_most(f, size)
        if len(data) < size:
            raise ValueError(f"{path.name} is truncated: header says {dims}, file holds {len(data)} bytes of data")
        if f.read(1):
            raise ValueError(f"{path.name} holds more data than its header's {dims} declares")
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_at_most(f: io.BufferedIOBase, size: int, chunk: int = 1 << 24) -> bytes:
    """Up to ``size`` bytes of ``f``, read in chunks, so memory follows what is there, not what is declared."""
    parts, left = [], size
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


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


def missing_idx_files(folder: Path) -> list[str]:
    """The official names (``train-images-idx3-ubyte[.gz]``) of the IDX files ``folder`` lacks."""
    return [
        f"{idx_candidates(key)[0]}[.gz]"
        for key in IDX_FILES
        if not any((folder / n).is_file() for n in idx_candidates(key))
    ]


def _images(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (N, H, W), got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _labels(arr: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = integers(arr, what).reshape(-1)
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
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path.name} is a single .npy array, not an .npz archive of {', '.join(NPZ_KEYS)}")
    with z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path.name} lacks {', '.join(missing)} (expected keys {', '.join(NPZ_KEYS)})")
        x_train = _images(_member(z, "x_train", path), f"{path.name}:x_train")
        x_test = _images(_member(z, "x_test", path), f"{path.name}:x_test")
        y_train = _labels(_member(z, "y_train", path), len(x_train), f"{path.name}:y_train")
        y_test = _labels(_member(z, "y_test", path), len(x_test), f"{path.name}:y_test")
    return Splits(x_train, y_train, x_test, y_test)


def _member(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an .npz; numpy allocates what its header declares before reading, so a crafted
    header (terabytes) is a MemoryError, reported as a damaged file."""
    try:
        return z[key]
    except MemoryError as err:
        raise ValueError(f"{path.name}:{key} declares an array larger than memory ({err})") from None
