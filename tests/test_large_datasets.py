"""ImageNet, Tiny-ImageNet and MUFAC on tiny fake files written here: the archives as distributed
(nested ILSVRC train tar, flat val tar, devkit tar.gz with a real-format meta.mat, the official
zips) and extracted folders. Order, labels, pixels (against torchvision's transforms), caches,
the lazily decoded ImageArray, MUFAC's cleaning and identities, and the one-line errors."""

from __future__ import annotations

import csv
import io
import pickle
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.api.contracts import ImageArray
from unlearnkit.errors import DataError
from unlearnkit_plugins.datasets import DATASETS, ImageNet, Mufac, TinyImageNet
from unlearnkit_plugins.datasets import archive as archive_mod
from unlearnkit_plugins.datasets import mufac as mufac_mod
from unlearnkit_plugins.datasets.archive import EncodedImages, Window, index_tar, resize_center_crop

rng = np.random.default_rng(17)
WNIDS = ["n01440764", "n01443537"]  # sorted: labels 0 and 1
# ILSVRC2012_ID -> wnid in the devkit; the IDs are not in wnid order, and n01484850 has no images
DEVKIT_IDS = {1: "n01443537", 2: "n01484850", 3: "n01440764"}
TRAIN_NUMBERS = [2, 10, 100, 7, 1]  # code-point order of n..._<k>.JPEG: 1, 10, 100, 2, 7
VAL_IDS = [3, 1, 1, 3, 3, 1, 3]  # ground truth of ILSVRC2012_val_00000001..7


