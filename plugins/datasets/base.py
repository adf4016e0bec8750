"""What the file-backed datasets share: where to look, what a found source is, the one-line
missing-files message, the torchvision download fallback and the decoded-array cache.

A subclass only says how to recognise its files in a folder (``find``) and how to download them
(``fetch``); ``check_available`` and ``load`` follow the same rules for every dataset.
"""

from __future__ import annotations

import abc
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from unlearnkit import DataError, Dataset, Options, RawDataset

from .cache import cache_key, cached
from .download import one_line, run_download

SHARED_DATA_ENV = "UNLEARNKIT_SHARED_DATA"
# What decoding a damaged source file can raise; it becomes a DataError naming the file.
READ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    IndexError,
    zlib.error,
    struct.error,
    pickle.UnpicklingError,
    tarfile.TarError,
    zipfile.BadZipFile,
    NotImplementedError,  # scipy's loadmat on a MATLAB v7.3 (HDF5) file
)


@dataclass(frozen=True)
class Splits:
    """Decoded official splits, before they are checked and become a RawDataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None  # when the files name their classes (CIFAR-100's meta)


@dataclass(frozen=True)
class Source:
    """A dataset's files found in one place, and how to decode them."""

    kind: str  # "npz", "idx", "pickle", "tar", "folder", "mat": part of the cache key
    where: Path  # the file or folder, for messages
    files: Callable[[], list[Path]]  # files whose path/size/mtime key the cache (listed only on load)
    read: Callable[[], Splits]
    extra: dict[str, str] = field(default_factory=dict)


class DownloadOptions(Options):
    download: bool = Field(
        True,
        description="With no --data-dir and no local files, fetch the official files with torchvision "
        "(10 s network timeout; a failure is a clear error, never a hang).",
    )


