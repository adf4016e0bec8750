"""Everyday mistakes with the built-in datasets' files: a copy cut short, a tarball left packed, class
folders named otherwise, images loose in train/, a huge photo. Each must be one line naming what is
wrong and where, never "not found" alone, a raw warning or a traceback."""

from __future__ import annotations

import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.test_datasets import fake_mnist, one_line_error, save_png, write_mnist_idx, write_tree
from tests.test_large_datasets import write_mufac
from unlearnkit.errors import DataError
from unlearnkit_plugins.datasets import (
    Cifar10,
    Cifar20,
    Cifar100,
    FashionMnist,
    ImageFolder,
    ImageNet,
    Mnist,
    Mufac,
    Svhn,
    Synthetic,
    TinyImageNet,
)
from unlearnkit_plugins.datasets.cifar import CIFAR10_CLASSES
from unlearnkit_plugins.datasets.imagefolder import ImageFolderOptions


def refusal(ds, data_dir: Path) -> str:
    """The one-line message of ``check_available`` on ``data_dir`` (it must refuse)."""
    with pytest.raises(DataError) as excinfo:
        ds.check_available(data_dir)
    return one_line_error(excinfo)


@pytest.fixture(autouse=True)
def no_system_fashion_mnist(monkeypatch, tmp_path):
    """Fashion-MNIST's Debian folder may be installed: these tests look at the data dir alone."""
    monkeypatch.setattr(FashionMnist, "system_dirs", (tmp_path / "no-system-dir",))


# ------------------------------------------------------------------------ copies cut short
@pytest.mark.parametrize("cls", [Mnist, FashionMnist])
def test_three_of_the_four_idx_files_name_the_missing_one(tmp_path, cls):
    write_mnist_idx(tmp_path / "d", fake_mnist(), gz=True)
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    msg = refusal(cls(), tmp_path / "d")
    assert f"{tmp_path / 'd'} lacks t10k-labels-idx1-ubyte[.gz] (it holds 3 of the 4 IDX files)" in msg


def test_one_of_the_two_svhn_mat_files_names_the_other(tmp_path):
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"")
    assert f"{tmp_path / 'svhn'} lacks test_32x32.mat (it holds 1 of the 2 .mat files)" in refusal(Svhn(), tmp_path)


def test_a_mufac_folder_without_one_image_folder_names_it(tmp_path):
    folder = tmp_path / "custom_korean_family_dataset_resolution_128"
    write_mufac(folder)
    shutil.rmtree(folder / "test_images")
    assert f"{folder} lacks test_images/ (it holds 5 of the 6" in refusal(Mufac(), tmp_path)