def one_line(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def jpeg(h: int, w: int, *, grey: bool = False, quality: int = 90) -> bytes:
    """A smooth random photo-like JPEG (noise upsampled), so resizing has something to do."""
    from PIL import Image

    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    if grey:
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def torchvision_pixels(blob: bytes) -> np.ndarray:
    """The paper's pipeline: PIL RGB, Resize(256), CenterCrop(224), as uint8 CHW."""
    from PIL import Image
    from torchvision import transforms

    im = Image.open(io.BytesIO(blob)).convert("RGB")
    out = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(im)
    return np.asarray(out).transpose(2, 0, 1)


# -------------------------------------------------------------------------------- fake ImageNet
def write_devkit(path: Path, ids: dict[int, str], truth: list[int]) -> None:
    """ILSVRC2012_devkit_t12.tar.gz with data/meta.mat in the devkit's format (a synsets struct
    array, 1-based ILSVRC2012_ID, leaves have num_children 0) and the val ground truth."""
    from scipy.io import savemat

    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    rows = [(i, w, f"words of {w}, more words", "a gloss", 0, np.zeros(0), 0, 1300) for i, w in ids.items()]
    rows.append((1001, "n00001740", "entity", "the root", 2, np.array([1, 3]), 18, 0))  # not a leaf
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        synsets[k, 0] = row
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    gt = "".join(f"{t}\n" for t in truth).encode()
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in (("data/meta.mat", meta.getvalue()), ("data/ILSVRC2012_validation_ground_truth.txt", gt)):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """Archives as distributed, and what each image should decode to, in the expected order."""
    root = tmp_path_factory.mktemp("imagenet")
    train: dict[str, dict[str, bytes]] = {}
    for w in WNIDS:  # odd sizes: portrait, landscape, small (upscaled) and exactly 256 on the short side
        sizes = [(301, 257), (250, 333), (230, 229), (256, 390), (411, 303)]
        train[w] = {f"{w}_{n}.JPEG": jpeg(h, wd) for n, (h, wd) in zip(TRAIN_NUMBERS, sizes)}
        train[w][f"{w}_3.JPEG"] = jpeg(260, 280, grey=True)
    inner = {f"{w}.tar": tar_bytes({**files, "README.txt": b"not an image"}) for w, files in reversed(train.items())}
    (root / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(inner))  # classes in reverse order
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": jpeg(240 + 7 * i, 300 - 5 * i) for i in range(1, len(VAL_IDS) + 1)}
    (root / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes(dict(reversed(val.items()))))
    write_devkit(root / "ILSVRC2012_devkit_t12.tar.gz", DEVKIT_IDS, VAL_IDS)
    expected_train = [(label, name, train[w][name]) for label, w in enumerate(WNIDS) for name in sorted(train[w])]
    val_labels = [WNIDS.index(DEVKIT_IDS[t]) for t in VAL_IDS]
    expected_val = sorted(
        ((val_labels[i - 1], name, blob) for i, (name, blob) in enumerate(val.items(), start=1)), key=lambda e: e[:2]
    )
    return root, train, val, expected_train, expected_val


def test_new_datasets_are_registered_with_their_contract():
    names = [c.name for c in DATASETS]
    assert {"imagenet", "tiny_imagenet", "mufac"} <= set(names) and len(set(names)) == len(names)
    for cls in (ImageNet, TinyImageNet, Mufac):
        assert cls.summary and "\n" not in cls.summary and not cls.embedded and not cls.downloadable
        assert isinstance(cls.algorithm_version, int) and cls.algorithm_version >= 1
        cls(cls.Options())
    assert ImageNet.mean == (0.485, 0.456, 0.406) and ImageNet.std == (0.229, 0.224, 0.225)
    assert TinyImageNet.augment.crop_padding == 8 and TinyImageNet.augment.flip
    np.testing.assert_allclose(TinyImageNet.mean, (0.48031, 0.44814, 0.39763), atol=1e-5)
    np.testing.assert_allclose(TinyImageNet.std, (0.27644, 0.26889, 0.28162), atol=1e-5)
    assert Mufac.mean == (0.0, 0.0, 0.0) and Mufac.std == (1.0, 1.0, 1.0) and Mufac.augment.flip


def test_resize_center_crop_matches_torchvision():
    from PIL import Image

    for h, w in ((301, 257), (257, 301), (230, 229), (256, 390), (500, 375), (224, 224), (899, 224)):
        blob = jpeg(h, w)
        mine = resize_center_crop(Image.open(io.BytesIO(blob)).convert("RGB"), 256, 224).transpose(2, 0, 1)
        np.testing.assert_array_equal(mine, torchvision_pixels(blob), err_msg=f"{h}x{w}")


def test_nested_train_tar_is_indexed_without_unpacking(imagenet, tmp_path):
    root, train, _, expected, _ = imagenet
    path = root / "ILSVRC2012_img_train.tar"
    index = index_tar(path, nested=True)
    assert index.folders == tuple(WNIDS)  # sorted, though the archive holds them in reverse
    assert [index.name(i) for i in range(len(index))] == [name for _, name, _ in expected]
    blob = path.read_bytes()
    for i, (label, name, data) in enumerate(expected):
        assert index.folder[i] == label
        assert blob[index.offsets[i] : index.offsets[i] + index.sizes[i]] == data, name
    assert list(index.bounds()) == [0, 6, 12]
    with open(path, "rb") as f:  # the window behaves as a file of its own
        view = Window(f, int(index.offsets[0]), int(index.sizes[0]))
        assert view.read(4) == expected[0][2][:4] and view.seek(0, 2) == index.sizes[0] and view.read() == b""


def test_imagenet_archives_order_labels_and_pixels(imagenet, tmp_path):
    root, _, _, expected_train, expected_val = imagenet
    ds = ImageNet()
    ds.check_available(root)
    raw = ds.load(root, tmp_path / "cache")
    assert isinstance(raw.x_train, np.ndarray) and raw.x_train.shape == (12, 3, 224, 224)
    assert raw.class_names == WNIDS and raw.num_classes == 2
    np.testing.assert_array_equal(raw.y_train, [label for label, _, _ in expected_train])
    np.testing.assert_array_equal(raw.y_test, [label for label, _, _ in expected_val])
    for x, expected in ((raw.x_train, expected_train), (raw.x_test, expected_val)):
        for i, (_, name, blob) in enumerate(expected):
            np.testing.assert_array_equal(x[i], torchvision_pixels(blob), err_msg=name)
    # the first N per class in code-point order (torchvision's): _1, _10, _100, _2, _3, _7
    few = ImageNet(ImageNet.parse_options({"train_per_class": "3", "val_per_class": 2})).load(root, tmp_path / "cache")
    np.testing.assert_array_equal(few.x_train, raw.x_train[[0, 1, 2, 6, 7, 8]])
    np.testing.assert_array_equal(few.y_test, [0, 0, 1, 1])
    np.testing.assert_array_equal(few.x_test, raw.x_test[[0, 1, 4, 5]])


def test_devkit_labels_match_torchvision(imagenet, tmp_path, monkeypatch):
    """The fake meta.mat is the devkit's format: torchvision's own parser reads the same labels."""
    from torchvision.datasets import imagenet as tv_imagenet

    root, _, _, _, expected_val = imagenet
    monkeypatch.setattr(tv_imagenet, "_verify_archive", lambda *args: None)  # the fake's md5 is not the real one
    shutil.copy(root / "ILSVRC2012_devkit_t12.tar.gz", tmp_path)
    tv_imagenet.parse_devkit_archive(str(tmp_path))
    wnid_to_classes, val_wnids = tv_imagenet.load_meta_file(str(tmp_path))
    assert wnid_to_classes["n01440764"] == ("words of n01440764", "more words") and "n00001740" not in wnid_to_classes
    by_name = {f"ILSVRC2012_val_{i:08d}.JPEG": WNIDS.index(w) for i, w in enumerate(val_wnids, start=1)}
    assert [label for label, _, _ in expected_val] == [by_name[name] for _, name, _ in expected_val]


def test_imagenet_cache_and_index_are_reused(imagenet, tmp_path, monkeypatch):
    root, *_ = imagenet
    first = ImageNet().load(root, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("tar-index-*.npz"))) == 2
    assert len(list((tmp_path / "cache").glob("imagenet-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded or re-indexed although cached")

    monkeypatch.setattr(archive_mod, "index_tar", fail)
    monkeypatch.setattr(EncodedImages, "decode", fail)
    second = ImageNet().load(root, tmp_path / "cache")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    # the lazy path needs no decoded cache, only the index
    lazy = ImageNet(ImageNet.parse_options({"decode_budget_gb": 0})).load(root, tmp_path / "cache")
    assert isinstance(lazy.x_train, EncodedImages)


def test_lazy_image_array_gives_the_same_pixels_and_pickles(imagenet, tmp_path):
    root, *_ = imagenet
    eager = ImageNet().load(root, tmp_path / "cache")
    lazy = ImageNet(ImageNet.parse_options({"decode_budget_gb": "0.0001"})).load(root, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("imagenet-*.npz"))) == 1  # the lazy load wrote no array cache
    for x in (lazy.x_train, lazy.x_test):
        assert isinstance(x, ImageArray) and not isinstance(x, np.ndarray)
    assert lazy.x_train.shape == eager.x_train.shape and lazy.image_shape == (3, 224, 224)
    np.testing.assert_array_equal(lazy.y_train, eager.y_train)
    idx = np.array([11, 0, 5, 6, 5])
    np.testing.assert_array_equal(lazy.x_train[idx], eager.x_train[idx])
    np.testing.assert_array_equal(lazy.x_test[np.arange(len(lazy.x_test))], eager.x_test)
    np.testing.assert_array_equal(lazy.x_train[-1], eager.x_train[-1])
    np.testing.assert_array_equal(lazy.x_train[2:5], eager.x_train[2:5])
    lazy.x_train[np.array([0])]  # opens the archive: the descriptor must not travel
    copy = pickle.loads(pickle.dumps(lazy.x_train))
    assert copy._fds == {}
    np.testing.assert_array_equal(copy[idx], eager.x_train[idx])
    with pytest.raises(IndexError):
        lazy.x_train[np.array([12])]


def test_lazy_image_array_streams_through_dataloader_workers(imagenet, tmp_path):
    import torch
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    root, *_ = imagenet
    eager = ImageNet().load(root, tmp_path / "cache")
    lazy = ImageNet(ImageNet.parse_options({"decode_budget_gb": 0})).load(root, tmp_path / "cache")
    sampler = BatchSampler(SequentialSampler(range(len(lazy.x_train))), batch_size=5, drop_last=False)
    loader = DataLoader(lazy.x_train, sampler=sampler, batch_size=None, num_workers=2)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(5, 3, 224, 224), (5, 3, 224, 224), (2, 3, 224, 224)]
    assert torch.equal(torch.cat(batches), torch.from_numpy(eager.x_train))


