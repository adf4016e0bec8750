"""Dataset plugins: the embedded sets, the real shared data, tiny fake files of every accepted
format (pixel-exact), missing-file and offline-download errors, and the decoded-array cache."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit_plugins.datasets import (
    DATASETS,
    Cifar10,
    Cifar100,
    Digits,
    FashionMnist,
    ImageFolder,
    Mnist,
    Svhn,
    Synthetic,
    register_datasets,
)
from unlearnkit_plugins.datasets.cache import read_cache
from unlearnkit_plugins.datasets.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from unlearnkit_plugins.datasets.folder import natural_key
from unlearnkit_plugins.datasets.idx import read_idx

ROOT = Path(__file__).resolve().parents[1]
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
rng = np.random.default_rng(7)


def shared_dir() -> Path | None:
    for cand in filter(None, [os.environ.get("UNLEARNKIT_SHARED_DATA"), ROOT.parent / "shared" / "data"]):
        if Path(cand).is_dir():
            return Path(cand)
    return None


@pytest.fixture
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.skip("real data not found: set UNLEARNKIT_SHARED_DATA or place ../shared/data beside the repo")
    return path


@pytest.fixture
def offline(monkeypatch):
    """No shared-data env var, and every URL open fails as on a machine without internet."""
    monkeypatch.delenv("UNLEARNKIT_SHARED_DATA", raising=False)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npz"))


# ------------------------------------------------------------------------- fake file writers
def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> None:
    """The IDX format by hand: 0, 0, type byte (0x08 = uint8), rank, big-endian dims, data."""
    assert arr.dtype == np.uint8
    blob = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if gz else blob)


def fake_mnist(n_train: int = 12, n_test: int = 6, hw: int = 28):
    x_tr = rng.integers(0, 256, (n_train, hw, hw), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, hw, hw), dtype=np.uint8)
    y_tr = (np.arange(n_train) % 10).astype(np.uint8)
    y_te = (np.arange(n_test) * 3 % 10).astype(np.uint8)
    return x_tr, y_tr, x_te, y_te


def write_mnist_idx(folder: Path, data, *, gz: bool, dot_names: bool = False) -> None:
    sep = "." if dot_names else "-"
    for arr, stem, rank in zip(data, ("train-images", "train-labels", "t10k-images", "t10k-labels"), (3, 1, 3, 1)):
        write_idx(folder / f"{stem}{sep}idx{rank}-ubyte{'.gz' if gz else ''}", arr, gz=gz)


def assert_mnist_equal(raw, data) -> None:
    x_tr, y_tr, x_te, y_te = data
    assert raw.x_train.shape == (len(x_tr), 1, *x_tr.shape[1:]) and raw.x_train.dtype == np.uint8
    np.testing.assert_array_equal(raw.x_train[:, 0], x_tr)
    np.testing.assert_array_equal(raw.x_test[:, 0], x_te)
    np.testing.assert_array_equal(raw.y_train, y_tr.astype(np.int64))
    np.testing.assert_array_equal(raw.y_test, y_te.astype(np.int64))
    assert raw.y_train.dtype == np.int64


def write_cifar_pickles(folder: Path, x_tr, y_tr, x_te, y_te, *, hundred: bool = False) -> None:
    """torchvision's python-version layout: dicts with bytes keys, data (N, 3072) uint8 in CHW order."""
    folder.mkdir(parents=True, exist_ok=True)
    key = b"fine_labels" if hundred else b"labels"

    def dump(name: str, x, y) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.reshape(len(x), -1), key: [int(v) for v in y]}, f, protocol=2)

    if hundred:
        dump("train", x_tr, y_tr)
        dump("test", x_te, y_te)
        with open(folder / "meta", "wb") as f:
            pickle.dump({b"fine_label_names": [c.encode() for c in CIFAR100_CLASSES]}, f, protocol=2)
    else:
        for i, part in enumerate(np.array_split(np.arange(len(x_tr)), 5), start=1):
            dump(f"data_batch_{i}", x_tr[part], y_tr[part])
        dump("test_batch", x_te, y_te)


