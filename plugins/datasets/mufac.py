"""MUFAC, "Machine Unlearning for Facial Age Classifier" (Choi & Na, 2023): Korean family faces,
128x128 RGB, 8 age groups, every image tagged with its family and person, so people can be forgotten.

The published ``custom_korean_family_dataset_resolution_128.zip`` (linked from
github.com/ndb796/MachineUnlearning, 01_MUFAC) holds ``custom_{train,val,test}_dataset.csv``
(columns ``family_id, person_id, age_class, image_path``; age classes ``a``..``h``) and
``{train,val,test}_images/``. It is read without unpacking, or from its extracted folder (also
LoTUS's already-cleaned ``..._128_clean/``). Splits follow LoTUS: train CSV -> train, val CSV ->
the dedicated unseen split, test CSV -> test (MUFAC's own notebooks use val as test and test as
unseen). ``groups`` names the person of every training image as ``<family_id>_<person_id>``:
``person_id`` alone is a role within a family (``D``, ``GF``, ...), so the pair identifies a person.

Images are in CSV row order, which is the protocol's: MUFAC forgets the first 1,500 training rows,
LoTUS the first 1,062 of its cleaned rows. LoTUS trains with ``ToTensor()`` only, hence mean 0 and
std 1; of its augmentation (flip, affine, colour jitter) only the flip has a core equivalent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np
from pydantic import Field

from unlearnkit import Augment, DataError, Options, RawDataset

from .archive import DiskFiles, Files, ZipFiles
from .base import READ_ERRORS, FileDataset, Source, lacking
from .cache import cache_key, cached
from .download import one_line
from .folder import decode_images

ZIP_NAME = "custom_korean_family_dataset_resolution_128.zip"
FOLDER = "custom_korean_family_dataset_resolution_128"
CLEAN_FOLDER = FOLDER + "_clean"  # LoTUS's cleaned copy (same layout, fewer CSV rows)
SPLITS = ("train", "val", "test")
CSVS = {split: f"custom_{split}_dataset.csv" for split in SPLITS}
IMAGE_DIRS = {split: f"{split}_images" for split in SPLITS}
COLUMNS = ("family_id", "person_id", "age_class", "image_path")
AGE_CLASSES = "abcdefgh"
CLASS_NAMES = ("0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80")  # years, per class a..h
SIZE = (128, 128)
FORGET_ROWS = 1500  # MUFAC's forget set: the first 1,500 rows of the train CSV
# Rows of the published CSVs (train, val, test), and what LoTUS's cleaning keeps of them (and of the
# 1,500 forget rows): notebooks/clean_MUFAC.ipynb in github.com/cspartalis/LoTUS.
PUBLISHED_ROWS = (10025, 1539, 1504)
LOTUS_CLEAN_ROWS = (6575, 1211, 1118)
LOTUS_CLEAN_FORGET = 1062
PUBLISHED = "the link in github.com/ndb796/MachineUnlearning (01_MUFAC)"


class MufacOptions(Options):
    clean: bool = Field(
        True,
        description="Drop duplicate and leaked images as LoTUS does (perceptual-hash equality): the paper's data. "
        "Without it a forget image can reappear in the retain set, so even a retrained model 'remembers' it.",
    )


def _is_tree(folder: Path) -> bool:
    return all((folder / CSVS[s]).is_file() and (folder / IMAGE_DIRS[s]).is_dir() for s in SPLITS)


def _own_load() -> None:
    raise RuntimeError("MUFAC is read by Mufac.load(), not through Source.read")


# ------------------------------------------------------------------------------------ reading
def read_table(files: Files, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image paths in the tree, labels 0..7, person ids) of one split's CSV, in row order."""
    name = CSVS[split]
    reader = csv.DictReader(io.StringIO(files.read(name).decode("utf-8-sig")))
    rels, labels, people = [], [], []
    try:
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"MUFAC: {files.where}/{name} lacks the column(s) {', '.join(missing)} (has {reader.fieldnames})."
            )
        for line, row in enumerate(reader, start=2):
            family, person, age, image = ((row.get(c) or "").strip() for c in COLUMNS)
            if len(age) != 1 or age not in AGE_CLASSES or not image:
                raise DataError(
                    f"MUFAC: {files.where}/{name} line {line} has age_class {age[:60]!r} and image_path "
                    f"{image[:60]!r}; expected a..h and a file name."
                )
            if PurePosixPath(image).is_absolute() or ".." in PurePosixPath(image).parts:
                raise DataError(
                    f"MUFAC: {files.where}/{name} line {line} has image_path {image[:60]!r}, which points "
                    f"outside {IMAGE_DIRS[split]}/; expected a file name in it."
                )
            rels.append(f"{IMAGE_DIRS[split]}/{image}")
            labels.append(AGE_CLASSES.index(age))
            people.append(f"{family}_{person}")
    except csv.Error as err:  # a field over the csv module's limit (131,072 characters), a stray quote
        raise DataError(f"MUFAC: {files.where}/{name} line {reader.reader.line_num} is not CSV: {err}.") from None
    return rels, np.array(labels, dtype=np.int64), np.array(people, dtype=str)


