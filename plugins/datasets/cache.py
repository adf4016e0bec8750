"""Decoded datasets cached as one ``.npz`` per source, so only the first load pays for decoding.

A cache file is named by a key over the source files' paths, sizes and modification times (plus
any decoding options), written to a temporary file and renamed into place, and checked when read:
a truncated or corrupt file (zip CRC, shapes, dtypes) is ignored and rebuilt. The optional
RawDataset fields (``groups``, ``x_unseen``/``y_unseen``) are stored only when set, so files
written before they existed still read back as they were (no version bump needed). Datasets whose
images are decoded on demand (ImageArray) are not cached here: there is nothing decoded to keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from unlearnkit import RawDataset

CACHE_VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_OPTIONAL = ("groups", "x_unseen", "y_unseen")  # stored only when set
# What reading a damaged .npz can raise; anything else is a bug and keeps its traceback.
_BAD_CACHE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, struct.error)
T = TypeVar("T")


def cache_key(label: str, files: Iterable[Path], extra: Mapping[str, Any] | None = None) -> str:
    """Identity of a decoded dataset: its source files' absolute paths, sizes and mtimes, and ``extra``.

    Content is not hashed (CIFAR-10 would cost a second read); a replaced or edited file changes
    its size or mtime, which is enough to invalidate.
    """
    h = hashlib.sha256(f"v{CACHE_VERSION}|{label}|{json.dumps(extra or {}, sort_keys=True, default=str)}\n".encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.absolute()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cache_path(cache_dir: Path, label: str, key: str) -> Path:
    return Path(cache_dir) / f"{label}-{key}.npz"


def read_npz(
    path: Path, key: str, build: Callable[[np.lib.npyio.NpzFile], T], bad: tuple[type[Exception], ...]
) -> T | None:
    """``build`` over the ``.npz`` at ``path`` while it is open; None when the file is absent, was
    written for another ``key``, or reading it raises one of ``bad`` (truncated, corrupt, old)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return build(z) if str(z["key"]) == key else None
    except bad:
        return None


def read_cache(path: Path, key: str) -> RawDataset | None:
    """The cached dataset, or None when the file is absent, stale or does not load cleanly."""
    raw = read_npz(path, key, _raw_dataset, _BAD_CACHE)
    if raw is None or len(raw.mean) != raw.image_shape[0] or len(raw.std) != raw.image_shape[0]:
        return None
    return raw


def _raw_dataset(z: np.lib.npyio.NpzFile) -> RawDataset:
    optional = {name: z[name] for name in _OPTIONAL if name in z.files}
    return RawDataset(
        x_train=z["x_train"],
        y_train=z["y_train"],
        x_test=z["x_test"],
        y_test=z["y_test"],
        class_names=[str(c) for c in z["class_names"]],
        mean=tuple(float(v) for v in z["mean"]),
        std=tuple(float(v) for v in z["std"]),
        **optional,
    )


def write_cache(path: Path, key: str, raw: RawDataset) -> bool:
    """Write atomically (temporary file, then rename); False if the cache dir is not writable or the
    images are decoded on demand (an ImageArray is never materialised just to be cached)."""
    if not all(isinstance(x, np.ndarray) for x in (raw.x_train, raw.x_test, raw.x_unseen) if x is not None):
        return False
    optional = {name: np.ascontiguousarray(getattr(raw, name)) for name in _OPTIONAL if getattr(raw, name) is not None}
    if "groups" in optional and optional["groups"].dtype.kind not in "biuUS":
        optional["groups"] = optional["groups"].astype(str)  # object arrays would need pickle
    return save_npz_atomically(
        path,
        key=np.array(key),
        **{name: np.ascontiguousarray(getattr(raw, name)) for name in _ARRAYS},
        class_names=np.array(raw.class_names, dtype=str),
        mean=np.array(raw.mean, dtype=np.float64),
        std=np.array(raw.std, dtype=np.float64),
        **optional,
    )


def save_npz_atomically(path: Path, **arrays: np.ndarray) -> bool:
    """``np.savez`` into a temporary file beside ``path``, then rename it over ``path``, so a reader
    never sees half a file; False, leaving nothing behind, where the folder is not writable."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as the data it came from
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False


def cached(cache_dir: Path, label: str, key: str, build: Callable[[], RawDataset]) -> RawDataset:
    """Return the cached dataset for ``key``, building and caching it first if needed."""
    path = cache_path(cache_dir, label, key)
    raw = read_cache(path, key)
    if raw is None:
        raw = build()
        write_cache(path, key, raw)
    return raw
