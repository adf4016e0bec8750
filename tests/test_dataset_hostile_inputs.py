"""Hostile and damaged dataset files: each is refused in one line (a DataError) or read as intended,
never a traceback, a hang, a read outside the data dir, or values silently truncated or wrapped.

Every fixture is built here, small, in a temporary folder.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit_plugins.datasets import (
    Cifar10,
    Cifar20,
    Cifar100,
    ImageFolder,
    ImageNet,
    Mnist,
    Mufac,
    Svhn,
    TinyImageNet,
)
from unlearnkit_plugins.datasets.archive import DiskFiles, tar_index
from unlearnkit_plugins.datasets.cache import read_cache
from unlearnkit_plugins.datasets.idx import read_idx

rng = np.random.default_rng(11)


# ------------------------------------------------------------------------------------ helpers
def refused(call, match: str) -> str:
    """The one-line DataError ``call()`` raises, checked against ``match``."""
    with pytest.raises(DataError, match=match) as excinfo:
        call()
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def png_bytes(size=(8, 8), mode="RGB", value=0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, "PNG")
    return buf.getvalue()


def image_tree(root: Path, classes=("a", "b"), n: int = 2) -> Path:
    for split in ("train", "test"):
        for label, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i}.png").write_bytes(png_bytes(value=(40 * i, 10 * label, 0)))
    return root


def feed_fifo_later(path: Path, data: bytes, seconds: float = 5.0) -> None:
    """Write ``data`` into the FIFO at ``path`` if something opens it for reading within ``seconds``:
    code that (wrongly) reads it then sees junk and fails, instead of blocking the test forever."""

    def feed() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.01)
                continue
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return

    threading.Thread(target=feed, daemon=True).start()


def cifar_batches(folder: Path, edit=None, names=None) -> Path:
    """torchvision's python-version CIFAR batches (4 images each); ``edit(name, dict)`` may change one."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        d = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [0, 1, 2, 3],
            b"fine_labels": [0, 1, 2, 3],
            b"coarse_labels": [0, 1, 2, 3],
        }
        blob = edit(name, d) if edit else d
        (folder / name).write_bytes(blob if isinstance(blob, bytes) else pickle.dumps(blob, protocol=2))
    return folder.parent


def idx_blob(arr: np.ndarray, type_byte: int = 0x08, trailing: bytes = b"") -> bytes:
    return bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes() + trailing


def mnist_idx(folder: Path, **replace: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": idx_blob(np.zeros((4, 28, 28), np.uint8)),
        "train-labels-idx1-ubyte": idx_blob(np.arange(4, dtype=np.uint8)),
        "t10k-images-idx3-ubyte": idx_blob(np.zeros((2, 28, 28), np.uint8)),
        "t10k-labels-idx1-ubyte": idx_blob(np.arange(2, dtype=np.uint8)),
    }
    for name, blob in {**files, **replace}.items():
        (folder / name).write_bytes(blob)
    return folder


