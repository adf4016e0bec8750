"""A user's own images: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (``val/`` also accepted).

Classes are the folder names sorted alphabetically (ImageNet's wnids give the usual indices),
files are in natural order within a class. Every image is decoded to one mode (the most common
of L and RGB, or the ``mode`` option) and one size (their common size, or the ``size`` option).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from unlearnkit import Augment, DataError, Dataset, Options, RawDataset

from .base import channel_stats, make_raw
from .cache import cache_key, cached
from .folder import Listing, Tree, decode_listing, find_tree, grey_or_rgb, list_tree, probe_images

LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image> (or val/)"


class ImageFolderOptions(Options):
    size: int | None = Field(
        None,
        ge=4,
        le=1024,
        description="Resize to size x size (scale to cover, centre-crop); default: keep the images' own size, "
        "which must then be the same for all.",
    )
    mode: Literal["L", "RGB"] | None = Field(None, description="Colour mode; default: the most common one.")
    max_train_per_class: int | None = Field(
        None, ge=1, description="Decode only the first N training images of each class (ImageNet: 50 with --subset 50)."
    )
    max_test_per_class: int | None = Field(None, ge=1, description="Decode only the first N test images of each class.")


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "") if items else "none"


class ImageFolder(Dataset):
    name = "imagefolder"
    algorithm_version = 1
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
                f"No train/<class>/ and test/<class>/ (or val/<class>/) folders in {root} or its sub-folders. "
                f"Fix: arrange the images as {LAYOUT} and pass --data-dir DIR."
            )
        if tree.train_classes != tree.test_classes:
            only_train = sorted(tree.train_classes - tree.test_classes)
            only_test = sorted(tree.test_classes - tree.train_classes)
            raise DataError(
                f"The class folders of {tree.train} and {tree.test} differ: only in train/: {_names(only_train)}; "
                f"only in {tree.test.name}/: {_names(only_test)}. Every class needs images in both."
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
        listing = list_tree(tree, classes, o.max_train_per_class, o.max_test_per_class)
        key = cache_key(self.name, listing.files(), o.model_dump())
        return cached(Path(cache_dir), self.name, key, lambda: self.decode(tree, listing, classes))

    def decode(self, tree: Tree, listing: Listing, classes: list[str]) -> RawDataset:
        o = self.options
        assert isinstance(o, ImageFolderOptions)
        mode = o.mode
        size = (o.size, o.size) if o.size is not None else None
        if mode is None or size is None:  # read every header once: the common mode and size
            paths = listing.files()
            info = probe_images(paths, [str(p) for p in paths])
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
        splits = decode_listing(listing, mode=mode, size=size, resize=o.size is not None)
        mean, std = channel_stats(splits.x_train)
        return make_raw(splits, classes, mean, std, f"imagefolder in {tree.root}")