def test_imagenet_extracted_folders_match_the_archives(imagenet, tmp_path):
    root, train, val, *_ = imagenet
    from_tars = ImageNet().load(root, tmp_path / "cache")
    for layout in ("by_class", "flat"):
        data = tmp_path / layout / "imagenet"  # one folder below the data dir
        for w, files in train.items():
            (data / "train" / w).mkdir(parents=True)
            for name, blob in files.items():
                (data / "train" / w / name).write_bytes(blob)
        for i, (name, blob) in enumerate(val.items(), start=1):
            folder = data / "val" / (DEVKIT_IDS[VAL_IDS[i - 1]] if layout == "by_class" else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(blob)
        if layout == "flat":
            with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz") as tf:
                tf.extractall(data, filter="data")
        ds = ImageNet()
        ds.check_available(data.parent)
        raw = ds.load(data.parent, tmp_path / "cache")
        for name in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(raw, name), getattr(from_tars, name), err_msg=f"{layout} {name}")
        lazy = ImageNet(ImageNet.parse_options({"decode_budget_gb": 0})).load(data.parent, tmp_path / "cache")
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy.x_test))[np.arange(7)], from_tars.x_test)


def test_imagenet_passes_the_plugin_conformance_check(imagenet):
    from unlearnkit.testing import check_dataset

    root, *_ = imagenet
    raw = check_dataset(ImageNet, root)
    assert raw.x_train.shape[1:] == (3, 224, 224)