def mnist_npz(folder: Path, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {
        "x_train": np.zeros((4, 28, 28), np.uint8),
        "y_train": np.arange(4, dtype=np.uint8),
        "x_test": np.zeros((2, 28, 28), np.uint8),
        "y_test": np.arange(2, dtype=np.uint8),
    }
    np.savez(folder / "mnist.npz", **{**base, **arrays})
    return folder


def huge_npy(shape: str) -> bytes:
    """An .npy member whose header declares ``shape`` (terabytes) over 100 bytes of data."""
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (118 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 100


# ------------------------------------------------------------------------------ file names
def test_file_and_class_names_that_are_not_utf8_load(tmp_path):
    """Linux names are bytes: a ``\\xff`` (Latin-1) file or class folder name crashed the cache key."""
    root = image_tree(tmp_path / "d")
    os.makedirs(os.fsencode(root / "train") + b"/\xff\xfe")
    os.makedirs(os.fsencode(root / "test") + b"/\xff\xfe")
    for split in ("train", "test"):
        (Path(os.fsdecode(os.fsencode(root / split) + b"/\xff\xfe")) / "0.png").write_bytes(png_bytes())
    Path(os.fsdecode(os.fsencode(root / "train" / "a") + b"/\xff.png")).write_bytes(png_bytes())
    raw = ImageFolder().load(root, tmp_path / "cache")
    assert len(raw.class_names) == 3 and raw.x_train.shape == (6, 3, 8, 8)
    again = ImageFolder().load(root, tmp_path / "cache")  # from the cache, keyed by those names
    np.testing.assert_array_equal(again.x_train, raw.x_train)


def test_a_data_dir_that_is_a_file_is_called_a_file(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    refused(lambda: ImageFolder().check_available(tmp_path / "images.zip"), "is a file, not a folder")


# ------------------------------------------------------------------------------ CIFAR pickles
CRAFTED_PICKLES = {
    "dtype-of-1": b"\x80\x02cnumpy\ndtype\nq\x00(K\x01tR.",
    "codecs-encode-int": b"\x80\x02c_codecs\nencode\nq\x00(K\x01K\x02tR.",
    "reconstruct-one-argument": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00(K\x01tR.",
    # numpy's own array pickle with the (0,) shape it always writes swapped for 2**40: a 1 TiB allocation
    "reconstruct-1TiB": pickle.dumps({b"data": np.zeros(3, np.uint8)}, protocol=2).replace(
        b"K\x00\x85", b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85", 1
    ),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_PICKLES))
def test_a_pickle_calling_the_allowed_numpy_functions_with_crafted_arguments_is_one_line(tmp_path, name):
    blob = CRAFTED_PICKLES[name]
    root = cifar_batches(tmp_path / "cifar-10-batches-py", lambda n, d: blob if n == "data_batch_3" else d)
    refused(lambda: Cifar10().load(root, tmp_path / "cache"), r"data_batch_3 is not a CIFAR pickle")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (b"labels", None, "labels holds object values"),
        (b"labels", {1: 2}, "labels holds object values"),
        (b"labels", [2**70, 1, 2, 3], "labels holds object values"),
        (b"labels", [0.5, 1.7, 2.2, 3.9], "labels holds fractional"),  # were truncated to 0, 1, 2, 3
        (b"data", None, "data holds object values"),
        (b"data", np.full((4, 3072), 0.5), "data holds fractional"),  # was 0
        (b"data", np.full((4, 3072), 1000, dtype=np.int64), r"data runs 1000..1000, expected pixels 0..255"),  # was 232
    ],
)
def test_cifar_batch_values_a_cast_would_change_are_refused(tmp_path, key, value, match):
    root = cifar_batches(tmp_path / "cifar-10-batches-py", lambda n, d: {**d, key: value})
    refused(lambda: Cifar10().load(root, tmp_path / "cache"), match)


def test_cifar_batches_of_plain_python_ints_still_load(tmp_path):
    x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    root = cifar_batches(tmp_path / "cifar-10-batches-py", lambda n, d: {**d, b"data": x.tolist()})
    raw = Cifar10().load(root, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_train[:4], x.reshape(4, 3, 32, 32))


def test_cifar100_meta_whose_names_are_not_a_list_is_one_line(tmp_path):
    root = cifar_batches(tmp_path / "cifar-100-python", names=["train", "test"])
    (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps({b"fine_label_names": 5}, protocol=2))
    refused(lambda: Cifar100().load(root, tmp_path / "cache"), "meta's fine_label_names is not a list of names")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: {k: v for k, v in d.items() if k != b"fine_labels"}, "train lacks 'fine_labels'"),
        (lambda d: {**d, b"fine_labels": [1, 2]}, "train has 2 fine labels for 4 images"),
        (lambda d: {**d, b"fine_labels": [500, 1, 2, 3]}, r"fine labels run 1..500, expected 0..99"),
        (lambda d: {**d, b"fine_labels": {}}, "fine_labels holds object values"),
    ],
)
def test_cifar20_fine_labels_are_checked(tmp_path, edit, match):
    root = cifar_batches(tmp_path / "cifar-100-python", lambda n, d: edit(d) if n == "train" else d, ["train", "test"])
    refused(lambda: Cifar20().load(root, tmp_path / "cache"), match)


# ---------------------------------------------------------------------------------- MATLAB
def svhn_files(folder: Path, x=None, y=None, raw: bytes | None = None) -> Path:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (folder / "train_32x32.mat").write_bytes(raw)
    else:
        x = np.zeros((32, 32, 3, 4), np.uint8) if x is None else x
        y = np.array([[1], [2], [10], [3]], np.uint8) if y is None else y
        savemat(folder / "train_32x32.mat", {"X": x, "y": y})
    savemat(folder / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [2]], np.uint8)})
    return folder


