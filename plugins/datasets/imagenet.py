"""ImageNet-1k (ILSVRC2012) at 224 px: the official train split, and the 50,000 val images as test.

Read from the archives as distributed (``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``
with ``ILSVRC2012_devkit_t12.tar.gz`` for the val labels), never unpacked: the train tar's nested
per-class tars are indexed once (byte offset and size of every JPEG, cached in the cache dir).
Extracted folders work too: ``train/<wnid>/`` and ``val/<wnid>/`` (torchvision's layout, or
``test/<wnid>/``), or a flat ``val/`` labelled by the devkit.

Order follows torchvision's ImageNet/ImageFolder, which the LoTUS code used: labels are the sorted
wnids, files sort by code point within a class (``n01440764_10026`` before ``n01440764_2``, not
naturally), so "the first 50 per class" are the paper's images. Class names are the wnids: every
layout has them (the devkit's words need not be there) and they hold no commas or spaces, so
``class:n01440764`` works as a scenario. Preprocessing is the paper's (torchvision ``Resize(256)``,
``CenterCrop(224)``, RGB); normalisation the usual ImageNet constants; no augmentation (LoTUS
trains ImageNet with the evaluation transform).

What fits ``decode_budget_gb`` is decoded up front and cached like CIFAR; anything larger comes
back as lazily decoded ``archive.EncodedImages`` (ImageArrays) that the runner streams.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from unlearnkit import Augment, DataError, Options, RawDataset

from .archive import EncodedImages, tar_index
from .base import READ_ERRORS, FileDataset, Source, load_mat
from .cache import cache_key, cached
from .download import one_line
from .folder import is_image_name, subdirs

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
VAL_DIRS = ("val", "test")
WNID = re.compile(r"n\d{8}")
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d+)\.", re.IGNORECASE)
RESIZE, CROP = 256, 224
PUBLISHED = "https://image-net.org/download-images.php (free registration)"


class ImageNetOptions(Options):
    train_per_class: int | Literal["all"] = Field(
        50,
        description="The first N training images of each class in sorted file order; the paper's protocol is 50 "
        "(5 forget + 45 retain at fraction 0.1). 'all': the 1.28 M images (streamed).",
    )
    val_per_class: int | Literal["all"] = Field(
        "all", description="The first N val images of each class (the test split); 'all': the 50 per class."
    )
    crop: int = Field(
        CROP,
        ge=8,
        le=1024,
        description="Side of the centre crop in pixels (the paper: 224); the shorter side is first resized to "
        "crop x 256/224, so smaller crops keep the paper's framing at lower resolution.",
    )
    decode_budget_gb: float = Field(
        4.0,
        ge=0,
        description="Decode the selected images up front (and cache them) when they take at most this many GB as "
        "uint8 (N x 3 x crop x crop bytes); otherwise they are decoded on demand while streaming.",
    )

    @field_validator("train_per_class", "val_per_class", mode="before")
    @classmethod
    def _count_or_all(cls, value: Any) -> int | str:
        """A count >= 1 or 'all' (also from the command line's strings and TOML, which has no None)."""
        if isinstance(value, str) and value.strip().lower() == "all":
            return "all"
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = 0
        if isinstance(value, bool) or count < 1 or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected a number of images per class (>= 1) or 'all'")
        return count


@dataclass(frozen=True)
class Layout:
    """Where the train and val images of one folder are: archives, folders, or a mix."""

    root: Path
    train: Path  # TRAIN_TAR or train/
    val: Path  # VAL_TAR, val/<wnid>/ folders or a flat val/
    val_by_class: bool
    devkit: Path | None  # DEVKIT_TAR or DEVKIT_DIR, needed unless val_by_class

    def archives(self) -> list[Path]:
        """The archive files among the sources (they key the cache; folders key it by their images)."""
        files = [p for p in (self.train, self.val) if p.is_file()]
        if self.devkit is not None and not self.val_by_class:
            files += [self.devkit] if self.devkit.is_file() else [self.devkit / META, self.devkit / GROUND_TRUTH]
        return files


def _has_wnid_dirs(folder: Path) -> bool:
    return any(WNID.fullmatch(name) for name in subdirs(folder))


def _has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(is_image_name(e.name) and e.is_file() for e in it)
    except OSError:
        return False


def find_layout(folder: Path) -> Layout | str | None:
    """The layout in ``folder``; a sentence saying what is missing when only part is there; None
    when no training images are. Cheap: looks at names, never opens an archive."""
    if (folder / TRAIN_TAR).is_file():
        train = folder / TRAIN_TAR
    elif _has_wnid_dirs(folder / "train"):
        train = folder / "train"
    else:
        return None
    devkit = folder / DEVKIT_TAR if (folder / DEVKIT_TAR).is_file() else None
    if devkit is None and (folder / DEVKIT_DIR / META).is_file() and (folder / DEVKIT_DIR / GROUND_TRUTH).is_file():
        devkit = folder / DEVKIT_DIR
    val_dirs = [folder / name for name in VAL_DIRS]
    by_class = next((d for d in val_dirs if _has_wnid_dirs(d)), None)
    if by_class is not None:
        return Layout(folder, train, by_class, True, devkit)
    flat = next((d for d in val_dirs if _has_images(d)), None)
    unlabelled = folder / VAL_TAR if (folder / VAL_TAR).is_file() else flat
    if unlabelled is None:
        if not train.is_file():
            return None  # wnid folders alone (Tiny-ImageNet's train/ has them too) are not evidence enough
        return (
            f"ImageNet: found {train} but no validation images in {folder} "
            f"(expected {VAL_TAR} with {DEVKIT_TAR}, val/<wnid>/ folders, or a flat val/ with the devkit)."
        )
    if devkit is None:
        return (
            f"ImageNet: found {unlabelled} but not {DEVKIT_TAR} (or {DEVKIT_DIR}/) in {folder}, "
            f"whose {META} and {GROUND_TRUTH.rsplit('/', 1)[1]} label the val images."
        )
    return Layout(folder, train, unlabelled, False, devkit)


def _streamed_only() -> None:
    raise RuntimeError("ImageNet is read by ImageNet.load(), not through Source.read")


# -------------------------------------------------------------------------------------- devkit
def read_devkit(devkit: Path) -> tuple[dict[int, str], list[int]]:
    """({ILSVRC2012_ID: wnid} of the 1,000 leaf synsets, the val ground truth: an ID per val image).

    From ``data/meta.mat`` (struct array ``synsets``; leaves have ``num_children == 0``) and
    ``data/ILSVRC2012_validation_ground_truth.txt`` (line i labels ILSVRC2012_val_<i>), read
    straight from the tar.gz or an extracted devkit folder.
    """
    if devkit.is_dir():
        meta_bytes, truth_bytes = (devkit / META).read_bytes(), (devkit / GROUND_TRUTH).read_bytes()
    else:
        found: dict[str, bytes] = {}
        with tarfile.open(devkit, "r:*") as tf:
            for member in tf:
                for want in (META, GROUND_TRUTH):
                    if member.isfile() and (member.name == want or member.name.endswith("/" + want)):
                        f = tf.extractfile(member)
                        if f is not None:
                            found[want] = f.read()
        missing = [w for w in (META, GROUND_TRUTH) if w not in found]
        if missing:
            raise ValueError(f"{devkit.name} lacks {', '.join(missing)}")
        meta_bytes, truth_bytes = found[META], found[GROUND_TRUTH]
    synsets = np.atleast_1d(load_mat(io.BytesIO(meta_bytes), squeeze_me=True)["synsets"])
    id_to_wnid = {
        int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(np.asarray(s["num_children"]).sum()) == 0
    }
    truth = [int(line) for line in truth_bytes.decode().split()]
    return id_to_wnid, truth


# -------------------------------------------------------------------------------------- plugin
class ImageNet(FileDataset):
    name = "imagenet"
    algorithm_version = 2
    summary = (
        "ImageNet-1k (ILSVRC2012) at 224 px, 1,000 wnid classes, first N train per class / 50k val as test "
        "(archives or folders; no download)."
    )
    title = "ImageNet (ILSVRC2012)"
    wants = f"{TRAIN_TAR}, {VAL_TAR} and {DEVKIT_TAR} (or the extracted train/<wnid>/ and val/<wnid>/ folders)"
    looks_for = (
        f"{TRAIN_TAR} or train/<wnid>/*.JPEG, plus {VAL_TAR} with {DEVKIT_TAR}, val/<wnid>/ folders, "
        "or a flat val/ with the devkit (in the folder or one below it)"
    )
    install_hint = f"download them from {PUBLISHED} into DIR (nothing is downloaded automatically)"
    downloadable = False
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    augment = Augment()  # LoTUS trains ImageNet with the evaluation transform
    Options = ImageNetOptions

    # ------------------------------------------------------------------------------ locating
    def layout(self, data_dir: Path | None) -> Layout:
        """The first complete layout in the data dir (or one folder below it); DataError otherwise."""
        partial: str | None = None
        for root in self.roots(data_dir):
            if not root.is_dir():
                continue
            for folder in [root] + [root / name for name in sorted(subdirs(root))]:
                found = find_layout(folder)
                if isinstance(found, Layout):
                    return found
                partial = partial or found
        if partial is not None:
            raise DataError(f"{partial} {self.fix_hint(data_dir)}")
        raise DataError(self.missing_message(data_dir))

    def incomplete(self, root: Path) -> str:
        """Extracted train/<wnid>/ folders with no validation images beside them (find_layout leaves
        those out as evidence: Tiny-ImageNet's train/ has wnid folders too), so they are named here."""
        for folder in [root] + [root / name for name in sorted(subdirs(root))]:
            if _has_wnid_dirs(folder / "train") and not any(_has_wnid_dirs(folder / v) for v in VAL_DIRS):
                return (
                    f"{folder / 'train'} holds <wnid>/ folders, but {folder} has no val/<wnid>/ (or "
                    f"test/<wnid>/) folders, nor {VAL_TAR} or a flat val/ with {DEVKIT_TAR}, for the test split."
                )
        return ""

    def find(self, root: Path) -> Source | None:
        for folder in [root] + [root / name for name in sorted(subdirs(root))]:
            found = find_layout(folder)
            if isinstance(found, Layout):
                return Source("imagenet", found.root, found.archives, _streamed_only)
        return None

    def check_available(self, data_dir: Path | None) -> None:
        """Cheap: looks at file and folder names only."""
        self.layout(data_dir)

    # ------------------------------------------------------------------------------ loading
    @property
    def geometry(self) -> dict[str, int]:
        """Resize-then-centre-crop sizes: the paper's 256 -> 224, scaled in proportion for other crops."""
        crop = self.options.crop if isinstance(self.options, ImageNetOptions) else CROP
        return {"resize": round(crop * RESIZE / CROP), "crop": crop}

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        o = self.options
        assert isinstance(o, ImageNetOptions)
        layout = self.layout(data_dir)
        per_train = None if o.train_per_class == "all" else o.train_per_class
        per_val = None if o.val_per_class == "all" else o.val_per_class
        try:
            classes, x_train, y_train = self.train_images(layout, Path(cache_dir), per_train)
            x_test, y_test = self.val_images(layout, Path(cache_dir), classes, per_val)
        except READ_ERRORS as err:
            raise DataError(
                f"Cannot read ImageNet in {layout.root}: {one_line(err)}. Check or replace the file(s)."
            ) from None
        n = len(x_train) + len(x_test)
        if n * 3 * o.crop * o.crop > o.decode_budget_gb * 1e9:
            return RawDataset(x_train, y_train, x_test, y_test, classes, self.mean, self.std)
        files = layout.archives() + [
            Path(os.fsdecode(p)) for x in (x_train, x_test) if x.archive is None for p in x.names
        ]
        extra = {"train_per_class": per_train, "val_per_class": per_val, **self.geometry}
        try:
            key = cache_key(self.name, files, extra)
        except OSError as err:
            raise DataError(f"Cannot read ImageNet files in {layout.root}: {one_line(err)}.") from None

        def decode() -> RawDataset:
            return RawDataset(x_train.decode_all(), y_train, x_test.decode_all(), y_test, classes, self.mean, self.std)

        return cached(Path(cache_dir), self.name, key, decode)

    def train_images(
        self, layout: Layout, cache_dir: Path, per_class: int | None
    ) -> tuple[list[str], EncodedImages, np.ndarray]:
        """Class names (sorted wnids) and the first ``per_class`` images of each class."""
        if layout.train.is_file():
            index = tar_index(layout.train, cache_dir, nested=True)
            bounds = index.bounds()
            keep = [
                np.arange(lo, hi if per_class is None else min(hi, lo + per_class))
                for lo, hi in zip(bounds, bounds[1:])
            ]
            empty = [c for c, k in zip(index.folders, keep) if len(k) == 0]
            if not index.folders or empty:
                what = f"no images in the per-class tars {', '.join(empty[:3])}" if empty else "no per-class tars"
                raise DataError(f"{layout.train} holds {what}: is it {TRAIN_TAR} as distributed?")
            idx = np.concatenate(keep)
            x = EncodedImages(
                index.names[idx],
                **self.geometry,
                archive=layout.train,
                offsets=index.offsets[idx],
                sizes=index.sizes[idx],
            )
            return list(index.folders), x, index.folder[idx].astype(np.int64)
        classes = sorted(n for n in subdirs(layout.train) if WNID.fullmatch(n))
        paths, labels = [], []
        for label, wnid in enumerate(classes):
            names = _image_files(layout.train / wnid)[:per_class]
            paths += [os.fsencode(layout.train / wnid / n) for n in names]
            labels += [label] * len(names)
        return classes, EncodedImages(paths, **self.geometry), np.array(labels, dtype=np.int64)

    def val_images(
        self, layout: Layout, cache_dir: Path, classes: list[str], per_class: int | None
    ) -> tuple[EncodedImages, np.ndarray]:
        """The val images grouped by label, sorted by name within a class, the first ``per_class`` of each."""
        label_of = {wnid: i for i, wnid in enumerate(classes)}
        if layout.val_by_class:
            wnids = sorted(n for n in subdirs(layout.val) if WNID.fullmatch(n))
            unknown = [w for w in wnids if w not in label_of]
            if unknown:
                raise DataError(f"{layout.val} has classes that {layout.train} lacks: {', '.join(unknown[:5])}.")
            paths, labels = [], []
            for wnid in wnids:
                names = _image_files(layout.val / wnid)[:per_class]
                paths += [os.fsencode(layout.val / wnid / n) for n in names]
                labels += [label_of[wnid]] * len(names)
            y = np.array(labels, dtype=np.int64)
            order = np.argsort(y, kind="stable")
            return EncodedImages(np.asarray(paths, dtype=bytes)[order], **self.geometry), y[order]
        assert layout.devkit is not None
        id_to_wnid, truth = read_devkit(layout.devkit)
        if layout.val.is_file():
            index = tar_index(layout.val, cache_dir, nested=False)
            names = [index.name(i) for i in range(len(index))]
            x = EncodedImages(
                index.names, **self.geometry, archive=layout.val, offsets=index.offsets, sizes=index.sizes
            )
        else:
            names = _image_files(layout.val)
            x = EncodedImages([os.fsencode(layout.val / n) for n in names], **self.geometry)
        labels = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            m = VAL_NUMBER.search(name)
            number = int(m.group(1)) if m else 0
            if not 1 <= number <= len(truth):
                raise DataError(
                    f"{layout.val}: {name} is not ILSVRC2012_val_<n> with n in 1..{len(truth)} of the devkit."
                )
            wnid = id_to_wnid.get(truth[number - 1])
            if wnid not in label_of:
                raise DataError(
                    f"{layout.val}: {name} is labelled {wnid or truth[number - 1]}, a class {layout.train} lacks."
                )
            labels[i] = label_of[wnid]
        order = np.lexsort((np.array(names, dtype=str), labels)) if names else np.zeros(0, np.int64)
        order = np.concatenate([order[labels[order] == c][:per_class] for c in range(len(classes))]).astype(np.int64)
        return x.subset(order), labels[order]


def _image_files(folder: Path) -> list[str]:
    """Image file names in ``folder``, sorted by code point (torchvision's order)."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if is_image_name(e.name) and e.is_file())
    except OSError as err:
        raise DataError(f"Cannot list {folder}: {err.strerror or err}.") from None