def test_imagenet_missing_files_are_one_line_errors(imagenet, tmp_path):
    root, *_ = imagenet
    t0 = time.perf_counter()
    with pytest.raises(DataError) as excinfo:
        ImageNet().check_available(tmp_path)
    msg = one_line(excinfo)
    for part in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        assert part in msg
    assert "image-net.org" in msg and "--data-dir" in msg and str(tmp_path) in msg
    with pytest.raises(DataError, match="no such folder"):
        ImageNet().check_available(tmp_path / "typo")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "ILSVRC2012_img_train.tar").symlink_to(root / "ILSVRC2012_img_train.tar")
    with pytest.raises(DataError, match="no validation images") as excinfo:
        ImageNet().check_available(partial)
    one_line(excinfo)
    (partial / "ILSVRC2012_img_val.tar").symlink_to(root / "ILSVRC2012_img_val.tar")
    with pytest.raises(DataError, match=r"not ILSVRC2012_devkit_t12\.tar\.gz.*label the val images") as excinfo:
        ImageNet().load(partial, tmp_path / "cache")
    one_line(excinfo)
    # check_available looks at names only: a damaged archive is found, and load says what is wrong
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ILSVRC2012_img_train.tar").write_bytes(b"not a tar at all" * 100)
    for name in ("ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (broken / name).symlink_to(root / name)
    ImageNet().check_available(broken)
    with pytest.raises(DataError, match="Cannot read the tar archive") as excinfo:
        ImageNet().load(broken, tmp_path / "cache")
    one_line(excinfo)
    assert time.perf_counter() - t0 < 5


def test_a_corrupt_jpeg_names_its_archive_member(imagenet, tmp_path):
    root, train, *_ = imagenet
    data = tmp_path / "data"
    data.mkdir()
    bad = {w: dict(files) for w, files in train.items()}
    bad[WNIDS[1]][f"{WNIDS[1]}_2.JPEG"] = b"\xff\xd8 truncated"
    inner = {f"{w}.tar": tar_bytes(files) for w, files in bad.items()}
    (data / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(inner))
    for name in ("ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (data / name).symlink_to(root / name)
    with pytest.raises(DataError, match=rf"Cannot decode image .*ILSVRC2012_img_train\.tar:{WNIDS[1]}_2\.JPEG") as exc:
        ImageNet().load(data, tmp_path / "cache")
    one_line(exc)


# --------------------------------------------------------------------------- fake Tiny-ImageNet
TINY_WNIDS = ["n02124075", "n01443537", "n09999999"]  # wnids.txt order is the label order, not sorted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    files: dict[str, bytes] = {"wnids.txt": "".join(f"{w}\n" for w in TINY_WNIDS).encode(), "words.txt": b"x\ty\n"}
    expected_train = []
    for label, w in enumerate(TINY_WNIDS):
        for i in range(11):  # natural order: 0, 1, ..., 9, 10
            blob = jpeg(64, 64, grey=(label, i) == (1, 3))
            files[f"train/{w}/images/{w}_{i}.JPEG"] = blob
            expected_train.append((label, blob))
        files[f"train/{w}/{w}_boxes.txt"] = b"boxes\n"
    val_labels = [2, 0, 1, 1, 0, 2, 1, 0, 2, 0, 1, 2]
    annotations = []
    for i, label in enumerate(val_labels):
        files[f"val/images/val_{i}.JPEG"] = jpeg(64, 64)
        annotations.append(f"val_{i}.JPEG\t{TINY_WNIDS[label]}\t0\t0\t63\t63\n")
    files["val/val_annotations.txt"] = "".join(reversed(annotations)).encode()
    files["test/images/test_0.JPEG"] = jpeg(64, 64)  # unlabelled: never read
    with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files, reverse=True):
            zf.writestr(f"tiny-imagenet-200/{name}", files[name])
    expected_val = [(label, files[f"val/images/val_{i}.JPEG"]) for i, label in enumerate(val_labels)]
    return root, files, expected_train, expected_val


def pil_pixels(blob: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).transpose(2, 0, 1)


def test_tiny_imagenet_reads_the_zip_in_order(tiny, tmp_path, monkeypatch):
    root, _, expected_train, expected_val = tiny
    ds = TinyImageNet()
    ds.check_available(root)
    raw = ds.load(root, tmp_path / "cache")
    assert (
        raw.class_names == TINY_WNIDS and raw.x_train.shape == (33, 3, 64, 64) and raw.x_test.shape == (12, 3, 64, 64)
    )
    np.testing.assert_array_equal(raw.y_train, [label for label, _ in expected_train])
    np.testing.assert_array_equal(raw.y_test, [label for label, _ in expected_val])
    np.testing.assert_array_equal(raw.x_train, np.stack([pil_pixels(b) for _, b in expected_train]))
    np.testing.assert_array_equal(raw.x_test, np.stack([pil_pixels(b) for _, b in expected_val]))
    assert raw.mean == TinyImageNet.mean and raw.groups is None and raw.x_unseen is None
    monkeypatch.setattr("unlearnkit_plugins.datasets.tiny_imagenet.decode_images", pytest.fail)
    np.testing.assert_array_equal(TinyImageNet().load(root, tmp_path / "cache").x_test, raw.x_test)  # cached


def test_tiny_imagenet_extracted_folder_matches_the_zip(tiny, tmp_path):
    from unlearnkit.testing import check_dataset

    root, *_ = tiny
    with zipfile.ZipFile(root / "tiny-imagenet-200.zip") as zf:
        zf.extractall(tmp_path / "data")
    from_zip = TinyImageNet().load(root, tmp_path / "cache")
    raw = check_dataset(TinyImageNet, tmp_path / "data")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(raw, name), getattr(from_zip, name), err_msg=name)
    with pytest.raises(DataError, match="ImageNet .ILSVRC2012. files not found"):  # wnid folders are not ImageNet
        ImageNet().check_available(tmp_path / "data")
    (tmp_path / "data" / "tiny-imagenet-200" / "val" / "images" / "val_99.JPEG").write_bytes(jpeg(64, 64))
    with pytest.raises(DataError, match="does not label val/images/val_99.JPEG") as excinfo:
        TinyImageNet().load(tmp_path / "data", tmp_path / "cache")
    one_line(excinfo)