def test_an_empty_svhn_mat_file_is_one_line(tmp_path):
    root = svhn_files(tmp_path / "d", raw=b"")
    refused(lambda: Svhn().load(root, tmp_path / "cache"), "train_32x32.mat|not a readable MATLAB file")


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.full((32, 32, 3, 4), 0.7), None, "X holds fractional"),  # was 0
        (np.full((32, 32, 3, 4), 300), None, r"X runs 300..300, expected pixels 0..255"),  # was 44
        (None, np.array([[1.5], [2], [3], [4]]), "y holds fractional"),  # was 1
    ],
)
def test_svhn_values_a_cast_would_change_are_refused(tmp_path, x, y, match):
    root = svhn_files(tmp_path / "d", x=x, y=y)
    refused(lambda: Svhn().load(root, tmp_path / "cache"), match)


def test_svhn_whole_numbers_stored_as_doubles_still_load(tmp_path):
    """MATLAB's default type is double: whole-number labels and pixels so stored are the same data."""
    x = rng.integers(0, 256, (32, 32, 3, 4)).astype(np.float64)
    root = svhn_files(tmp_path / "d", x=x, y=np.array([[1.0], [2.0], [10.0], [3.0]]))
    raw = Svhn().load(root, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_train, x.transpose(3, 2, 0, 1).astype(np.uint8))
    assert raw.y_train.tolist() == [1, 2, 0, 3]


def add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def jpeg_bytes(size=(20, 20)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (9, 9, 9)).save(buf, "JPEG")
    return buf.getvalue()


def test_an_empty_imagenet_devkit_meta_mat_is_one_line(tmp_path):
    root = tmp_path / "imagenet"
    for wnid in ("n00000001", "n00000002"):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_1.JPEG").write_bytes(jpeg_bytes())
    (root / "val").mkdir()
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(jpeg_bytes())
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tf:
        add_member(tf, "ILSVRC2012_devkit_t12/data/meta.mat", b"")
        add_member(tf, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", b"1\n")
    ds = ImageNet(ImageNet.parse_options({"crop": "16"}))
    refused(lambda: ds.load(root, tmp_path / "cache"), "not a readable MATLAB file")


# ------------------------------------------------------------------------------ IDX and npz
def test_an_idx_file_holding_more_than_its_header_declares_is_refused(tmp_path):
    trailing = idx_blob(np.arange(4, dtype=np.uint8), trailing=b"\x07" * 1000)
    root = mnist_idx(tmp_path / "d", **{"train-labels-idx1-ubyte": trailing})
    refused(lambda: Mnist().load(root, tmp_path / "cache"), r"holds more data than its header's \(4,\) declares")


def test_a_small_gzip_that_inflates_far_past_its_header_is_not_decompressed(tmp_path):
    """4 declared labels followed by 64 MB of zeros (64 KB gzipped): only the header's bytes are read."""
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_blob(np.arange(4, dtype=np.uint8)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="holds more data"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read {peak / 2**20:.0f} MiB"


def test_idx_labels_that_are_not_whole_numbers_are_refused(tmp_path):
    labels = idx_blob(np.array([0.5, 1, 2, 3], ">f4"), type_byte=0x0D)  # were truncated to 0, 1, 2, 3
    root = mnist_idx(tmp_path / "d", **{"train-labels-idx1-ubyte": labels})
    refused(lambda: Mnist().load(root, tmp_path / "cache"), "holds fractional or non-finite float32 values")


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0.5, 1.9, 2, 3]), "y_train holds fractional"),
        (np.array([True, False, True, False]), "y_train holds bool values"),
        (np.zeros(4, dtype=[("a", "i4"), ("b", "f4")]), "y_train holds void64 values"),  # was a TypeError traceback
    ],
)
def test_npz_labels_that_are_not_integers_are_refused(tmp_path, labels, match):
    root = mnist_npz(tmp_path / "d", y_train=labels)
    refused(lambda: Mnist().load(root, tmp_path / "cache"), match)


def test_an_npy_file_named_mnist_npz_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    with open(tmp_path / "d" / "mnist.npz", "wb") as f:
        np.save(f, np.zeros(3))
    refused(lambda: Mnist().load(tmp_path / "d", tmp_path / "cache"), "is a single .npy array, not an .npz archive")