def shared_data_dir() -> Path | None:
    """The folder named by $UNLEARNKIT_SHARED_DATA, where offline machines keep real datasets."""
    value = os.environ.get(SHARED_DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def integers(value: object, what: str) -> np.ndarray:
    """``value`` as an array of integers (whole floats, as MATLAB stores them, included); anything a cast
    would change (1.7, NaN, None, text) is refused rather than silently truncated."""
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
        return arr.astype(np.int64)
    if arr.size and arr.dtype.kind not in "iu":
        kind = "fractional or non-finite " if arr.dtype.kind == "f" else ""
        raise ValueError(f"{what} holds {kind}{arr.dtype.name} values, expected integers")
    return arr


def pixels(value: object, what: str) -> np.ndarray:
    """``value`` as uint8; values outside 0..255 are refused rather than wrapped (300 would become 44)."""
    arr = integers(value, what)
    if arr.dtype != np.uint8 and arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError(f"{what} runs {int(arr.min())}..{int(arr.max())}, expected pixels 0..255")
    return arr.astype(np.uint8, copy=False)


def lacking(folder: Path, wanted: Sequence[str], what: str) -> str:
    """ "{folder} lacks X, Y (it holds k of the n {what})." when ``folder`` holds some but not all of the
    ``wanted`` entries (files or folders), "" otherwise: said beside "not found", so a copy cut short
    is named with what it lacks rather than reported as nothing at all."""
    if not folder.is_dir():
        return ""
    missing = [name for name in wanted if not (folder / name).exists()]
    if not missing or len(missing) == len(wanted):
        return ""
    held = len(wanted) - len(missing)
    return f"{folder} lacks {', '.join(missing)} (it holds {held} of the {len(wanted)} {what})."


def load_mat(source: Path | io.BytesIO, **kwargs: Any) -> dict[str, Any]:
    """scipy's ``loadmat``, with its MatReadError (an empty or truncated file) as a ValueError, which
    READ_ERRORS turns into one line (scipy is imported here, on load, not with the plugin)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(source, **kwargs)
    except MatReadError as err:
        raise ValueError(f"not a readable MATLAB file ({err})") from None


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NCHW images scaled to [0, 1], chunked so memory stays flat."""
    total = np.zeros(x.shape[1])
    total_sq = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        total_sq += np.square(part).sum(axis=(0, 2, 3))
    count = max(1, len(x) * x.shape[2] * x.shape[3])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel must not divide by zero
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def make_raw(
    splits: Splits, class_names: list[str], mean: tuple[float, ...], std: tuple[float, ...], what: str
) -> RawDataset:
    """Check labels and shapes, then build the RawDataset; ``what`` names the source in errors."""
    k = len(class_names)
    for name, y in (("train", splits.y_train), ("test", splits.y_test)):
        if len(y) and (int(np.min(y)) < 0 or int(np.max(y)) >= k):
            raise DataError(f"{what}: {name} labels run {int(np.min(y))}..{int(np.max(y))}, expected 0..{k - 1}.")
    if 0 in splits.x_train.shape[1:]:
        raise DataError(f"{what}: images are {splits.x_train.shape[1:]} (channels, height, width): no pixels.")
    if splits.x_train.shape[1:] != splits.x_test.shape[1:]:
        raise DataError(
            f"{what}: train images are {splits.x_train.shape[1:]} but test images {splits.x_test.shape[1:]}."
        )
    if len(mean) != splits.x_train.shape[1] or len(std) != splits.x_train.shape[1]:
        raise DataError(f"{what}: {splits.x_train.shape[1]} channels but mean/std for {len(mean)}.")
    try:
        return RawDataset(splits.x_train, splits.y_train, splits.x_test, splits.y_test, list(class_names), mean, std)
    except ValueError as err:
        raise DataError(f"{what}: {err}.") from None


class FileDataset(Dataset):
    """A dataset read from files in ``--data-dir`` (or $UNLEARNKIT_SHARED_DATA, or a system folder),
    downloaded with torchvision as a last resort when no data dir was given."""

    title: ClassVar[str] = ""  # "CIFAR-10", for messages
    wants: ClassVar[str] = ""  # the short "pass --data-dir DIR containing ..." part of a message
    looks_for: ClassVar[str] = ""  # every layout accepted, for messages
    class_names: ClassVar[tuple[str, ...]] = ()
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    system_dirs: ClassVar[tuple[Path, ...]] = ()  # searched after the data dir, e.g. a Debian package's folder
    install_hint: ClassVar[str] = ""  # another way to get the files, e.g. an apt-get command
    downloadable: ClassVar[bool] = True
    Options: ClassVar[type[Options]] = DownloadOptions

    @abc.abstractmethod
    def find(self, root: Path) -> Source | None:
        """This dataset's files in ``root`` (or its known sub-folders), without decoding anything."""

    def fetch(self, root: Path) -> None:
        """Download the official files into ``root`` (torchvision); only called when ``downloadable``."""
        raise DataError(f"Dataset '{self.name}' cannot be downloaded: put its files in --data-dir.")

    # ------------------------------------------------------------------------------ locating
    def roots(self, data_dir: Path | None) -> list[Path]:
        """Folders searched, in order: the data dir (or $UNLEARNKIT_SHARED_DATA), then system folders."""
        first = Path(data_dir).expanduser() if data_dir is not None else shared_data_dir()
        out = [first] if first is not None else []
        return out + [p for p in self.system_dirs if p not in out]

    def locate(self, data_dir: Path | None) -> Source | None:
        for root in self.roots(data_dir):
            if root.is_dir():
                source = self.find(root)
                if source is not None:
                    return source
        return None

    def may_download(self, data_dir: Path | None) -> bool:
        return data_dir is None and self.downloadable and bool(getattr(self.options, "download", False))

    # ------------------------------------------------------------------------------ messages
    def fix_hint(self, data_dir: Path | None, *, after_download: bool = False) -> str:
        fixes = [f"pass --data-dir DIR containing {self.wants}"]
        if data_dir is None:
            fixes.append(f"set {SHARED_DATA_ENV}=DIR")
        if self.install_hint:
            fixes.append(self.install_hint)
        if self.downloadable and data_dir is None and not after_download and not self.may_download(data_dir):
            fixes.append("set the dataset option download=true (needs internet)")
        return "Fix: " + ", or ".join(fixes) + "."

    def missing_message(self, data_dir: Path | None) -> str:
        places = []
        if data_dir is None and shared_data_dir() is None:
            places.append(f"${SHARED_DATA_ENV} (not set)")
        for root in self.roots(data_dir):
            if root.is_dir():
                places.append(str(root))
            else:
                places.append(f"{root} ({'a file, not a folder' if root.exists() else 'no such folder'})")
        found = " ".join(filter(None, (self.incomplete(root) for root in self.roots(data_dir) if root.is_dir())))
        return (
            f"{self.title} files not found: looked in {', '.join(places)} for {self.looks_for}."
            + (f" {found}" if found else "")
            + f" {self.fix_hint(data_dir)}"
        )

    def incomplete(self, root: Path) -> str:
        """What of this dataset's files ``root`` holds in part ("" when none): said beside "not found", so
        a half-copied folder is named with what it lacks rather than reported as nothing at all."""
        return ""

    # ------------------------------------------------------------------------------ contract
    def check_available(self, data_dir: Path | None) -> None:
        """Cheap: only looks for files. With no data dir and downloads on, a later download may supply them."""
        if self.locate(data_dir) is None and not self.may_download(data_dir):
            raise DataError(self.missing_message(data_dir))

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        source = self.locate(data_dir) or self.download(data_dir, Path(cache_dir) / "download")
        try:
            key = cache_key(self.name, source.files(), {"kind": source.kind, **source.extra})
        except OSError as err:
            raise DataError(f"Cannot read {self.title} files in {source.where}: {one_line(err)}.") from None
        return cached(Path(cache_dir), self.name, key, lambda: self.decode(source))

    def download(self, data_dir: Path | None, root: Path) -> Source:
        """An earlier download in ``root``, or a fresh one; DataError when downloads are off or fail."""
        if not self.may_download(data_dir):
            raise DataError(self.missing_message(data_dir))
        source = self.find(root) if root.is_dir() else None
        if source is None:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DataError(f"Cannot create {root} to download {self.title}: {one_line(err)}.") from None
            run_download(lambda: self.fetch(root), title=self.title, fix=self.fix_hint(data_dir, after_download=True))
            source = self.find(root)
            if source is None:
                raise DataError(
                    f"Downloaded {self.title} into {root}, but its files are not there. {self.fix_hint(data_dir)}"
                )
        return source

    def decode(self, source: Source) -> RawDataset:
        what = f"{self.title} in {source.where}"
        try:
            splits = source.read()
        except READ_ERRORS as err:
            raise DataError(f"Cannot read {what}: {one_line(err)}. Check or replace the file(s).") from None
        names = splits.class_names or list(self.class_names)
        return make_raw(splits, names, self.mean, self.std, what)