def test_tiny_imagenet_missing_or_wrong_zip(tmp_path):
    with pytest.raises(DataError) as excinfo:
        TinyImageNet().check_available(tmp_path)
    msg = one_line(excinfo)
    assert "tiny-imagenet-200.zip" in msg and "cs231n.stanford.edu" in msg and "--data-dir" in msg
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("something/else.txt", "x")
    TinyImageNet().check_available(tmp_path)  # names only
    with pytest.raises(DataError, match="holds no wnids.txt") as excinfo:
        TinyImageNet().load(tmp_path, tmp_path / "cache")
    one_line(excinfo)


# ---------------------------------------------------------------------------------- fake MUFAC
MUFAC_COLUMNS = ["family_id", "person_id", "age_class", "image_path"]


def write_mufac(folder: Path) -> dict[str, list[tuple[str, str, str, bytes]]]:
    """Rows (family, person, age class, image) per split, with planted duplicates and leaks (the
    forget set is taken as the first 4 training rows): train 2 == train 0 (forget duplicate), train 1
    == train 8 (forget leaked into retain), train 10 == train 9 (retain duplicate), test 0 == train 5,
    val 3 == test 4. Everything else differs."""
    img = {k: jpeg(128, 128) for k in range(40)}
    train_imgs = [img[0], img[1], img[0], img[3], img[4], img[5], img[6], img[7], img[1], img[9], img[9], img[11]]
    val_imgs = [img[20], img[21], img[22], img[30], img[24]]
    test_imgs = [img[5], img[31], img[32], img[33], img[30]]
    rows: dict[str, list[tuple[str, str, str, bytes]]] = {}
    for split, images, first_family in (("train", train_imgs, 1), ("val", val_imgs, 801), ("test", test_imgs, 851)):
        rows[split] = []
        for i, blob in enumerate(images):
            family, person = f"F{first_family + i // 4:04d}", "DMS"[i % 3]
            rows[split].append((family, person, "abcdefgh"[i % 3], blob))
        (folder / f"{split}_images").mkdir(parents=True)
        with open(folder / f"custom_{split}_dataset.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(MUFAC_COLUMNS)
            for i, (family, person, age, blob) in enumerate(rows[split]):
                name = f"{family}_AGE_{person}_{i}_{age}{i}.jpg"
                (folder / f"{split}_images" / name).write_bytes(blob)
                writer.writerow([family, person, age, name])
    return rows


@pytest.fixture
def mufac(tmp_path, monkeypatch):
    monkeypatch.setattr(mufac_mod, "FORGET_ROWS", 4)
    data = tmp_path / "data"
    rows = write_mufac(data / "custom_korean_family_dataset_resolution_128")
    return data, rows


def test_mufac_cleaning_groups_and_unseen_split(mufac, tmp_path):
    data, rows = mufac
    ds = Mufac()
    ds.check_available(data)
    raw = ds.load(data, tmp_path / "cache")
    keep = {"train": [0, 3, 4, 5, 6, 7, 8, 9, 11], "val": [0, 1, 2, 4], "test": [1, 2, 3, 4]}
    for split, x, y in (
        ("train", raw.x_train, raw.y_train),
        ("val", raw.x_unseen, raw.y_unseen),
        ("test", raw.x_test, raw.y_test),
    ):
        kept = [rows[split][i] for i in keep[split]]
        assert x.shape == (len(kept), 3, 128, 128), split
        np.testing.assert_array_equal(y, ["abcdefgh".index(age) for _, _, age, _ in kept])
        np.testing.assert_array_equal(x, np.stack([pil_pixels(blob) for *_, blob in kept]))
    assert raw.groups is not None and len(raw.groups) == len(raw.y_train)
    assert raw.groups.tolist() == [f"{f}_{p}" for f, p, _, _ in (rows["train"][i] for i in keep["train"])]
    assert raw.class_names[0] == "0-6" and raw.num_classes == 8
    unclean = Mufac(Mufac.parse_options({"clean": "false"})).load(data, tmp_path / "cache")
    assert (len(unclean.y_train), len(unclean.y_unseen), len(unclean.y_test)) == (12, 5, 5)
    assert unclean.groups.tolist()[:2] == ["F0001_D", "F0001_M"]


def test_lotus_clean_counts():
    h = [bytes([i]) for i in range(10)]
    train = [h[0], h[1], h[0], h[3], h[1], h[5], h[5], h[0]]
    kept_train, kept_val, kept_test, n_forget = mufac_mod.lotus_clean(train, [h[7], h[8], h[8]], [h[8], h[5], h[9]], 4)
    assert kept_train.tolist() == [3, 4, 5, 7] and n_forget == 1  # forget 0, 1, 2 leak into retain (rows 4, 7)
    assert kept_test.tolist() == [0, 2] and kept_val.tolist() == [0]


def test_mufac_published_counts_are_asserted_only_on_the_published_files(mufac, tmp_path, monkeypatch):
    data, _ = mufac
    monkeypatch.setattr(mufac_mod, "PUBLISHED_ROWS", (12, 5, 5))  # pretend the fake is the published data
    monkeypatch.setattr(mufac_mod, "LOTUS_CLEAN_ROWS", (9, 4, 4))
    monkeypatch.setattr(mufac_mod, "LOTUS_CLEAN_FORGET", 2)
    assert len(Mufac().load(data, tmp_path / "a").y_train) == 9
    monkeypatch.setattr(mufac_mod, "LOTUS_CLEAN_ROWS", (10, 4, 4))
    with pytest.raises(DataError, match=r"kept 9/4/4 .* keeps 10/4/4 \(2\).*clean=false") as excinfo:
        Mufac().load(data, tmp_path / "b")
    one_line(excinfo)
    assert len(Mufac(Mufac.parse_options({"clean": False})).load(data, tmp_path / "b").y_train) == 12


def test_mufac_zip_and_cache(mufac, tmp_path, monkeypatch):
    from unlearnkit.testing import check_dataset

    data, _ = mufac
    folder = data / "custom_korean_family_dataset_resolution_128"
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "custom_korean_family_dataset_resolution_128.zip", "w") as zf:
        for path in sorted(folder.rglob("*"), reverse=True):  # files at the top, as the published zip
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    from_folder = Mufac().load(data, tmp_path / "cache")
    from_zip = check_dataset(Mufac, zipped, tmp_path / "cache")
    for name in ("x_train", "y_train", "x_test", "y_test", "x_unseen", "y_unseen", "groups"):
        np.testing.assert_array_equal(getattr(from_zip, name), getattr(from_folder, name), err_msg=name)
    monkeypatch.setattr(mufac_mod, "decode_images", pytest.fail)
    again = Mufac().load(zipped, tmp_path / "cache")  # from the cache, optional fields included
    for name in ("x_train", "x_unseen", "y_unseen", "groups"):
        np.testing.assert_array_equal(getattr(again, name), getattr(from_zip, name), err_msg=name)


