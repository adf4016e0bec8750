"""A user's own images: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (``val/`` also accepted).

Classes are the folder names sorted by code point, as torchvision's ``ImageFolder`` sorts them
(``B`` before ``a``; ImageNet's wnids give the usual indices); at least two are needed. Files are
in natural order within a class and must sit directly in its folder: images in a sub-folder of a
class folder are refused rather than silently left out. Every image is decoded to one mode (the
most common of L and RGB, or the ``mode`` option) and one size (their common size, or the ``size``
option); 16-bit greyscale images are scaled to 8 bits (65535 -> 255), not clipped.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from unlearnkit import Augment, DataError, Dataset, Options, RawDataset

from .base import Splits, channel_stats, make_raw
from .cache import cache_key, cached
from .folder import (
    TEST_DIRS,
    TRAIN_DIR,
    Listing,
    Tree,
    decode_images,
    find_tree,
    grey_or_rgb,
    is_image_name,
    large_images_allowed,
    list_tree,
    probe_images,
    subdirs,
)

LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image> (or val/)"
DECODER = 2  # in the cache key: 2 scales 16-bit images (1 clipped them to 255), so old entries are not read
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})  # PIL's modes of 16-bit greyscale PNG, TIFF
WIDE = frozenset({"I", "F"})  # 32-bit integer or float pixels (16-bit PGM opens as I): no known white level


class ImageFolderOptions(Options):
    size: int | None = Field(
        None,
        ge=4,
        le=1024,
        description="Resize to size x size (scale to cover, centre-crop); default: keep the images' own size, "
        "which must then be the same for all.",
    )
    mode: Literal["L", "RGB"] | None = Field(
        None, description="Colour mode, L (greyscale) or RGB; default: the more common of the two among the images."
    )
    max_train_per_class: int | None = Field(
        None, ge=1, description="Decode only the first N training images of each class (ImageNet: 50 with --subset 50)."
    )
    max_test_per_class: int | None = Field(None, ge=1, description="Decode only the first N test images of each class.")


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "") if items else "none"


def nested_images(split_dir: Path, classes: list[str]) -> tuple[Path, int] | None:
    """The first class sub-folder (and how many images it holds, at any depth) of ``split_dir``
    whose images ``list_split`` would skip: it reads only the files directly in a class folder."""
    for cls in classes:
        for sub in sorted(subdirs(split_dir / cls)):
            count = 0
            for _folder, dirs, files in os.walk(split_dir / cls / sub):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                count += sum(1 for f in files if is_image_name(f))
            if count:
                return split_dir / cls / sub, count
    return None


def _listed_names(folder: Path) -> list[str]:
    """The entries of ``folder``; none where it cannot be listed (a message is being written, not a load)."""
    try:
        return os.listdir(folder)
    except OSError:
        return []


def half_tree(root: Path) -> str:
    """What is there of a tree in ``root`` (or one folder below) that ``find_tree`` did not take: a split
    folder missing, or one without class folders (its images loose in it), as " {sentence}" ("" if none)."""
    for folder in [root] + [root / name for name in sorted(subdirs(root))]:
        children = set(subdirs(folder))
        splits = [s for s in (TRAIN_DIR, *TEST_DIRS) if s in children]
        if not splits:
            continue
        if TRAIN_DIR not in children or not any(t in children for t in TEST_DIRS):
            lacking = "test/ (or val/)" if TRAIN_DIR in children else "train/"
            return f" {folder} has {'/, '.join(splits)}/ but no {lacking}."
        loose = [s for s in splits if not subdirs(folder / s)]
        if loose:
            count = sum(1 for s in loose for name in _listed_names(folder / s) if is_image_name(name))
            them = "them" if len(loose) > 1 else "it"
            return (
                f" {folder}/{'/ and '.join(loose)}/ {'have' if len(loose) > 1 else 'has'} no class folders "
                f"({count} image(s) lie directly in {them}): each class needs a folder of its own."
            )
    return ""


def eight_bit(path: Path, mode: str) -> Path | bytes:
    """``path`` itself, or, for an image whose pixels are wider than 8 bits, the bytes of an 8-bit PNG
    of it: PIL's ``convert`` clips such pixels to 255 (a 16-bit image of values 1000 and 60000 would
    become all white). 16-bit modes are scaled by 255/65535; 32-bit integer and float pixels are
    taken as they are when they lie in 0..255 (what ``convert`` did) and refused otherwise."""
    if mode not in SIXTEEN_BIT | WIDE:
        return path
    from PIL import Image

    with Image.open(path) as im:
        values = np.asarray(im).astype(np.float64)
    if mode in SIXTEEN_BIT:
        values = values * (255 / 65535)
    elif values.size and (values.min() < 0 or values.max() > 255 or not np.all(values == np.floor(values))):
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        raise DataError(
            f"Cannot decode image {path}: its {mode} pixels run {low:g}..{high:g}, which has no 8-bit reading. "
            "Fix: save it as an 8-bit or 16-bit PNG."
        )
    out = io.BytesIO()
    Image.fromarray(np.rint(values).astype(np.uint8), "L").save(out, "PNG")
    return out.getvalue()


class ImageFolder(Dataset):
    name = "imagefolder"
    algorithm_version = 2  # 2: 16-bit images scaled to 8 bits, not clipped to 255
    summary = "Your own images in DIR/train/<class>/ and DIR/test/<class>/ (needs --data-dir)."
    augment = Augment()  # unknown images: no crop or flip unless a recipe asks
    default_train_recipe = "paper"
    Options = ImageFolderOptions

    def tree(self, data_dir: Path | None) -> Tree:
        """The class-folder tree in ``data_dir`` (or one folder below), with the same classes in both splits."""
        if data_dir is None:
            raise DataError(f"The imagefolder dataset needs --data-dir DIR laid out as {LAYOUT}.")
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise DataError(f"--data-dir {root} {what}. Fix: pass --data-dir DIR laid out as {LAYOUT}.")
        tree = find_tree(root)
        if tree is None:
            raise DataError(
                f"No train/<class>/ and test/<class>/ (or val/<class>/) folders in {root} or its sub-folders."
                f"{half_tree(root)} Fix: arrange the images as {LAYOUT} and pass --data-dir DIR."
            )
        if tree.train_classes != tree.test_classes:
            only_train = sorted(tree.train_classes - tree.test_classes)
            only_test = sorted(tree.test_classes - tree.train_classes)
            raise DataError(
                f"The class folders of {tree.train} and {tree.test} differ: only in train/: {_names(only_train)}; "
                f"only in {tree.test.name}/: {_names(only_test)}. Every class needs images in both."
            )
        if len(tree.train_classes) < 2:
            (only,) = tree.train_classes
            raise DataError(
                f"{tree.root} holds one class folder ({only}) in train/ and {tree.test.name}/: unlearning is "
                "measured against other classes. Fix: add a folder for at least one more class to both."
            )
        return tree

    def check_available(self, data_dir: Path | None) -> None:
        """Cheap: lists folders, not images."""
        self.tree(data_dir)

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        o = self.options
        assert isinstance(o, ImageFolderOptions)
        tree = self.tree(data_dir)
        classes = sorted(tree.train_classes)
        for split_dir in (tree.train, tree.test):
            nested = nested_images(split_dir, classes)
            if nested is not None:
                sub, count = nested
                raise DataError(
                    f"{sub} holds {count} image(s) in a sub-folder of the class folder {sub.parent.name}/, which "
                    f"would be left out: a class's images must sit directly in DIR/{split_dir.name}/<class>/. "
                    "Fix: move them up into the class folder, or make the sub-folder a class of its own."
                )
        listing = list_tree(tree, classes, o.max_train_per_class, o.max_test_per_class)
        key = cache_key(self.name, listing.files(), {**o.model_dump(), "decoder": DECODER})
        return cached(Path(cache_dir), self.name, key, lambda: self.decode(tree, listing, classes))

    def decode(self, tree: Tree, listing: Listing, classes: list[str]) -> RawDataset:
        o = self.options
        assert isinstance(o, ImageFolderOptions)
        paths = listing.files()
        info = probe_images(paths, [str(p) for p in paths])  # every header once: modes, sizes
        mode = o.mode
        size = (o.size, o.size) if o.size is not None else None
        if mode is None:
            modes = Counter(grey_or_rgb(m) for m, _ in info)
            mode = "RGB" if modes["RGB"] >= modes["L"] else "L"
        if size is None:
            sizes = Counter(s for _, s in info).most_common()
            if len(sizes) > 1:
                common = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes[:4])
                raise DataError(
                    f"The images in {tree.root} have different sizes ({common}"
                    f"{', ...' if len(sizes) > 4 else ''}). Fix: set the dataset option size=N "
                    f"(e.g. size={max(sizes[0][0])}) to resize them all to N x N."
                )
            size = sizes[0][0]
        with large_images_allowed():
            items = [eight_bit(p, m) for p, (m, _) in zip(paths, info)]
        arrays = []
        for lo, entries in ((0, listing.train), (len(listing.train), listing.test)):
            part = items[lo : lo + len(entries)]
            names = [str(p) for p, _ in entries]
            x = decode_images(part, names, mode=mode, size=size, resize=o.size is not None)
            arrays += [x, np.array([label for _, label in entries], dtype=np.int64)]
        splits = Splits(*arrays)
        mean, std = channel_stats(splits.x_train)
        return make_raw(splits, classes, mean, std, f"imagefolder in {tree.root}")