def test_an_npz_member_declaring_terabytes_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    with zipfile.ZipFile(tmp_path / "d" / "mnist.npz", "w") as zf:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            zf.writestr(f"{key}.npy", huge_npy("(100000000000, 28, 28)"))
    refused(lambda: Mnist().load(tmp_path / "d", tmp_path / "cache"), "x_train declares an array larger than memory")


def test_images_without_pixels_are_refused(tmp_path):
    root = mnist_idx(
        tmp_path / "d",
        **{
            "train-images-idx3-ubyte": idx_blob(np.zeros((4, 0, 0), np.uint8)),
            "t10k-images-idx3-ubyte": idx_blob(np.zeros((2, 0, 0), np.uint8)),
        },
    )
    refused(lambda: Mnist().load(root, tmp_path / "cache"), r"images are \(1, 0, 0\).*no pixels")


# ---------------------------------------------------------------------------- Tiny-ImageNet
def tiny_tree(root: Path, wnids_text: bytes | None = None, annotations: bytes | None = None) -> Path:
    top = root / "tiny-imagenet-200"
    wnids = ("n01", "n02")
    lines = []
    for k, wnid in enumerate(wnids):
        (top / "train" / wnid / "images").mkdir(parents=True)
        (top / "train" / wnid / "images" / f"{wnid}_0.JPEG").write_bytes(png_bytes((64, 64)))
        (top / "val" / "images").mkdir(parents=True, exist_ok=True)
        (top / "val" / "images" / f"val_{k}.JPEG").write_bytes(png_bytes((64, 64)))
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t1\t1")
    (top / "wnids.txt").write_bytes(wnids_text if wnids_text is not None else "\n".join(wnids).encode())
    (top / "val" / "val_annotations.txt").write_bytes(annotations or "\n".join(lines).encode())
    return root


def test_tiny_imagenet_text_files_that_are_not_utf8_are_one_line(tmp_path):
    root = tiny_tree(tmp_path / "d", wnids_text=b"n01\n\xff\xfe\n")
    refused(
        lambda: TinyImageNet().load(root, tmp_path / "cache"), r"wnids.txt is not UTF-8 text \(byte 0xff at offset 4\)"
    )


def test_tiny_imagenet_wnids_with_a_byte_order_mark_load(tmp_path):
    root = tiny_tree(tmp_path / "d", wnids_text=b"\xef\xbb\xbfn01\nn02\n")
    assert TinyImageNet().load(root, tmp_path / "cache").class_names == ["n01", "n02"]


def test_tiny_imagenet_image_labelled_twice_differently_is_refused(tmp_path):
    twice = b"val_0.JPEG\tn01\nval_0.JPEG\tn02\nval_1.JPEG\tn02\n"  # the last label used to win, silently
    root = tiny_tree(tmp_path / "d", annotations=twice)
    refused(lambda: TinyImageNet().load(root, tmp_path / "cache"), "labels 'val_0.JPEG' twice, with different wnids")


def test_a_fifo_named_like_an_image_is_no_file_of_a_tree(tmp_path):
    """Opening a FIFO blocks until someone writes: the load hung forever."""
    root = tiny_tree(tmp_path / "d")
    fifo = root / "tiny-imagenet-200" / "train" / "n01" / "images" / "n01_1.JPEG"
    os.mkfifo(fifo)
    feed_fifo_later(fifo, b"not an image")
    names = DiskFiles(root / "tiny-imagenet-200").names()
    assert "train/n01/images/n01_0.JPEG" in names and "train/n01/images/n01_1.JPEG" not in names
    assert TinyImageNet().load(root, tmp_path / "cache").x_train.shape == (2, 3, 64, 64)


# ------------------------------------------------------------------------------------ MUFAC
MUFAC_HEADER = "family_id,person_id,age_class,image_path\n"


def mufac_tree(root: Path, train_csv: str | None = None) -> Path:
    top = root / "custom_korean_family_dataset_resolution_128"
    for split in ("train", "val", "test"):
        (top / f"{split}_images").mkdir(parents=True)
        rows = []
        for k in range(2):
            (top / f"{split}_images" / f"{split}{k}.png").write_bytes(png_bytes((128, 128), value=(k, 0, 0)))
            rows.append(f"F{k},D,{'ab'[k]},{split}{k}.png\n")
        text = train_csv if split == "train" and train_csv is not None else MUFAC_HEADER + "".join(rows)
        (top / f"custom_{split}_dataset.csv").write_text(text)
    return root


