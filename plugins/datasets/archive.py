"""Images read straight from archives: tar indexes, zip/folder trees, and a lazily decoded image array.

ILSVRC2012's training archive is one tar of 1,000 per-class tars holding 1.28 M JPEGs (138 GB).
Unpacking it costs hours and doubles the disk, so instead the byte offset and size of every JPEG
inside the outer file are recorded once (tar headers only) and cached; an image is then one
``os.pread`` away. :class:`EncodedImages` holds such byte ranges (or plain file paths) and decodes
on demand: it is the :class:`~unlearnkit.api.ImageArray` that DataLoader workers index, each
opening the archive itself, and its ``decode_all`` is how the eager path fills an in-memory
array, so both give the same pixels. PIL is imported only when something is decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from unlearnkit import DataError

from .cache import read_npz, save_npz_atomically
from .folder import is_image_name, parallel

INDEX_VERSION = 1
_BAD_INDEX = (OSError, ValueError, KeyError, TypeError, EOFError, MemoryError, zipfile.BadZipFile)
_DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError)


# ------------------------------------------------------------------------------------ tar indexes
class Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``start`` of an open binary file: a tar inside a tar."""

    def __init__(self, f: Any, start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


@dataclass(frozen=True)
class TarIndex:
    """Where every image of a tar lies, sorted by (folder, name) in code-point order.

    ``folders`` are the inner tars' stems for a nested tar (ILSVRC's wnids), ``("",)`` for a flat
    one; ``names`` are the member names inside their (inner) tar, as UTF-8 bytes (a quarter of
    the memory of str for 1.28 M names); ``offsets``/``sizes`` are byte ranges in the outer file.
    """

    folders: tuple[str, ...]
    folder: np.ndarray  # int32, index into folders
    names: np.ndarray  # bytes (S)
    offsets: np.ndarray  # int64
    sizes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.names)

    def name(self, i: int) -> str:
        return self.names[i].decode("utf-8", "replace")

    def bounds(self) -> np.ndarray:
        """``bounds[k]:bounds[k + 1]`` are the members of folder ``k``."""
        return np.searchsorted(self.folder, np.arange(len(self.folders) + 1))


def _members(tf: tarfile.TarFile) -> list[tuple[str, int, int]]:
    """(name, offset of its data, size) of the regular image files of an open tar, in archive order."""
    return [(m.name, m.offset_data, m.size) for m in tf if m.isfile() and is_image_name(PurePosixPath(m.name).name)]


def index_tar(path: Path, *, nested: bool) -> TarIndex:
    """Read only the headers of ``path`` (and, when ``nested``, of each ``*.tar`` member in it)."""
    folders: list[str] = []
    entries: list[tuple[int, bytes, int, int]] = []
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as outer:
        if not nested:
            folders.append("")
            entries = [(0, n.encode(), off, size) for n, off, size in _members(outer)]
        else:
            for member in outer:
                if not (member.isfile() and member.name.endswith(".tar")):
                    continue
                k = len(folders)
                folders.append(PurePosixPath(member.name).name[: -len(".tar")])
                window = Window(f, member.offset_data, member.size)
                with tarfile.open(fileobj=window, mode="r:") as inner:
                    start = member.offset_data
                    entries += [(k, n.encode(), start + off, size) for n, off, size in _members(inner)]
                # the outer tar reads on from its own offset: sharing `f` with the inner one is safe
    order = sorted(range(len(folders)), key=folders.__getitem__)
    rank = np.empty(len(folders), dtype=np.int32)
    rank[order] = np.arange(len(folders), dtype=np.int32)
    folder = rank[np.array([e[0] for e in entries], dtype=np.int32)] if entries else np.zeros(0, np.int32)
    names = np.array([e[1] for e in entries], dtype=bytes) if entries else np.zeros(0, dtype="S1")
    offsets = np.array([e[2] for e in entries], dtype=np.int64)
    sizes = np.array([e[3] for e in entries], dtype=np.int64)
    perm = np.lexsort((names, folder))
    return TarIndex(tuple(folders[i] for i in order), folder[perm], names[perm], offsets[perm], sizes[perm])


def _index_key(path: Path, nested: bool) -> str:
    st = path.stat()
    text = f"tar-index v{INDEX_VERSION}|{path.absolute()}|{st.st_size}|{st.st_mtime_ns}|{nested}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_index(path: Path, key: str, archive_size: int) -> TarIndex | None:
    """The cached index, or None when it is absent, damaged, or not one of an archive of ``archive_size``
    bytes (a byte range past its end, a negative size, a name that is not bytes): a swapped file must
    not make a worker read 2**62 bytes."""
    index = read_npz(
        path,
        key,
        lambda z: TarIndex(tuple(str(s) for s in z["folders"]), z["folder"], z["names"], z["offsets"], z["sizes"]),
        _BAD_INDEX,
    )
    if index is None:
        return None
    return index if _fits(index, archive_size) else None