def test_a_tiny_imagenet_folder_without_val_annotations_names_them(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    (folder / "train" / "n01443537" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("n01443537\n")
    assert f"{folder} lacks val/val_annotations.txt" in refusal(TinyImageNet(), tmp_path)


def test_imagenet_train_folders_without_val_say_the_test_split_is_missing(tmp_path):
    save_png(tmp_path / "train" / "n01440764" / "n01440764_1.JPEG", np.zeros((3, 8, 8), np.uint8))
    msg = refusal(ImageNet(), tmp_path)
    assert f"{tmp_path / 'train'} holds <wnid>/ folders, but {tmp_path} has no val/<wnid>/" in msg


# ------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize(
    ("cls", "tarball", "folder"),
    [
        (Cifar10, "cifar-10-python.tar.gz", "cifar-10-batches-py"),
        (Cifar100, "cifar-100-python.tar.gz", "cifar-100-python"),
        (Cifar20, "cifar-100-python.tar.gz", "cifar-100-python"),
    ],
)
def test_the_official_tarball_left_packed_says_extract_it(tmp_path, cls, tarball, folder):
    (tmp_path / tarball).write_bytes(b"")
    msg = refusal(cls(), tmp_path)
    assert f"{tmp_path / tarball} is there but not extracted: run `tar -xzf" in msg and f"{folder}/" in msg


def test_a_cifar10_tree_with_a_missing_or_misnamed_class_folder_names_it(tmp_path):
    write_tree(tmp_path / "d", CIFAR10_CLASSES, {"train": 1, "test": 1})
    shutil.rmtree(tmp_path / "d" / "test" / "truck")
    (tmp_path / "d" / "train" / "airplane").rename(tmp_path / "d" / "train" / "Airplane")
    msg = refusal(Cifar10(), tmp_path / "d")
    assert "train/ lacks airplane and has the unexpected Airplane" in msg
    assert "test/ lacks truck" in msg and "exactly its 10 class folders" in msg


def test_cifar20_reads_no_tree_so_names_no_tree(tmp_path):
    write_tree(tmp_path, ["a", "b"], {"train": 1, "test": 1})
    assert "class-folder tree" not in refusal(Cifar20(), tmp_path)


def test_an_archive_that_is_no_tar_says_so_in_a_few_words(tmp_path):
    (tmp_path / "cifar10-images.tar.gz").write_bytes(b"hello")
    with pytest.raises(DataError) as excinfo:
        Cifar10().load(tmp_path, tmp_path / "cache")
    msg = one_line_error(excinfo)
    assert "cifar10-images.tar.gz is not a tar archive (plain, gzip, bzip2 or xz). Check or replace" in msg


# ---------------------------------------------------------------------------- imagefolder
def test_imagefolder_images_loose_in_the_split_folders_are_named(tmp_path):
    for split in ("train", "test"):
        save_png(tmp_path / split / "0.png", np.zeros((3, 4, 4), np.uint8))
    msg = refusal(ImageFolder(), tmp_path)
    assert f"{tmp_path}/train/ and test/ have no class folders (2 image(s) lie directly in them)" in msg


def test_imagefolder_without_a_test_split_names_it(tmp_path):
    write_tree(tmp_path / "mine", ["a", "b"], {"train": 1})
    assert f"{tmp_path / 'mine'} has train/ but no test/ (or val/)" in refusal(ImageFolder(), tmp_path)


def test_a_huge_image_is_no_raw_warning_and_one_twice_the_limit_is_one_line(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20 * 20)  # PIL warns past this, refuses past twice it
    write_tree(tmp_path, ["a", "b"], {"train": 2, "test": 1}, shape=(3, 24, 24))  # 576 pixels: a warning
    ds = ImageFolder(ImageFolder.parse_options({"size": "8"}))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        raw = ds.load(tmp_path, tmp_path / "cache")
    assert raw.x_train.shape == (4, 3, 8, 8)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    save_png(tmp_path / "train" / "a" / "9.png", np.zeros((3, 30, 30), np.uint8))  # 900 > 2 x 400
    with pytest.raises(DataError, match=r"Cannot read image .*9\.png: Image size \(900 pixels\)") as excinfo:
        ds.load(tmp_path, tmp_path / "cache2")
    one_line_error(excinfo)


def test_option_descriptions_say_the_values_they_take():
    assert "L (greyscale) or RGB" in (ImageFolderOptions.model_fields["mode"].description or "")
    assert "1 to 3" in (Synthetic.Options.model_fields["channels"].description or "")


# ------------------------------------------------------------------------------------ CLI
def test_the_cli_prints_the_missing_idx_file_and_exits_non_zero(cli, tmp_path):
    write_mnist_idx(tmp_path / "d", fake_mnist(), gz=False)
    (tmp_path / "d" / "train-labels-idx1-ubyte").unlink()
    code, out, err = cli("run", "--dataset", "mnist", "--data-dir", str(tmp_path / "d"), "--model", "cnn")
    text = " ".join((out + err).split())  # rich wraps long lines
    assert code != 0 and "Traceback" not in text
    assert "lacks train-labels-idx1-ubyte[.gz] (it holds 3 of the 4 IDX files)" in text


def test_a_tar_that_is_a_folder_tree_of_the_wrong_compression_still_loads(tmp_path):
    """open_tar keeps tarfile's own detection: a bzip2 tree is read like a gzip one."""
    write_tree(tmp_path / "t", CIFAR10_CLASSES, {"train": 1, "test": 1})
    with tarfile.open(tmp_path / "cifar10-images.tar.gz", "w:bz2") as tf:  # misnamed: bzip2 inside
        tf.add(tmp_path / "t", arcname="cifar10-images")
    shutil.rmtree(tmp_path / "t")
    raw = Cifar10().load(tmp_path, tmp_path / "cache")
    assert raw.x_train.shape == (10, 3, 32, 32)