def regular_files(paths: list[Path]) -> list[Path]:
    """``paths``, refused where one exists but is no regular file: a FIFO named by a CSV row would block
    the load forever (a missing one is the cache key's "no such file" error)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise DataError(f"MUFAC: {path} is not a regular file (a folder, FIFO or device). Fix: replace it.")
    return paths


def perceptual_hashes(x: np.ndarray) -> list[bytes]:
    """The 64-bit DCT perceptual hash of each uint8 RGB image, as ``imagehash.phash`` (which LoTUS's
    cleaning used) defines it: greyscale, 32x32 Lanczos, 2-D DCT-II, the 8x8 lowest frequencies
    compared with their median. Exact duplicates and re-encodings get the same hash."""
    from PIL import Image

    try:
        from scipy.fftpack import dct  # the transform imagehash calls
    except ImportError:  # pragma: no cover - scipy.fftpack is legacy; scipy.fft.dct is the same transform
        from scipy.fft import dct

    out = []
    for chw in x:
        grey = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).convert("L")
        pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
        out.append(np.packbits(low > np.median(low)).tobytes())
    return out


def lotus_clean(
    train: Sequence[bytes], val: Sequence[bytes], test: Sequence[bytes], forget_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows kept by LoTUS's cleaning, given each image's hash: (train, val, test, forget count).

    Forget rows (the first ``forget_rows``, default MUFAC's 1,500) whose image is also a retain row are dropped, test rows
    whose image is in train, val rows whose image is in test; then within forget, retain, val and
    test separately only the first of identical images stays (LoTUS kept the first in directory
    order, so the counts match and the kept copy is the first in CSV order here).
    """

    def first_of_each(rows: Sequence[int], hashes: Sequence[bytes]) -> list[int]:
        seen: set[bytes] = set()
        keep = []
        for i in rows:
            if hashes[i] not in seen:
                seen.add(hashes[i])
                keep.append(i)
        return keep

    n_forget = min(FORGET_ROWS if forget_rows is None else forget_rows, len(train))
    retain_hashes, train_hashes, test_hashes = set(train[n_forget:]), set(train), set(test)
    forget = first_of_each([i for i in range(n_forget) if train[i] not in retain_hashes], train)
    retain = first_of_each(range(n_forget, len(train)), train)
    keep_test = first_of_each([i for i in range(len(test)) if test[i] not in train_hashes], test)
    keep_val = first_of_each([i for i in range(len(val)) if val[i] not in test_hashes], val)
    as_rows = [np.array(rows, dtype=np.int64) for rows in (forget + retain, keep_val, keep_test)]
    return as_rows[0], as_rows[1], as_rows[2], len(forget)


