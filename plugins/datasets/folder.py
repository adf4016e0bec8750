"""Class-folder trees, ``train/<class>/<image>`` and ``test/<class>/<image>``, on disk or inside a
tar archive: finding them, listing them in a fixed order, and decoding them with PIL.

Order is the contract: classes in the order the caller gives (label order), then files in natural
numeric order within a class (``2.png`` before ``10.png``), so "the first 10 % of each class" means
the first files. Decoding runs in a few threads (PIL releases the GIL while decoding).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from unlearnkit import DataError

from .base import Splits

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
TRAIN_DIR = "train"
TEST_DIRS = ("test", "val")  # ImageNet calls its test split "val"
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_CHUNK = 1024
_DECODE_THREADS = min(4, os.cpu_count() or 1)  # a folder's images decode on a few threads, in chunks of _CHUNK


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key putting ``img2.png`` before ``img10.png``: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", name)
    return (*(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def listed(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c (+7 more)``: names for a one-line message, the first ``limit`` of them."""
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def subdirs(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder`` (empty if it is not a folder)."""
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []


# ---------------------------------------------------------------------------------- finding
@dataclass(frozen=True)
class Tree:
    """A found tree: its train and test folders and their class folder names."""

    train: Path
    test: Path
    train_classes: frozenset[str]
    test_classes: frozenset[str]

    @property
    def root(self) -> Path:
        return self.train.parent


def tree_at(folder: Path) -> Tree | None:
    """The tree rooted exactly at ``folder``: ``train/`` plus ``test/`` (or ``val/``), each with class folders."""
    children = set(subdirs(folder))
    test = next((t for t in TEST_DIRS if t in children), None)
    if TRAIN_DIR not in children or test is None:
        return None
    train_classes = frozenset(subdirs(folder / TRAIN_DIR))
    test_classes = frozenset(subdirs(folder / test))
    if not train_classes or not test_classes:
        return None
    return Tree(folder / TRAIN_DIR, folder / test, train_classes, test_classes)


def find_tree(root: Path, classes: Sequence[str] | None = None) -> Tree | None:
    """A tree at ``root`` or in one of its immediate sub-folders (``cifar10-images/`` etc.).

    With ``classes``, only a tree whose train and test class folders are exactly those counts.
    Cheap: lists folders, never files.
    """
    wanted = frozenset(classes) if classes is not None else None
    candidates = [root] + [root / name for name in sorted(subdirs(root))]
    for folder in candidates:
        tree = tree_at(folder)
        if tree is None:
            continue
        if wanted is None or (tree.train_classes == wanted and tree.test_classes == wanted):
            return tree
    return None


# ---------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class Listing:
    """Image files of one tree in label order, then natural order within each class."""

    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]

    def files(self) -> list[Path]:
        return [p for p, _ in self.train] + [p for p, _ in self.test]


def list_split(split_dir: Path, classes: Sequence[str], limit: int | None = None) -> list[tuple[Path, int]]:
    """(path, label) for every image under ``split_dir/<class>/``, at most ``limit`` per class (the first ones)."""
    out: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        folder = split_dir / cls
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it if is_image_name(e.name) and e.is_file()]
        except OSError as err:
            raise DataError(f"Cannot list {folder}: {err.strerror or err}.") from None
        if not names:
            raise DataError(f"{folder} holds no images (expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}).")
        names.sort(key=natural_key)
        out += [(folder / n, label) for n in names[:limit]]
    return out


def list_tree(tree: Tree, classes: Sequence[str], max_train: int | None = None, max_test: int | None = None) -> Listing:
    return Listing(list_split(tree.train, classes, max_train), list_split(tree.test, classes, max_test))


# ---------------------------------------------------------------------------------- decoding
def grey_or_rgb(mode: str) -> str:
    """The array mode an image decodes to: ``L`` for greyscale modes, ``RGB`` for everything else."""
    return "L" if mode in GREY_MODES else "RGB"


def parallel(n: int, work: Callable[[int, int], None], *, threads: int | None = None, chunk: int = 64) -> None:
    """Run ``work(lo, hi)`` over [0, n) in chunks on a thread pool (PIL releases the GIL); the first
    error cancels the rest and is raised."""
    chunks = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    workers = max(1, min(threads or min(16, os.cpu_count() or 1), len(chunks)))
    if workers == 1:
        for lo, hi in chunks:
            work(lo, hi)
        return
    ex = ThreadPoolExecutor(workers)
    try:
        for fut in [ex.submit(work, lo, hi) for lo, hi in chunks]:
            fut.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def large_images_allowed() -> Iterator[None]:
    """Silence PIL's DecompressionBombWarning (images over about 89 megapixels) while a folder decodes: it is
    a raw Python warning naming no file, printed past the CLI, for what is a large photo like any other.
    One over twice that limit still raises DecompressionBombError, a one-line DataError naming it. The
    filter is process-wide while it lasts, so the decoding threads see it too."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open(item: Path | bytes):  # -> PIL.Image.Image; PIL stays a lazy import
    from PIL import Image

    return Image.open(io.BytesIO(item) if isinstance(item, bytes) else item)


def probe_images(items: Sequence[Path | bytes], names: Sequence[str]) -> list[tuple[str, tuple[int, int]]]:
    """(mode, (width, height)) of every image, read from headers only."""
    from PIL import Image

    out: list[tuple[str, tuple[int, int]]] = [("", (0, 0))] * len(items)

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            try:
                with _open(items[i]) as im:
                    out[i] = (im.mode, im.size)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                raise DataError(f"Cannot read image {names[i]}: {err}.") from None

    with large_images_allowed():
        parallel(len(items), work, threads=_DECODE_THREADS, chunk=_CHUNK)
    return out


def decode_images(
    items: Sequence[Path | bytes],
    names: Sequence[str],
    *,
    mode: str,
    size: tuple[int, int],
    resize: bool = False,
) -> np.ndarray:
    """Decode images to a uint8 (N, C, H, W) array in ``mode`` ("L" or "RGB") at ``size`` (width, height).

    With ``resize``, an image of another size is scaled to cover ``size`` and centre-cropped (aspect
    ratio kept); without, it is an error naming the file.
    """
    from PIL import Image, ImageOps

    w, h = size
    out = np.empty((len(items), 1 if mode == "L" else 3, h, w), dtype=np.uint8)

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            try:
                with _open(items[i]) as src:
                    im = src
                    if im.size != size and resize:
                        im.draft(mode, size)  # JPEG: decode at a reduced scale, still >= size
                    if im.mode != mode:
                        im = im.convert(mode)
                    if im.size != size:
                        if not resize:
                            raise ValueError(f"image is {im.size[0]}x{im.size[1]}, expected {w}x{h}")
                        im = ImageOps.fit(im, size, method=Image.Resampling.BILINEAR)
                    arr = np.asarray(im)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                raise DataError(f"Cannot decode image {names[i]}: {err}.") from None
            out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    with large_images_allowed():
        parallel(len(items), work, threads=_DECODE_THREADS, chunk=_CHUNK)
    return out


# ---------------------------------------------------------------------------------- tar archives
def open_tar(path: Path) -> tarfile.TarFile:
    """``path`` opened as a tar of any compression; a file that is none says so in a few words (tarfile
    lists the error of each of its four openers, which one_line cuts off mid-word)."""
    try:
        return tarfile.open(path, "r:*")
    except tarfile.ReadError as err:
        if "could not be opened successfully" not in str(err):
            raise
        raise tarfile.ReadError(f"{path.name} is not a tar archive (plain, gzip, bzip2 or xz)") from None


def read_tar_tree(path: Path, classes: Sequence[str]) -> dict[str, list[tuple[str, int, bytes]]]:
    """Image bytes of a ``[prefix/]train|test/<class>/<file>`` tar, one streaming pass, no unpacking.

    Returns ``{"train": [(member name, label, bytes), ...], "test": [...]}`` in label order, then
    natural file order; every class must appear in both splits.
    """
    index = {c: i for i, c in enumerate(classes)}
    found: dict[str, list[tuple[tuple[object, ...], str, int, bytes]]] = {}
    prefixes: set[tuple[str, ...]] = set()
    with open_tar(path) as tf:
        for member in tf:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            if len(parts) < 3 or not is_image_name(parts[-1]):
                continue
            split, cls = parts[-3], parts[-2]
            if split not in (TRAIN_DIR, *TEST_DIRS) or cls not in index:
                continue
            prefixes.add(parts[:-3])
            f = tf.extractfile(member)
            if f is None:
                continue
            found.setdefault(split, []).append((natural_key(parts[-1]), member.name, index[cls], f.read()))
    if len(prefixes) > 1:
        tops = ", ".join("/".join(p) or "." for p in sorted(prefixes))
        raise DataError(f"{path.name} holds several train/test trees ({tops}); keep one.")
    test = next((t for t in TEST_DIRS if t in found), None)
    if TRAIN_DIR not in found or test is None:
        raise DataError(
            f"{path.name} holds no train/<class>/ and test/<class>/ images of the classes {', '.join(classes)}."
        )
    out: dict[str, list[tuple[str, int, bytes]]] = {}
    for split, key in ((TRAIN_DIR, "train"), (test, "test")):
        entries = sorted(found[split], key=lambda e: (e[2], e[0]))
        missing = sorted(set(classes) - {classes[e[2]] for e in entries})
        if missing:
            raise DataError(f"{path.name}: {split}/ has no images for class(es) {', '.join(missing)}.")
        out[key] = [(name, label, blob) for _, name, label, blob in entries]
    return out


def decode_listing(listing: Listing, *, mode: str, size: tuple[int, int], resize: bool = False) -> Splits:
    """A listed tree decoded into official splits (see :func:`decode_images`)."""
    arrays = []
    for entries in (listing.train, listing.test):
        paths = [p for p, _ in entries]
        x = decode_images(paths, [str(p) for p in paths], mode=mode, size=size, resize=resize)
        arrays += [x, np.array([label for _, label in entries], dtype=np.int64)]
    return Splits(*arrays)


def decode_tar(path: Path, classes: Sequence[str], *, mode: str, size: tuple[int, int]) -> Splits:
    """A class-folder tar archive decoded into official splits, straight from the archive."""
    tree = read_tar_tree(path, classes)
    arrays = []
    for key in ("train", "test"):
        entries = tree.pop(key)
        x = decode_images([b for _, _, b in entries], [f"{path.name}:{n}" for n, _, _ in entries], mode=mode, size=size)
        arrays += [x, np.array([label for _, label, _ in entries], dtype=np.int64)]
    return Splits(*arrays)