def mufac(**options):
    return Mufac(Mufac.parse_options({"clean": "false", **options}))


@pytest.mark.parametrize("image", ["../../../outside.png", "/ABSOLUTE/outside.png"])
def test_a_mufac_row_naming_a_file_outside_its_image_folder_is_refused(tmp_path, image):
    (tmp_path / "outside.png").write_bytes(png_bytes((128, 128)))  # ../../../ from train_images/ reaches it
    image = image.replace("/ABSOLUTE", str(tmp_path))
    root = mufac_tree(tmp_path / "d", MUFAC_HEADER + f"F0,D,a,{image}\n")
    refused(
        lambda: mufac().load(root, tmp_path / "cache"), r"line 2 has image_path .* which points outside train_images/"
    )


def test_a_mufac_csv_field_over_the_csv_limit_is_one_line(tmp_path):
    root = mufac_tree(tmp_path / "d", MUFAC_HEADER + "F0,D,a,train0.png\n" + 'F1,D,a,"' + "x" * 200_000 + '"\n')
    refused(lambda: mufac().load(root, tmp_path / "cache"), r"custom_train_dataset.csv line 3 is not CSV: field larger")


def test_a_mufac_row_naming_a_fifo_is_refused_not_waited_on(tmp_path):
    root = mufac_tree(tmp_path / "d", MUFAC_HEADER + "F0,D,a,fifo.png\n")
    fifo = root / "custom_korean_family_dataset_resolution_128" / "train_images" / "fifo.png"
    os.mkfifo(fifo)
    feed_fifo_later(fifo, b"not an image")
    refused(lambda: mufac().load(root, tmp_path / "cache"), r"fifo.png is not a regular file")


# ------------------------------------------------------------------------------------ caches
def mnist_cache_entry(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    data = mnist_npz(tmp_path / "d")
    Mnist().load(data, tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("mnist-*.npz")
    with np.load(entry) as z:
        return data, entry, {k: z[k] for k in z.files}


@pytest.mark.parametrize(
    ("field", "value"),
    [("y_train", np.array([99, 1, 2, 3])), ("mean", np.array([np.nan])), ("std", np.array([0.0]))],
)
def test_a_cache_entry_no_loader_could_have_written_is_rebuilt(tmp_path, field, value):
    """Its name (hence its key) is public: a swapped-in file with the right key but labels past the
    classes or a NaN mean was used as is."""
    data, entry, arrays = mnist_cache_entry(tmp_path)
    np.savez(entry, **{**arrays, field: value})
    key = entry.stem.split("-", 1)[1]
    assert read_cache(entry, key) is None
    raw = Mnist().load(data, tmp_path / "cache")
    assert raw.y_train.tolist() == [0, 1, 2, 3] and raw.mean == Mnist.mean and raw.std == Mnist.std
    assert read_cache(entry, key) is not None  # rewritten


def test_a_cache_entry_declaring_terabytes_is_rebuilt(tmp_path):
    data, entry, _ = mnist_cache_entry(tmp_path)
    with zipfile.ZipFile(entry) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["x_train.npy"] = huge_npy("(100000000000, 1, 28, 28)")
    with zipfile.ZipFile(entry, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    assert Mnist().load(data, tmp_path / "cache").x_train.shape == (4, 1, 28, 28)


def test_a_cached_tar_index_with_ranges_past_the_archive_is_rebuilt(tmp_path):
    """A worker reads each image with os.pread(size): a swapped index asking for 2**62 bytes was a
    MemoryError traceback."""
    archive = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(archive, "w") as tf:
        for k in range(3):
            add_member(tf, f"ILSVRC2012_val_{k + 1:08d}.JPEG", jpeg_bytes())
    good = tar_index(archive, tmp_path / "cache", nested=False)
    (entry,) = (tmp_path / "cache").glob("tar-index-*.npz")
    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    for field, value in (("sizes", np.array([2**62, 1, 1])), ("offsets", np.array([-1, 0, 0]))):
        np.savez(entry, **{**arrays, field: value})
        again = tar_index(archive, tmp_path / "cache", nested=False)
        np.testing.assert_array_equal(again.sizes, good.sizes)
        np.testing.assert_array_equal(again.offsets, good.offsets)
