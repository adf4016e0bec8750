"""Decoded datasets cached as one ``.npz`` per source, so only the first load pays for decoding.

A cache file is named by a key over the source files' real paths (symlinks resolved), sizes and
modification times (plus any decoding options), written to a temporary file and renamed into
place, and checked when read: a truncated or corrupt file (zip CRC, shapes, dtypes) is ignored and
rebuilt. Each file records the stamps it was keyed by (and the host that read them), so writing a
new one removes this host's entries of the same dataset that can never be read again (a source
file moved, replaced or deleted, as a per-job scratch copy is) and temporary files a killed writer
left; without that, every new copy of CIFAR-10's archive kept another 185 MB. The optional
RawDataset fields (``groups``, ``x_unseen``/``y_unseen``) are stored only when set. Datasets whose
images are decoded on demand (ImageArray) are not cached here: there is nothing decoded to keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from unlearnkit import RawDataset

CACHE_VERSION = 2  # 2: real paths in the key, the stamps recorded in the file
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_OPTIONAL = ("groups", "x_unseen", "y_unseen")  # stored only when set
# What reading a damaged .npz can raise; anything else is a bug and keeps its traceback.
# MemoryError: a crafted .npy header can declare terabytes, which numpy tries to allocate.
_BAD_CACHE = (OSError, ValueError, KeyError, TypeError, EOFError, MemoryError, zipfile.BadZipFile, struct.error)
ABANDONED_TMP_S = 3600  # a temporary file untouched this long was left by a writer that died
T = TypeVar("T")


@dataclass(frozen=True)
class CacheKey:
    """Which decoded dataset a cache file holds: ``digest`` names the file, ``stamps`` (real path,
    size, mtime of each source file) say whether its sources are still as they were."""

    digest: str
    stamps: tuple[tuple[str, int, int], ...]

    def current(self) -> bool:
        """Whether every source file is still there with the size and mtime it was keyed by."""
        for path, size, mtime_ns in self.stamps:
            try:
                st = os.stat(path)
            except OSError:
                return False
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                return False
        return True


def cache_key(label: str, files: Iterable[Path], extra: Mapping[str, Any] | None = None) -> CacheKey:
    """Identity of a decoded dataset: its source files' real paths, sizes and mtimes, and ``extra``.

    Content is not hashed (CIFAR-10 would cost a second read); a replaced or edited file changes
    its size or mtime, which is enough to invalidate. Links to one file share its entry.
    """
    h = hashlib.sha256(f"v{CACHE_VERSION}|{label}|{json.dumps(extra or {}, sort_keys=True, default=str)}\n".encode())
    stamps = []
    folders: dict[str, str] = {}  # each folder resolved once: an image folder lists thousands of files
    for path in files:  # strings, not Paths: 100k images' Path objects alone cost seconds
        text = os.fspath(path)
        st = os.lstat(text)  # a regular file's lstat is its stat: one call per file, as before
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(text)
            st = os.stat(real)
        else:
            folder, name = os.path.split(text)
            if folder not in folders:
                folders[folder] = os.path.realpath(folder or ".")
            real = os.path.join(folders[folder], name)
        stamps.append((real, st.st_size, st.st_mtime_ns))
        h.update(f"{real}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))  # any file name
    return CacheKey(h.hexdigest()[:20], tuple(stamps))


def cache_path(cache_dir: Path, label: str, digest: str) -> Path:
    return Path(cache_dir) / f"{label}-{digest}.npz"


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
    return raw if raw is not None and plausible(raw) else None


def plausible(raw: RawDataset) -> bool:
    """Whether a cached dataset is one a loader could have built: labels in 0..K-1, one finite mean and
    one positive std per channel. A file swapped into the cache dir (its name, hence its key, is
    public) must not feed training what no source file could."""
    k, channels = len(raw.class_names), raw.image_shape[0]
    for y in (raw.y_train, raw.y_test, raw.y_unseen):
        if y is not None and len(y) and (int(np.min(y)) < 0 or int(np.max(y)) >= k):
            return False
    if len(raw.mean) != channels or len(raw.std) != channels:
        return False
    return bool(np.all(np.isfinite(raw.mean)) and np.all(np.isfinite(raw.std)) and np.all(np.asarray(raw.std) > 0))


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


def write_cache(path: Path, key: CacheKey, raw: RawDataset) -> bool:
    """Write atomically (temporary file, then rename); False if the cache dir is not writable or the
    images are decoded on demand (an ImageArray is never materialised just to be cached)."""
    if not all(isinstance(x, np.ndarray) for x in (raw.x_train, raw.x_test, raw.x_unseen) if x is not None):
        return False
    optional = {name: np.ascontiguousarray(getattr(raw, name)) for name in _OPTIONAL if getattr(raw, name) is not None}
    if "groups" in optional and optional["groups"].dtype.kind not in "biuUS":
        optional["groups"] = optional["groups"].astype(str)  # object arrays would need pickle
    return save_npz_atomically(
        path,
        key=np.array(key.digest),
        stamps=np.frombuffer(stamps_record(key).encode(), dtype=np.uint8),  # bytes: a str array is UTF-32
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


def cached(cache_dir: Path, label: str, key: CacheKey, build: Callable[[], RawDataset]) -> RawDataset:
    """Return the cached dataset for ``key``, building and caching it first if needed; a new entry
    removes the ones of ``label`` that can no longer be read (``remove_dead_entries``)."""
    path = cache_path(cache_dir, label, key.digest)
    raw = read_cache(path, key.digest)
    if raw is None:
        raw = build()
        if write_cache(path, key, raw):
            remove_dead_entries(Path(cache_dir), label, keep=path)
    return raw


def remove_dead_entries(cache_dir: Path, label: str, keep: Path) -> list[Path]:
    """Remove ``label``'s cache files whose sources are gone or changed (their key can never match
    again), files of an older cache version (no stamps), and temporary files a killed writer left;
    return what was removed. A file another process is reading stays readable to it (POSIX unlink);
    one it opens afterwards is a cache miss, rebuilt."""
    removed = []
    for path in cache_dir.glob(f"{label}-*.npz"):
        digest = path.stem[len(label) + 1 :]
        if path == keep or len(digest) != 20 or entry_is_current(path, digest):
            continue  # another dataset whose label starts with ours has a longer stem
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    for tmp in cache_dir.glob(f".{label}-*.npz.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > ABANDONED_TMP_S:
                tmp.unlink()
                removed.append(tmp)
    return removed


def stamps_record(key: CacheKey) -> str:
    """What a cache file records of its sources: their stamps, and the host that read them."""
    return json.dumps({"host": socket.gethostname(), "stamps": key.stamps})


def entry_is_current(path: Path, digest: str) -> bool:
    """Whether the cache file at ``path`` could still be read: its recorded sources are as they were.
    An unreadable file, or one without stamps (an older cache version), is not. One another host
    wrote is taken as current: a cache folder shared by hosts whose data sits on their own disks
    holds one entry per host, each judged (and removed) by the host that wrote it."""
    record = read_npz(path, digest, lambda z: bytes(z["stamps"]).decode(), _BAD_CACHE + (UnicodeDecodeError,))
    if record is None:
        return False
    try:
        found = json.loads(record)
        if found["host"] != socket.gethostname():
            return True
        key = CacheKey("", tuple((str(p), int(n), int(t)) for p, n, t in found["stamps"]))
    except (ValueError, TypeError, KeyError):
        return False
    return key.current()