# ------------------------------------------------------------------------------------- plugin
class Mufac(FileDataset):
    name = "mufac"
    algorithm_version = 1
    summary = (
        "MUFAC Korean family faces, 128x128 RGB, 8 age groups, person ids for identity forgetting; val CSV as "
        "the unseen split (the published zip; no download)."
    )
    title = "MUFAC"
    wants = f"{ZIP_NAME} (or its extracted folder)"
    looks_for = (
        f"{ZIP_NAME}, {FOLDER}/, {CLEAN_FOLDER}/ or a folder holding "
        "custom_{train,val,test}_dataset.csv and {train,val,test}_images/"
    )
    install_hint = f"download {ZIP_NAME} from {PUBLISHED} into DIR (nothing is downloaded automatically)"
    downloadable = False
    class_names = CLASS_NAMES
    mean = (0.0, 0.0, 0.0)  # LoTUS feeds MUFAC to its models as ToTensor() output, unnormalised
    std = (1.0, 1.0, 1.0)
    augment = Augment(flip=True)
    Options: ClassVar[type[Options]] = MufacOptions

    def find(self, root: Path) -> Source | None:
        """Cheap: file names only. The published data (extracted, then zipped) before LoTUS's cleaned copy."""
        for folder in (root / FOLDER, root):
            if _is_tree(folder):
                return self.folder_source(folder)
        if (root / ZIP_NAME).is_file():
            return Source("zip", root / ZIP_NAME, lambda: [root / ZIP_NAME], _own_load)
        return self.folder_source(root / CLEAN_FOLDER) if _is_tree(root / CLEAN_FOLDER) else None

    def incomplete(self, root: Path) -> str:
        """An extracted folder holding some of its three CSVs and three image folders: which it lacks."""
        wanted = [*CSVS.values(), *(f"{d}/" for d in IMAGE_DIRS.values())]
        found = (
            lacking(folder, wanted, "CSVs and image folders") for folder in (root / FOLDER, root, root / CLEAN_FOLDER)
        )
        return next((text for text in found if text), "")

    def folder_source(self, folder: Path) -> Source:
        disk = DiskFiles(folder)
        return Source("folder", folder, lambda: self.folder_files(disk), _own_load)

    @staticmethod
    def folder_files(disk: DiskFiles) -> list[Path]:
        """The CSVs and every image they name: what keys the cache of an extracted folder."""
        rels = [CSVS[s] for s in SPLITS] + [r for s in SPLITS for r in read_table(disk, s)[0]]
        return regular_files(disk.key_files(rels))

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        o = self.options
        assert isinstance(o, MufacOptions)
        source = self.locate(data_dir)
        if source is None:
            raise DataError(self.missing_message(data_dir))
        what = f"MUFAC in {source.where}"
        try:
            key = cache_key(self.name, source.files(), {"kind": source.kind, "clean": o.clean, "size": SIZE})
        except READ_ERRORS as err:  # the CSVs are read to list an extracted folder's images
            raise DataError(f"Cannot read {what}: {one_line(err)}.") from None

        def build() -> RawDataset:
            try:
                return self.decode_mufac(source, o.clean)
            except READ_ERRORS as err:
                raise DataError(f"Cannot read {what}: {one_line(err)}. Check or replace the file(s).") from None

        return cached(Path(cache_dir), self.name, key, build)

    def decode_mufac(self, source: Source, clean: bool) -> RawDataset:
        files: Files | None = (
            ZipFiles.find(source.where, CSVS["train"]) if source.kind == "zip" else DiskFiles(source.where)
        )
        if files is None:
            raise DataError(f"{source.where} holds no {CSVS['train']}: is it {ZIP_NAME} as published?")
        tables = {s: read_table(files, s) for s in SPLITS}
        images = {}
        for s, (rels, _, _) in tables.items():
            images[s] = decode_images(
                files.items(rels), [f"{files.where}/{r}" for r in rels], mode="RGB", size=SIZE, resize=True
            )
        keep = {s: np.arange(len(tables[s][1])) for s in SPLITS}
        if clean:
            hashes = {s: perceptual_hashes(images[s]) for s in SPLITS}
            keep["train"], keep["val"], keep["test"], n_forget = lotus_clean(
                hashes["train"], hashes["val"], hashes["test"]
            )
            self.check_published_counts(source, tuple(len(tables[s][1]) for s in SPLITS), keep, n_forget)
        (x_tr, x_val, x_te), (y_tr, y_val, y_te) = (
            [images[s][keep[s]] for s in SPLITS],
            [tables[s][1][keep[s]] for s in SPLITS],
        )
        groups = tables["train"][2][keep["train"]]
        return RawDataset(
            x_tr,
            y_tr,
            x_te,
            y_te,
            list(CLASS_NAMES),
            self.mean,
            self.std,
            groups=groups,
            x_unseen=x_val,
            y_unseen=y_val,
        )

    @staticmethod
    def check_published_counts(
        source: Source, rows: tuple[int, ...], keep: dict[str, np.ndarray], n_forget: int
    ) -> None:
        """On the published CSVs (recognised by their row counts) cleaning must keep what LoTUS kept."""
        if rows != PUBLISHED_ROWS:
            return  # another version, a subset or a test fixture: nothing published to compare with
        kept = tuple(len(keep[s]) for s in SPLITS)
        if kept != LOTUS_CLEAN_ROWS or n_forget != LOTUS_CLEAN_FORGET:
            expected = "/".join(map(str, LOTUS_CLEAN_ROWS))
            raise DataError(
                f"MUFAC in {source.where}: cleaning kept {'/'.join(map(str, kept))} train/val/test images "
                f"({n_forget} of the first {FORGET_ROWS} training rows) where LoTUS's cleaning of the published files "
                f"keeps {expected} ({LOTUS_CLEAN_FORGET}): the images differ from the published ones. Fix: use the "
                f"published {ZIP_NAME}, or set the dataset option clean=false."
            )