def test_mufac_missing_and_malformed_files(tmp_path):
    with pytest.raises(DataError) as excinfo:
        Mufac().check_available(tmp_path)
    msg = one_line(excinfo)
    assert "custom_korean_family_dataset_resolution_128.zip" in msg and "ndb796/MachineUnlearning" in msg
    assert "--data-dir" in msg
    folder = tmp_path / "data" / "custom_korean_family_dataset_resolution_128"
    write_mufac(folder)
    text = (folder / "custom_val_dataset.csv").read_text().replace("person_id", "who")
    (folder / "custom_val_dataset.csv").write_text(text)
    with pytest.raises(DataError, match="custom_val_dataset.csv lacks the column.*person_id") as excinfo:
        Mufac().load(tmp_path / "data", tmp_path / "cache")
    one_line(excinfo)


def test_imagenet_crop_option_scales_the_paper_framing(imagenet, tmp_path):
    root, *_ = imagenet
    ds = ImageNet(ImageNet.parse_options({"crop": 32}))
    assert ds.geometry == {"resize": 37, "crop": 32}  # round(32 * 256 / 224)
    small = ds.load(root, tmp_path / "cache")
    full = ImageNet().load(root, tmp_path / "cache")
    assert small.x_train.shape[1:] == (3, 32, 32) and full.x_train.shape[1:] == (3, 224, 224)
    np.testing.assert_array_equal(small.y_train, full.y_train)