def _fits(index: TarIndex, archive_size: int) -> bool:
    """Whether every entry of ``index`` is a byte range of an archive of ``archive_size`` bytes, in one of its folders."""
    n = len(index.names)
    arrays = (index.folder, index.offsets, index.sizes)
    if index.names.dtype.kind != "S" or any(len(a) != n or a.dtype.kind not in "iu" for a in arrays):
        return False
    if n == 0:
        return True
    if index.folder.min() < 0 or index.folder.max() >= len(index.folders):
        return False
    if min(index.offsets.min(), index.sizes.min()) < 0 or max(index.offsets.max(), index.sizes.max()) > archive_size:
        return False
    ends = index.offsets.astype(np.int64) + index.sizes.astype(np.int64)  # both <= archive_size: no overflow
    return bool(ends.max() <= archive_size)


def tar_index(path: Path, cache_dir: Path, *, nested: bool) -> TarIndex:
    """The index of ``path``, from the cache dir when the archive's path, size and mtime match."""
    key = _index_key(path, nested)
    cache_file = Path(cache_dir) / f"tar-index-{path.name}-{key}.npz"
    index = _read_index(cache_file, key, path.stat().st_size)
    if index is None:
        try:
            index = index_tar(path, nested=nested)
        except (OSError, EOFError, tarfile.TarError) as err:
            raise DataError(f"Cannot read the tar archive {path}: {err}. Check or replace the file.") from None
        # an unwritable cache only costs a re-scan next time
        save_npz_atomically(
            cache_file,
            key=np.array(key),
            folders=np.array(index.folders, dtype=str),
            folder=index.folder,
            names=index.names,
            offsets=index.offsets,
            sizes=index.sizes,
        )
    return index


# ------------------------------------------------------------------------------- zip / folder trees
class Files(Protocol):
    """A tree of files addressed by relative POSIX paths, in a zip archive or a folder on disk."""

    where: Path

    def names(self) -> list[str]: ...

    def read(self, rel: str) -> bytes: ...

    def items(self, rels: Sequence[str]) -> list[Path | bytes]: ...

    def key_files(self, rels: Sequence[str]) -> list[Path]: ...