def fake_cifar(n_train: int = 20, n_test: int = 10, classes: int = 10):
    x_tr = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    return x_tr, np.arange(n_train) % classes, x_te, np.arange(n_test) % classes


def save_png(path: Path, chw: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(chw[0]) if chw.shape[0] == 1 else Image.fromarray(chw.transpose(1, 2, 0))
    img.save(path)


def write_tree(root: Path, classes, per_class: dict[str, int], shape=(3, 32, 32), test_dir: str = "test"):
    """``root/train/<class>/<i>.png``; returns {split: [(class index, file index, CHW array)]} in expected order."""
    expected: dict[str, list] = {}
    for split, n in per_class.items():
        out = expected.setdefault(split, [])
        for label, cls in enumerate(classes):
            for i in range(n):
                img = rng.integers(0, 256, shape, dtype=np.uint8)
                save_png(root / (test_dir if split == "test" else split) / cls / f"{i}.png", img)
                out.append((label, i, img))
    return expected


def assert_tree_equal(raw, expected) -> None:
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        assert len(x) == len(expected[split])
        np.testing.assert_array_equal(y, [label for label, _, _ in expected[split]])
        np.testing.assert_array_equal(x, np.stack([img for _, _, img in expected[split]]))


# ------------------------------------------------------------------------------ registration
def test_register_datasets_registers_every_class_with_a_valid_contract():
    seen = []
    register_datasets(seen.append)
    assert seen == list(DATASETS)
    names = [c.name for c in seen]
    assert len(set(names)) == len(names) == 12
    assert set(names) == {
        "digits",
        "synthetic",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "cifar20",
        "svhn",
        "imagefolder",
        "imagenet",
        "tiny_imagenet",
        "mufac",
    }
    for cls in seen:
        assert cls.summary and "\n" not in cls.summary, cls.name
        expected = {"digits": "quick", "synthetic": "fast"}.get(cls.name, "paper")
        assert cls.default_train_recipe == expected, cls.name
        assert cls.embedded == (cls.name in ("digits", "synthetic")), cls.name
        cls(cls.Options())  # default options validate
    assert Cifar10.augment.crop_padding == 4 and not Cifar10.augment.flip
    assert Mnist.augment.crop_padding == 2 and not Mnist.augment.flip
    assert Digits.augment.crop_padding == 1


def test_importing_the_plugin_does_not_import_heavy_libraries():
    code = (
        "import sys, unlearnkit_plugins.datasets; "
        "print(','.join(m for m in ('torch', 'torchvision', 'PIL', 'sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_natural_sort_orders_numbers_numerically():
    names = ["10.png", "2.png", "0001.jpg", "img_9.png", "img_10.png", "a.png"]
    assert sorted(names, key=natural_key) == ["0001.jpg", "2.png", "10.png", "a.png", "img_9.png", "img_10.png"]


# ---------------------------------------------------------------------------- embedded sets
def test_digits_fixed_stratified_split_of_the_real_digits(tmp_path):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = Digits().load(None, tmp_path)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape[1:] == (1, 8, 8)
    assert len(raw.x_train) + len(raw.x_test) == 1797
    assert raw.class_names == [str(d) for d in range(10)]
    expected_pixels = {int(np.floor(v * 255 / 16 + 0.5)) for v in range(17)}
    assert set(np.unique(raw.x_train)) <= expected_pixels and raw.x_train.max() == 255
    for c in range(10):
        idx = np.flatnonzero(bunch.target == c)
        n_test = int(np.floor(len(idx) * 0.2 + 0.5))
        assert (raw.y_test == c).sum() == n_test and (raw.y_train == c).sum() == len(idx) - n_test
    # the test images are the last 20 % of each class, in dataset order
    test_idx = np.sort(
        np.concatenate([np.flatnonzero(bunch.target == c)[-(raw.y_test == c).sum() :] for c in range(10)])
    )
    np.testing.assert_array_equal(raw.y_test, bunch.target[test_idx])
    np.testing.assert_array_equal(raw.x_test[:, 0], np.floor(bunch.images[test_idx] * 255 / 16 + 0.5).astype(np.uint8))
    again = Digits().load(None, tmp_path)
    np.testing.assert_array_equal(raw.x_train, again.x_train)
    np.testing.assert_array_equal(raw.y_test, again.y_test)
    assert len(raw.mean) == len(raw.std) == 1 and 0 < raw.mean[0] < 1


def test_synthetic_is_deterministic_sized_by_options_and_learnable(tmp_path):
    raw = Synthetic().load(None, tmp_path)
    assert raw.x_train.shape == (160, 1, 8, 8) and raw.x_test.shape == (80, 1, 8, 8)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    assert np.bincount(raw.y_train).tolist() == [40] * 4 and np.bincount(raw.y_test).tolist() == [20] * 4
    np.testing.assert_array_equal(raw.x_train, Synthetic().load(None, tmp_path).x_train)
    # learnable: nearest class mean on the training set classifies most test images
    means = np.stack([raw.x_train[raw.y_train == c].mean(0).ravel() for c in range(4)])
    dist = ((raw.x_test.reshape(80, -1)[:, None].astype(float) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == raw.y_test).mean() > 0.8

    opts = Synthetic.parse_options({"num_classes": "3", "per_class_train": "5", "size": "16", "channels": "3"})
    big = Synthetic(opts).load(None, tmp_path)
    assert big.x_train.shape == (15, 3, 16, 16) and big.x_test.shape == (60, 3, 16, 16)
    assert big.num_classes == 3 and len(big.mean) == 3
    # the test images do not depend on the number of training images
    more = Synthetic(Synthetic.parse_options({"num_classes": 3, "per_class_train": 9, "size": 16, "channels": 3}))
    np.testing.assert_array_equal(big.x_test, more.load(None, tmp_path).x_test)


@pytest.mark.parametrize("cls", [Digits, Synthetic])
def test_embedded_sets_pass_the_plugin_conformance_check(cls):
    from unlearnkit.testing import check_dataset

    check_dataset(cls)


# ------------------------------------------------------------------------------- real data
def test_mnist_from_the_shared_npz(shared, tmp_path):
    z = np.load(shared / "mnist.npz")
    ds = Mnist()
    ds.check_available(shared)
    raw = ds.load(shared, tmp_path)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(raw.y_train, z["y_train"])
    np.testing.assert_array_equal(raw.y_test, z["y_test"])
    np.testing.assert_array_equal(raw.x_test[:, 0], z["x_test"])
    assert raw.mean == (0.1307,) and raw.std == (0.3081,)


@pytest.fixture(scope="module")
def cifar10_loads(tmp_path_factory):
    """The shared CIFAR-10 archive decoded once (about 10 s), then loaded again from the cache."""
    data = shared_dir()
    if data is None or not (data / "cifar10-images.tar.gz").is_file():
        pytest.skip(
            "cifar10-images.tar.gz not found: set UNLEARNKIT_SHARED_DATA or place ../shared/data beside the repo"
        )
    cache = tmp_path_factory.mktemp("cifar10-cache")
    Cifar10().check_available(data)
    t0 = time.perf_counter()
    first = Cifar10().load(data, cache)
    t1 = time.perf_counter()
    second = Cifar10().load(data, cache)
    t2 = time.perf_counter()
    return data, cache, first, second, t1 - t0, t2 - t1


@pytest.mark.slow  # decodes all 60,000 images (about 10 s of CPU)
def test_cifar10_from_the_shared_archive_then_from_the_cache(cifar10_loads):
    data, cache, first, second, t_first, t_second = cifar10_loads
    assert first.x_train.shape == (50000, 3, 32, 32) and first.x_test.shape == (10000, 3, 32, 32)
    assert np.bincount(first.y_train).tolist() == [5000] * 10
    assert np.bincount(first.y_test).tolist() == [1000] * 10
    assert first.class_names == list(CIFAR10_CLASSES)
    assert first.mean == (0.4914, 0.4822, 0.4465) and first.std == (0.2023, 0.1994, 0.2010)
    # label order, then file order: images 0..4999 are airplanes 0000..4999
    assert (first.y_train[:5000] == 0).all() and (first.y_train[-5000:] == 9).all()
    assert len(cache_files(cache)) == 1
    assert t_second < t_first / 3, (t_first, t_second)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


@pytest.mark.slow
def test_cifar10_archive_order_matches_the_file_names(cifar10_loads):
    from PIL import Image

    data, _, raw, _, _, _ = cifar10_loads
    wanted = {"test/airplane/0000.jpg": raw.x_test[0], "test/airplane/0001.jpg": raw.x_test[1]}
    with tarfile.open(data / "cifar10-images.tar.gz") as tf:
        for member in tf:
            if member.name in wanted:
                img = np.asarray(Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB"))
                np.testing.assert_array_equal(wanted.pop(member.name), img.transpose(2, 0, 1))
            if not wanted:
                break
    assert not wanted


def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{FASHION_SYSTEM_DIR} absent: apt-get install dataset-fashion-mnist")
    monkeypatch.delenv("UNLEARNKIT_SHARED_DATA", raising=False)
    ds = FashionMnist(FashionMnist.parse_options({"download": False}))
    ds.check_available(None)
    raw = ds.load(None, tmp_path)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10 and np.bincount(raw.y_test).tolist() == [1000] * 10
    assert raw.class_names[0] == "T-shirt/top" and raw.class_names[-1] == "Ankle boot"
    # a data dir without Fashion-MNIST (the recipes pass ../shared/data) still finds the package
    empty = tmp_path / "data"
    empty.mkdir()
    ds.check_available(empty)
    np.testing.assert_array_equal(ds.load(empty, tmp_path).y_test, raw.y_test)


# ------------------------------------------------------------------------ MNIST-family files
@pytest.mark.parametrize(
    ("layout", "gz", "dot_names"),
    [("", False, False), ("", True, False), ("MNIST/raw", True, False), ("MNIST/raw", False, True)],
)
def test_mnist_reads_idx_files_pixel_exact(tmp_path, layout, gz, dot_names):
    data = fake_mnist()
    write_mnist_idx(tmp_path / "data" / layout, data, gz=gz, dot_names=dot_names)
    ds = Mnist()
    ds.check_available(tmp_path / "data")
    raw = ds.load(tmp_path / "data", tmp_path / "cache")
    assert_mnist_equal(raw, data)
    assert raw.class_names == [str(d) for d in range(10)]


def test_mnist_prefers_the_keras_npz(tmp_path):
    npz_data = fake_mnist()
    write_mnist_idx(tmp_path / "MNIST" / "raw", fake_mnist(), gz=True)
    x_tr, y_tr, x_te, y_te = npz_data
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    assert_mnist_equal(Mnist().load(tmp_path, tmp_path / "cache"), npz_data)


def test_fashion_mnist_reads_torchvision_layout(tmp_path):
    data = fake_mnist()
    write_mnist_idx(tmp_path / "FashionMNIST" / "raw", data, gz=True)
    raw = FashionMnist().load(tmp_path, tmp_path / "cache")
    assert_mnist_equal(raw, data)
    assert raw.class_names[1] == "Trouser" and raw.mean == (0.2860,)


def test_mnist_and_fashion_mnist_files_are_not_mixed_up(tmp_path):
    balanced = np.repeat(np.arange(10, dtype=np.uint8), 6000)  # Fashion-MNIST's exact class counts
    data = (np.zeros((60000, 1, 1), np.uint8), balanced, np.zeros((10, 1, 1), np.uint8), np.arange(10, dtype=np.uint8))
    write_mnist_idx(tmp_path, data, gz=False)
    with pytest.raises(DataError, match="look like Fashion-MNIST"):
        Mnist().load(tmp_path, tmp_path / "cache")
    assert FashionMnist().load(tmp_path, tmp_path / "cache2").num_classes == 10


def test_read_idx_handles_other_types_and_rejects_garbage(tmp_path):
    arr = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(bytes([0, 0, 0x0C, 3]) + struct.pack(">3I", 2, 3, 4) + arr.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    (tmp_path / "b").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "b")
    data = fake_mnist()
    write_mnist_idx(tmp_path / "d", data, gz=False)
    blob = (tmp_path / "d" / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "d" / "t10k-images-idx3-ubyte").write_bytes(blob[:100])  # truncated
    with pytest.raises(DataError, match="truncated"):
        Mnist().load(tmp_path / "d", tmp_path / "cache")


# ------------------------------------------------------------------------------- CIFAR files
def test_cifar10_reads_torchvision_pickles_pixel_exact(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_cifar()
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", x_tr, y_tr, x_te, y_te)
    ds = Cifar10()
    ds.check_available(tmp_path)
    raw = ds.load(tmp_path, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_train, x_tr)
    np.testing.assert_array_equal(raw.y_train, y_tr)
    np.testing.assert_array_equal(raw.x_test, x_te)
    np.testing.assert_array_equal(raw.y_test, y_te)
    assert raw.class_names == list(CIFAR10_CLASSES)


def test_cifar10_data_dir_may_be_the_batches_folder_itself(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_cifar()
    write_cifar_pickles(tmp_path / "batches", x_tr, y_tr, x_te, y_te)
    np.testing.assert_array_equal(Cifar10().load(tmp_path / "batches", tmp_path / "cache").x_test, x_te)


def test_cifar10_folder_classes_are_in_label_order_which_is_alphabetical():
    assert list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES) and len(CIFAR100_CLASSES) == 100


def test_cifar_pickles_cannot_run_code(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_cifar()
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", x_tr, y_tr, x_te, y_te)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing to load"):
        Cifar10().load(tmp_path, tmp_path / "cache")
    assert not (tmp_path / "pwned").exists()


def test_cifar100_reads_fine_labels_and_meta(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_cifar(classes=100, n_train=200, n_test=100)
    y_tr = (y_tr * 7) % 100
    write_cifar_pickles(tmp_path / "cifar-100-python", x_tr, y_tr, x_te, y_te, hundred=True)
    raw = Cifar100().load(tmp_path, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_train, x_tr)
    np.testing.assert_array_equal(raw.y_train, y_tr)
    np.testing.assert_array_equal(raw.x_test, x_te)
    assert raw.num_classes == 100 and raw.class_names[69] == "rocket" and raw.class_names[4] == "beaver"


def test_cifar10_reads_a_class_folder_tree_in_a_subfolder(tmp_path):
    expected = write_tree(tmp_path / "cifar10-images", CIFAR10_CLASSES, {"train": 11, "test": 2})
    ds = Cifar10()
    ds.check_available(tmp_path)
    raw = ds.load(tmp_path, tmp_path / "cache")
    assert_tree_equal(raw, expected)
    # file 10.png comes after 2.png: natural order within a class
    assert [i for label, i, _ in expected["train"] if label == 0] == list(range(11))


def test_cifar10_reads_the_tree_straight_from_a_tar_archive(tmp_path):
    expected = write_tree(tmp_path / "tree", CIFAR10_CLASSES, {"train": 3, "test": 2})
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar10-images.tar.gz", "w:gz") as tf:
        for split in ("test", "train"):  # like the shared archive: test first, unsorted otherwise
            for path in sorted((tmp_path / "tree" / split).rglob("*.png"), reverse=True):
                tf.add(path, arcname=str(path.relative_to(tmp_path / "tree")))
        readme = b"# CIFAR-10-images\n"
        info = tarfile.TarInfo("README.md")
        info.size = len(readme)
        tf.addfile(info, io.BytesIO(readme))
    raw = Cifar10().load(data, tmp_path / "cache")
    assert_tree_equal(raw, expected)


def test_cifar10_folder_rejects_images_of_the_wrong_size(tmp_path):
    write_tree(tmp_path, CIFAR10_CLASSES, {"train": 1, "test": 1}, shape=(3, 28, 28))
    with pytest.raises(DataError, match=r"28x28, expected 32x32"):
        Cifar10().load(tmp_path, tmp_path / "cache")


# -------------------------------------------------------------------------------- SVHN files
def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    from scipy.io import savemat

    expected = {}
    for split, n in (("train", 12), ("test", 4)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = np.arange(n) % 10 + 1  # 1..10, 10 meaning the digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y.reshape(-1, 1).astype(np.uint8)})
        expected[split] = (x, np.where(y == 10, 0, y))
    ds = Svhn()
    ds.check_available(tmp_path)
    raw = ds.load(tmp_path, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_train, expected["train"][0])
    np.testing.assert_array_equal(raw.y_train, expected["train"][1])
    np.testing.assert_array_equal(raw.x_test, expected["test"][0])
    np.testing.assert_array_equal(raw.y_test, expected["test"][1])
    assert 0 in raw.y_train and 10 not in raw.y_train and raw.class_names[0] == "0"


# ------------------------------------------------------------------------------ imagefolder
def test_imagefolder_sorted_classes_exact_pixels_and_stats(tmp_path):
    classes = ["b_cat", "a_dog", "c_eel"]
    expected = write_tree(tmp_path, sorted(classes), {"train": 3, "test": 2}, shape=(3, 6, 5), test_dir="val")
    ds = ImageFolder()
    ds.check_available(tmp_path)
    raw = ds.load(tmp_path, tmp_path / "cache")
    assert raw.class_names == ["a_dog", "b_cat", "c_eel"]
    assert_tree_equal(raw, expected)
    x = raw.x_train.astype(np.float64) / 255
    np.testing.assert_allclose(raw.mean, x.mean(axis=(0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(raw.std, x.std(axis=(0, 2, 3)), atol=1e-4)


def test_imagefolder_modes_sizes_and_limits(tmp_path):
    write_tree(tmp_path / "d", ["x", "y"], {"train": 3, "test": 1}, shape=(1, 8, 8))
    save_png(tmp_path / "d" / "train" / "x" / "9.png", rng.integers(0, 256, (3, 8, 8), dtype=np.uint8))
    raw = ImageFolder().load(tmp_path / "d", tmp_path / "cache")
    assert raw.x_train.shape == (7, 1, 8, 8)  # most images are grey: the RGB one is converted
    rgb = ImageFolder(ImageFolder.parse_options({"mode": "RGB", "max_train_per_class": 2})).load(
        tmp_path / "d", tmp_path / "cache"
    )
    assert rgb.x_train.shape == (4, 3, 8, 8) and rgb.y_train.tolist() == [0, 0, 1, 1]

    save_png(tmp_path / "d" / "test" / "y" / "5.png", rng.integers(0, 256, (1, 12, 10), dtype=np.uint8))
    with pytest.raises(DataError, match=r"different sizes \(8x8: 9, 10x12: 1\).*size=8") as excinfo:
        ImageFolder().load(tmp_path / "d", tmp_path / "cache")
    one_line_error(excinfo)
    resized = ImageFolder(ImageFolder.parse_options({"size": "4"})).load(tmp_path / "d", tmp_path / "cache")
    assert resized.x_train.shape == (7, 1, 4, 4) and resized.x_test.shape == (3, 1, 4, 4)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        ImageFolder().check_available(None)
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder().check_available(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No train/<class>/ and test/<class>/"):
        ImageFolder().check_available(tmp_path / "empty")
    write_tree(tmp_path / "d", ["a", "b"], {"train": 1})
    write_tree(tmp_path / "d", ["a", "c"], {"test": 1})
    with pytest.raises(DataError, match="only in train/: b; only in test/: c") as excinfo:
        ImageFolder().check_available(tmp_path / "d")
    one_line_error(excinfo)


# ----------------------------------------------------------------------- missing and offline
@pytest.mark.parametrize(
    ("cls", "names"),
    [
        (Mnist, ["mnist.npz", "train-images-idx3-ubyte"]),
        (FashionMnist, ["train-images-idx3-ubyte", "apt-get install dataset-fashion-mnist"]),
        (Cifar10, ["cifar10-images.tar.gz", "cifar-10-batches-py/"]),
        (Cifar100, ["cifar-100-python/"]),
        (Svhn, ["train_32x32.mat", "test_32x32.mat"]),
    ],
)
def test_missing_files_name_the_place_and_the_fix(tmp_path, monkeypatch, cls, names):
    monkeypatch.setattr(FashionMnist, "system_dirs", (tmp_path / "no-system-dir",))
    data = tmp_path / "data"
    data.mkdir()
    t0 = time.perf_counter()
    with pytest.raises(DataError) as excinfo:
        cls().check_available(data)
    assert time.perf_counter() - t0 < 1
    msg = one_line_error(excinfo)
    assert str(data) in msg and "--data-dir" in msg and "download" not in msg
    for name in names:
        assert name in msg, (name, msg)
    with pytest.raises(DataError):
        cls().load(data, tmp_path / "cache")  # an explicit data dir is never a reason to download
    with pytest.raises(DataError, match="no such folder"):
        cls().check_available(tmp_path / "typo")
    (tmp_path / "a-file.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="a file, not a folder"):
        cls().check_available(tmp_path / "a-file.tar.gz")


@pytest.mark.parametrize("cls", [Mnist, Cifar10, Svhn])
def test_no_data_dir_and_downloads_off_says_how_to_get_the_files(monkeypatch, cls):
    monkeypatch.delenv("UNLEARNKIT_SHARED_DATA", raising=False)
    with pytest.raises(DataError) as excinfo:
        cls(cls.parse_options({"download": "false"})).check_available(None)
    msg = one_line_error(excinfo)
    assert "UNLEARNKIT_SHARED_DATA" in msg and "--data-dir" in msg and "download=true" in msg


def test_shared_data_env_var_is_searched_without_a_data_dir(tmp_path, monkeypatch):
    data = fake_mnist()
    write_mnist_idx(tmp_path, data, gz=True)
    monkeypatch.setenv("UNLEARNKIT_SHARED_DATA", str(tmp_path))
    ds = Mnist(Mnist.parse_options({"download": False}))
    ds.check_available(None)
    assert_mnist_equal(ds.load(None, tmp_path / "cache"), data)


@pytest.mark.parametrize("cls", [Mnist, Cifar10, Cifar100, Svhn])
def test_offline_download_fails_fast_with_a_clean_message(tmp_path, offline, cls):
    before = socket.getdefaulttimeout()
    ds = cls()  # download defaults to on
    ds.check_available(None)  # a download may still supply the files: no error before any compute
    t0 = time.perf_counter()
    with pytest.raises(DataError) as excinfo:
        ds.load(None, tmp_path / "cache")
    assert time.perf_counter() - t0 < 5
    assert offline, "the download was not attempted"
    msg = one_line_error(excinfo)
    assert msg.startswith(f"Could not download {cls.title}") and "--data-dir" in msg, msg
    assert socket.getdefaulttimeout() == before


def test_download_timeout_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("UNLEARNKIT_SHARED_DATA", raising=False)
    seen = []

    def timeout(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.setattr(urllib.request, "urlopen", timeout)
    with pytest.raises(DataError, match="timed out"):
        Cifar10().load(None, tmp_path / "cache")
    assert seen and seen[0] == 10.0


def test_an_earlier_download_is_reused_offline(tmp_path, offline):
    x_tr, y_tr, x_te, y_te = fake_cifar()
    write_cifar_pickles(tmp_path / "cache" / "download" / "cifar-10-batches-py", x_tr, y_tr, x_te, y_te)
    raw = Cifar10().load(None, tmp_path / "cache")
    np.testing.assert_array_equal(raw.x_test, x_te)
    assert not offline


# ------------------------------------------------------------------------------------ cache
def _load_fake_cifar(tmp_path: Path):
    data = tmp_path / "data"
    if not data.exists():
        write_cifar_pickles(data / "cifar-10-batches-py", *fake_cifar())
    return Cifar10().load(data, tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncate", "flip_pixels", "garbage", "wrong_array"])
def test_a_corrupt_cache_file_is_detected_and_rebuilt(tmp_path, damage):
    good = _load_fake_cifar(tmp_path)
    (path,) = cache_files(tmp_path / "cache")
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip_pixels":
        for i in range(len(blob) // 3, len(blob) // 3 + 64):
            blob[i] ^= 0xFF
    elif damage == "garbage":
        blob = bytearray(b"\x93NUMPY garbage" * 10)
    path.write_bytes(bytes(blob))
    if damage == "wrong_array":
        np.save(path.with_suffix(".tmp.npy"), np.zeros(3))
        os.replace(path.with_suffix(".tmp.npy"), path)
    key = path.stem.split("-", 1)[1]
    assert read_cache(path, key) is None
    again = _load_fake_cifar(tmp_path)
    np.testing.assert_array_equal(again.x_train, good.x_train)
    np.testing.assert_array_equal(again.y_test, good.y_test)
    assert read_cache(path, key) is not None  # rewritten


def test_cache_is_keyed_by_the_source_files_and_never_writes_to_the_data_dir(tmp_path):
    data = tmp_path / "data"
    first = fake_mnist()
    write_mnist_idx(data, first, gz=True)
    listing = sorted(p.name for p in data.iterdir())
    assert_mnist_equal(Mnist().load(data, tmp_path / "cache"), first)
    second = fake_mnist()
    write_mnist_idx(data, second, gz=True)  # same names, new content and mtimes
    assert_mnist_equal(Mnist().load(data, tmp_path / "cache"), second)
    assert len(cache_files(tmp_path / "cache")) == 1  # the first entry's sources changed: it can never be read
    assert sorted(p.name for p in data.iterdir()) == listing
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_an_entry_another_host_wrote_is_left_to_that_host(tmp_path, monkeypatch):
    """A cache folder shared by hosts whose data sits on their own disks: each host's entry looks dead
    to the others (other mtimes), so only the host that wrote an entry judges it."""
    from unlearnkit_plugins.datasets import cache as cache_module

    cache, theirs, ours = tmp_path / "cache", tmp_path / "node-a", tmp_path / "node-b"
    write_mnist_idx(theirs, fake_mnist(), gz=True)
    write_mnist_idx(ours, fake_mnist(), gz=True)
    monkeypatch.setattr(cache_module.socket, "gethostname", lambda: "node-a")
    Mnist().load(theirs, cache)
    (their_entry,) = cache_files(cache)
    monkeypatch.undo()
    shutil.rmtree(theirs)  # not on this host's disk
    Mnist().load(ours, cache)
    assert their_entry in cache_files(cache) and len(cache_files(cache)) == 2


def test_links_to_one_source_share_a_cache_entry(tmp_path):
    write_mnist_idx(tmp_path / "real", fake_mnist(), gz=True)
    for name in ("a", "b"):
        (tmp_path / name).symlink_to(tmp_path / "real", target_is_directory=True)
        Mnist().load(tmp_path / name, tmp_path / "cache")
    assert len(cache_files(tmp_path / "cache")) == 1


def test_a_new_entry_removes_the_entries_that_can_never_be_read_again(tmp_path):
    cache = tmp_path / "cache"
    kept, moved = tmp_path / "kept", tmp_path / "scratch-job-1"
    write_mnist_idx(kept, fake_mnist(), gz=True)
    write_mnist_idx(moved, fake_mnist(), gz=True)
    Mnist().load(kept, cache)
    Mnist().load(moved, cache)
    (live_entry, _) = sorted(cache_files(cache), key=lambda p: p.stat().st_mtime_ns)
    abandoned = cache / ".mnist-0123456789abcdef0123.npz.x1y2.tmp"  # a writer killed mid-write, long ago
    abandoned.write_bytes(b"half a file")
    os.utime(abandoned, (time.time() - 7200,) * 2)
    fresh = cache / ".mnist-0123456789abcdef0123.npz.z3w4.tmp"  # another process writing now
    fresh.write_bytes(b"being written")
    other = cache / "mnist-big-0123456789abcdef0123.npz"  # a dataset "mnist-big": its name starts with ours
    other.write_bytes(b"not ours")
    shutil.rmtree(moved)  # the job's scratch copy is gone
    third = tmp_path / "scratch-job-2"
    write_mnist_idx(third, fake_mnist(), gz=True)
    Mnist().load(third, cache)
    left = cache_files(cache)
    assert live_entry in left and len(left) == 3  # the kept source's, the new one's, and the other dataset's
    assert not abandoned.exists() and fresh.exists() and other.exists()


def test_an_unwritable_cache_dir_still_loads(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    data = fake_mnist()
    write_mnist_idx(tmp_path / "data", data, gz=False)
    assert_mnist_equal(Mnist().load(tmp_path / "data", tmp_path / "file" / "cache"), data)
