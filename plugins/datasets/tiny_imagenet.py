"""Tiny-ImageNet-200: 64x64 RGB, 200 classes, 100,000 training images; the 10,000 val images are
the test split (the official ``test/`` has no labels).

Read from the official ``tiny-imagenet-200.zip`` without unpacking it, or from its extracted
``tiny-imagenet-200/`` folder. Labels follow ``wnids.txt`` (its line order), class names are the
wnids (``words.txt`` names are long, ambiguous and comma-separated; a wnid works as
``class:n01443537``). Training images are in natural file order within each class, val images
in natural file order (``val_2`` before ``val_10``) labelled by ``val/val_annotations.txt``.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np

from unlearnkit import Augment, DataError, Options

from .archive import DiskFiles, Files, ZipFiles
from .base import FileDataset, Source, Splits, lacking
from .folder import decode_images, is_image_name, natural_key

ZIP_NAME = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
WNIDS = "wnids.txt"
ANNOTATIONS = "val/val_annotations.txt"
SIZE = (64, 64)
PUBLISHED = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# LoTUS (src/helpers/data_utils.py, "tiny-imagenet-*" transforms) normalises 0..255 pixels with these.
LOTUS_MEAN_255 = (122.4786, 114.2755, 101.3963)
LOTUS_STD_255 = (70.4924, 68.5679, 71.8127)
Listing = tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]  # wnids, train, val


def _by_name(rel: str) -> tuple[object, ...]:
    return natural_key(PurePosixPath(rel).name)


def _text(files: Files, name: str, where: str) -> str:
    """A text file of the tree (a byte-order mark, as some editors write, is dropped)."""
    try:
        return files.read(name).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where}: {name} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}). "
            f"Fix: replace it with the published file."
        ) from None


def listing(files: Files) -> Listing:
    """(wnids, [(train image, label)], [(val image, label)]) in label order then natural file order."""
    where = f"Tiny-ImageNet in {files.where}"
    wnids = [w for w in _text(files, WNIDS, where).split() if w]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{where}: {WNIDS} lists {'no' if not wnids else 'repeated'} wnids.")
    label_of = {w: i for i, w in enumerate(wnids)}
    annotations: dict[str, int] = {}
    for line in _text(files, ANNOTATIONS, where).splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in label_of:
            if annotations.setdefault(fields[0], label_of[fields[1]]) != label_of[fields[1]]:
                raise DataError(f"{where}: {ANNOTATIONS} labels {fields[0][:60]!r} twice, with different wnids.")
        elif line.strip():
            raise DataError(
                f"{where}: bad line {line[:60]!r} in {ANNOTATIONS} (expected <image> TAB <wnid of {WNIDS}>)."
            )
    train: dict[int, list[str]] = {}
    val: list[str] = []
    for rel in files.names():
        parts = PurePosixPath(rel).parts
        if not is_image_name(parts[-1]):
            continue
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and parts[1] in label_of:
            train.setdefault(label_of[parts[1]], []).append(rel)
        elif len(parts) == 3 and parts[:2] == ("val", "images"):
            val.append(rel)
    empty = [w for w in wnids if label_of[w] not in train]
    if empty:
        raise DataError(f"{where}: no training images in train/<wnid>/images/ for {', '.join(empty[:5])}.")
    unlabelled = [v for v in val if PurePosixPath(v).name not in annotations]
    if unlabelled or not val:
        problem = f"{ANNOTATIONS} does not label {unlabelled[0]}" if unlabelled else "no images in val/images/"
        raise DataError(f"{where}: {problem}.")
    train_list = [(rel, label) for label in range(len(wnids)) for rel in sorted(train[label], key=_by_name)]
    val_list = [(rel, annotations[PurePosixPath(rel).name]) for rel in sorted(val, key=_by_name)]
    return wnids, train_list, val_list


def read_tiny(files: Files, listed: Listing) -> Splits:
    """Decode both splits (64x64 RGB; greyscale images are converted, other sizes resized)."""
    wnids, train, val = listed
    arrays = []
    for entries in (train, val):
        rels = [rel for rel, _ in entries]
        x = decode_images(files.items(rels), [f"{files.where}/{r}" for r in rels], mode="RGB", size=SIZE, resize=True)
        arrays += [x, np.array([label for _, label in entries], dtype=np.int64)]
    return Splits(*arrays, class_names=wnids)


class TinyImageNet(FileDataset):
    name = "tiny_imagenet"
    algorithm_version = 1
    summary = "Tiny-ImageNet-200, 64x64 RGB, 200 wnid classes, 100k train / 10k val as test (tiny-imagenet-200.zip; no download)."
    title = "Tiny-ImageNet"
    wants = f"{ZIP_NAME} (or its extracted {FOLDER}/ folder)"
    looks_for = f"{ZIP_NAME}, {FOLDER}/ or a folder holding {WNIDS}, train/<wnid>/images/ and {ANNOTATIONS}"
    install_hint = f"download {PUBLISHED} into DIR (nothing is downloaded automatically)"
    downloadable = False
    Options: ClassVar[type[Options]] = Options
    mean = tuple(v / 255 for v in LOTUS_MEAN_255)
    std = tuple(v / 255 for v in LOTUS_STD_255)
    # LoTUS trains its ResNet on Tiny-ImageNet with RandomCrop(64, padding=8, padding_mode="edge") and
    # RandomHorizontalFlip (the same file); the core pads with zeros rather than edge pixels.
    augment = Augment(crop_padding=8, flip=True)

    def find(self, root: Path) -> Source | None:
        """Cheap: file names only (the zip is opened on load)."""
        zip_path = root / ZIP_NAME
        if zip_path.is_file():
            return Source("zip", zip_path, lambda: [zip_path], lambda: read_zip(zip_path))
        for folder in (root / FOLDER, root):
            if (folder / WNIDS).is_file() and (folder / "train").is_dir() and (folder / ANNOTATIONS).is_file():
                return folder_source(folder)
        return None

    def incomplete(self, root: Path) -> str:
        """An extracted folder holding some of wnids.txt, train/ and the val annotations: which it lacks."""
        found = (lacking(folder, (WNIDS, "train/", ANNOTATIONS), "entries") for folder in (root / FOLDER, root))
        return next((text for text in found if text), "")


def folder_source(folder: Path) -> Source:
    """An extracted tree, listed on load only and once; every image keys the cache."""
    disk = DiskFiles(folder)
    listed = functools.cache(lambda: listing(disk))

    def files() -> list[Path]:
        _, train, val = listed()
        return disk.key_files([WNIDS, ANNOTATIONS] + [rel for rel, _ in train + val])

    return Source("folder", folder, files, lambda: read_tiny(disk, listed()))


def read_zip(path: Path) -> Splits:
    files = ZipFiles.find(path, WNIDS)
    if files is None:
        raise DataError(f"{path} holds no {WNIDS}: is it {ZIP_NAME} as distributed?")
    return read_tiny(files, listing(files))