class ZipFiles:
    """The members of ``path`` under ``prefix`` (the archive's top folder, if any); no unpacking."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.where, self.prefix = Path(path), prefix

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.where) as zf:
            n = len(self.prefix)
            return [i.filename[n:] for i in zf.infolist() if not i.is_dir() and i.filename.startswith(self.prefix)]

    def read(self, rel: str) -> bytes:
        with zipfile.ZipFile(self.where) as zf:
            return zf.read(self.prefix + rel)

    def items(self, rels: Sequence[str]) -> list[Path | bytes]:
        with zipfile.ZipFile(self.where) as zf:  # one pass, in order: the zip is read sequentially
            return [zf.read(self.prefix + r) for r in rels]

    def key_files(self, rels: Sequence[str]) -> list[Path]:
        return [self.where]

    @staticmethod
    def find(path: Path, marker: str) -> ZipFiles | None:
        """The tree in zip ``path`` whose top holds ``marker`` (shallowest wins); None if absent."""
        with zipfile.ZipFile(path) as zf:
            hits = [n for n in zf.namelist() if n == marker or n.endswith("/" + marker)]
        if not hits:
            return None
        best = min(hits, key=lambda n: (n.count("/"), n))
        return ZipFiles(path, best[: len(best) - len(marker)])


class DiskFiles:
    """The files under a folder on disk."""

    def __init__(self, root: Path) -> None:
        self.where = Path(root)

    def names(self) -> list[str]:
        """The visible regular files (symlinks to them included): a FIFO or device named like an image
        would block the load forever or never end, so it is no file of the tree. Sub-folders are not
        followed through symlinks (a loop), and an unreadable one is skipped."""
        out: list[str] = []
        todo = [""]
        while todo:
            rel = todo.pop()
            try:
                with os.scandir(self.where / rel) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in it]
            except OSError:
                continue
            for name, is_dir, is_file in entries:
                if name.startswith("."):
                    continue
                sub = f"{rel}/{name}" if rel else name
                if is_dir:
                    todo.append(sub)
                elif is_file:
                    out.append(sub)
        return out

    def read(self, rel: str) -> bytes:
        return (self.where / rel).read_bytes()

    def items(self, rels: Sequence[str]) -> list[Path | bytes]:
        return [self.where / r for r in rels]

    def key_files(self, rels: Sequence[str]) -> list[Path]:
        return [self.where / r for r in rels]


# ------------------------------------------------------------------------------ lazy decoding
def resize_center_crop(im: Any, resize: int, crop: int) -> np.ndarray:
    """torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` on a PIL image, as HWC uint8.

    The same arithmetic (shorter side to ``resize``, the longer one truncated; PIL bilinear with
    its antialiasing; crop offsets rounded half to even), so the pixels are those the paper's
    torchvision pipeline saw.
    """
    from PIL import Image

    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    if short != resize:
        new_long = int(resize * long / short)
        w, h = (resize, new_long) if w <= h else (new_long, resize)
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    if w < crop or h < crop:
        raise ValueError(f"image is {w}x{h} after resizing, smaller than the {crop}x{crop} crop")
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    return np.asarray(im.crop((left, top, left + crop, top + crop)))


def _as_indices(index: Any, n: int) -> np.ndarray | int:
    if isinstance(index, slice):
        return np.arange(*index.indices(n))
    if isinstance(index, (int, np.integer)):
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {int(index)} is out of bounds for {n} images")
        return i
    idx = np.asarray(index)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {idx.shape} for {n} images")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    idx = np.where(idx < 0, idx + n, idx)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"index out of bounds for {n} images")
    return idx


class EncodedImages:
    """Encoded images decoded on demand to uint8 RGB ``(3, crop, crop)``: an ImageArray.

    Either byte ranges (``offsets``, ``sizes``) of one ``archive`` file, or whole files whose
    paths are ``names``. Picklable: the archive is opened lazily once per process (a DataLoader
    worker opens its own), and read with ``os.pread``, so threads share one descriptor safely.
    """

    def __init__(
        self,
        names: np.ndarray | Sequence[bytes],
        *,
        resize: int,
        crop: int,
        archive: Path | str | None = None,
        offsets: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        self.names = np.asarray(names, dtype=bytes) if len(names) else np.zeros(0, dtype="S1")
        self.resize, self.crop = int(resize), int(crop)
        self.archive = None if archive is None else os.fspath(archive)
        if self.archive is not None:
            if offsets is None or sizes is None:
                raise ValueError("an archive needs the offsets and sizes of its images")
            self.offsets = np.asarray(offsets, dtype=np.int64)
            self.sizes = np.asarray(sizes, dtype=np.int64)
            if len(self.offsets) != len(self.names) or len(self.sizes) != len(self.names):
                raise ValueError("names, offsets and sizes differ in length")
        self._fds: dict[int, int] = {}

    # -------------------------------------------------------------------- array protocol
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.names), 3, self.crop, self.crop)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: Any) -> np.ndarray:
        idx = _as_indices(index, len(self))
        if isinstance(idx, int):
            return self.decode(idx)
        out = np.empty((len(idx), 3, self.crop, self.crop), dtype=np.uint8)

        def work(lo: int, hi: int) -> None:
            for j in range(lo, hi):
                out[j] = self.decode(int(idx[j]))

        # Threads in the main process (fingerprints, num_workers=0); a DataLoader worker is one of
        # several processes already and decodes its batch alone.
        parallel(len(idx), work, threads=1 if multiprocessing.parent_process() is not None else None)
        return out

    def __repr__(self) -> str:
        where = self.archive or "files"
        return f"EncodedImages({len(self)} images in {where}, resize {self.resize}, crop {self.crop})"

    def subset(self, idx: np.ndarray) -> EncodedImages:
        """The images at ``idx`` (still encoded)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.archive is None:
            return EncodedImages(self.names[idx], resize=self.resize, crop=self.crop)
        return EncodedImages(
            self.names[idx],
            resize=self.resize,
            crop=self.crop,
            archive=self.archive,
            offsets=self.offsets[idx],
            sizes=self.sizes[idx],
        )

    def decode_all(self, threads: int | None = None) -> np.ndarray:
        """Every image decoded into one in-memory array, on a thread pool."""
        out = np.empty(self.shape, dtype=np.uint8)

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                out[i] = self.decode(i)

        parallel(len(self), work, threads=threads)
        return out

    # -------------------------------------------------------------------- one image
    def describe(self, i: int) -> str:
        name = self.names[i].decode("utf-8", "replace")
        return f"{self.archive}:{name}" if self.archive is not None else name

    def read(self, i: int) -> bytes:
        if self.archive is None:
            with open(os.fsdecode(self.names[i]), "rb") as f:
                return f.read()
        fd = self._descriptor()
        offset, size = int(self.offsets[i]), int(self.sizes[i])
        parts = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                raise EOFError(f"archive ends before the {size} bytes of the image")
            parts.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def decode(self, i: int) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(self.read(i))) as src:
                im = src if src.mode == "RGB" else src.convert("RGB")
                hwc = resize_center_crop(im, self.resize, self.crop)
        except (*_DECODE_ERRORS, EOFError, Image.DecompressionBombError) as err:
            raise DataError(f"Cannot decode image {self.describe(i)}: {err}.") from None
        return hwc.transpose(2, 0, 1)

    # -------------------------------------------------------------------- files and pickling
    def _descriptor(self) -> int:
        """This process's descriptor for the archive (a forked worker must not share the parent's)."""
        pid = os.getpid()
        fd = self._fds.get(pid)
        if fd is None:
            assert self.archive is not None
            try:
                fd = os.open(self.archive, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as err:
                raise DataError(f"Cannot open {self.archive}: {err.strerror or err}.") from None
            kept = self._fds.setdefault(pid, fd)  # atomic under the GIL: a racing thread's copy is closed
            if kept != fd:
                os.close(fd)
            fd = kept
        return fd

    def close(self) -> None:
        fd = self._fds.pop(os.getpid(), None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
