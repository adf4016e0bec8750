"""Bringing one's own data and models: the imagefolder cases a user's folder holds (one class, images
in sub-folders of a class folder, 16-bit and wide greyscale pixels) and pretrained timm weights
asked for without internet. Each test fails on the code before its fix."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unlearnkit.api.types import ImageSpec
from unlearnkit.errors import ConfigError, DataError
from unlearnkit_plugins.datasets import ImageFolder
from unlearnkit_plugins.datasets.cache import cache_key, cache_path, write_cache
from unlearnkit_plugins.datasets.folder import list_tree
from unlearnkit_plugins.models import timm_models
from unlearnkit_plugins.models.catalog import Timm


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def tree(root: Path, classes: dict[str, int], per_split: dict[str, int] | None = None) -> Path:
    """``root/{train,test}/<class>/<i>.png``, 8x8 grey, every pixel of a class at its given value."""
    for split, n in (per_split or {"train": 3, "test": 2}).items():
        for cls, value in classes.items():
            for i in range(n):
                save(root / split / cls / f"{i}.png", np.full((8, 8), value, np.uint8))
    return root


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------ imagefolder
def test_imagefolder_refuses_a_single_class_before_any_compute(tmp_path):
    """One class folder used to load and run: every accuracy 1.000, every metric meaningless."""
    tree(tmp_path, {"only": 10})
    with pytest.raises(DataError) as err:
        ImageFolder().check_available(tmp_path)
    msg = one_line(err)
    assert msg.startswith(f"{tmp_path} holds one class folder (only) in train/ and test/")
    assert "at least one more class" in msg


def test_imagefolder_refuses_images_in_a_sub_folder_of_a_class(tmp_path):
    """Images under train/<class>/<sub>/ used to be left out silently (a class of 4 became 1)."""
    tree(tmp_path, {"cat": 10, "dog": 20}, {"train": 1, "test": 1})
    for i in range(3):
        save(tmp_path / "train" / "cat" / "batch1" / f"{i}.png", np.full((8, 8), 10, np.uint8))
    with pytest.raises(DataError) as err:
        ImageFolder().load(tmp_path, tmp_path / "cache")
    msg = one_line(err)
    assert msg.startswith(f"{tmp_path / 'train' / 'cat' / 'batch1'} holds 3 image(s) in a sub-folder")
    assert "would be left out" in msg and "move them up" in msg


def test_imagefolder_ignores_sub_folders_without_images_and_hidden_ones(tmp_path):
    tree(tmp_path, {"cat": 10, "dog": 20})
    (tmp_path / "train" / "cat" / "notes").mkdir()
    (tmp_path / "train" / "cat" / "notes" / "readme.txt").write_text("labels checked by hand")
    save(tmp_path / "train" / "dog" / ".ipynb_checkpoints" / "0.png", np.zeros((8, 8), np.uint8))
    raw = ImageFolder().load(tmp_path, tmp_path / "cache")
    assert raw.y_train.tolist() == [0, 0, 0, 1, 1, 1] and raw.class_names == ["cat", "dog"]


def test_imagefolder_scales_16_bit_greyscale_instead_of_clipping(tmp_path):
    """PIL's convert("L") clips 16-bit pixels to 255: two classes of values 1000 and 60000 both
    decoded to all-white images, so the labels were unlearnable."""
    for split in ("train", "test"):
        for cls, value in (("dark", 1000), ("bright", 60000)):
            save(tmp_path / split / cls / "0.png", np.full((8, 8), value, np.uint16))
    with Image.open(tmp_path / "train" / "dark" / "0.png") as im:
        assert im.mode == "I;16"  # what the test is about
    raw = ImageFolder().load(tmp_path, tmp_path / "cache")
    assert raw.class_names == ["bright", "dark"] and raw.x_train.shape == (2, 1, 8, 8)
    assert np.unique(raw.x_train[0]).tolist() == [round(60000 * 255 / 65535)]  # 233
    assert np.unique(raw.x_train[1]).tolist() == [round(1000 * 255 / 65535)]  # 4
    assert np.array_equal(raw.x_test, raw.x_train)


def test_imagefolder_16_bit_mixed_with_8_bit_rgb(tmp_path):
    tree(tmp_path, {"a": 0, "b": 128})
    save(tmp_path / "train" / "a" / "9.png", np.full((8, 8), 30000, np.uint16))
    save(tmp_path / "train" / "b" / "9.png", np.full((8, 8, 3), 7, np.uint8))
    raw = ImageFolder(ImageFolder.parse_options({"mode": "RGB"})).load(tmp_path, tmp_path / "cache")
    assert raw.x_train.shape == (8, 3, 8, 8)
    assert np.unique(raw.x_train[3]).tolist() == [117] and np.unique(raw.x_train[7]).tolist() == [7]  # 30000 -> 117


@pytest.mark.parametrize(
    ("pixels", "shown"),
    [(np.full((8, 8), 40000, np.int32), "I pixels run 40000..40000"), (np.full((8, 8), 0.5, np.float32), "F pixels")],
)
def test_imagefolder_refuses_wide_pixels_it_cannot_read_as_8_bit(tmp_path, pixels, shown):
    """32-bit integer or float pixels outside 0..255 (or fractional) were clipped or truncated to
    garbage; they have no known white level, so they are refused with the file named."""
    tree(tmp_path, {"a": 0, "b": 128})
    bad = tmp_path / "train" / "a" / "9.tif"
    save(bad, pixels)
    with pytest.raises(DataError) as err:
        ImageFolder().load(tmp_path, tmp_path / "cache")
    msg = one_line(err)
    assert msg.startswith(f"Cannot decode image {bad}: its {shown}") and "8-bit or 16-bit PNG" in msg


def test_imagefolder_wide_pixels_within_8_bits_decode_as_before(tmp_path):
    tree(tmp_path, {"a": 0, "b": 128})
    save(tmp_path / "train" / "a" / "9.tif", np.full((8, 8), 200, np.int32))
    raw = ImageFolder().load(tmp_path, tmp_path / "cache")
    assert np.unique(raw.x_train[3]).tolist() == [200]


def test_imagefolder_does_not_read_a_cache_entry_of_the_clipping_decoder(tmp_path):
    """The cache key names the decoder: an entry written by the version that clipped 16-bit
    images (keyed by files and options only) is not served after the fix."""
    for split in ("train", "test"):
        for cls, value in (("dark", 1000), ("bright", 60000)):
            save(tmp_path / split / cls / "0.png", np.full((8, 8), value, np.uint16))
    ds = ImageFolder()
    raw = ds.load(tmp_path, tmp_path / "fresh")
    listing = list_tree(ds.tree(tmp_path), raw.class_names)
    old_key = cache_key("imagefolder", listing.files(), ds.options.model_dump())
    clipped = type(raw)(
        np.full_like(raw.x_train, 255),
        raw.y_train,
        np.full_like(raw.x_test, 255),
        raw.y_test,
        raw.class_names,
        (1.0,),
        (1.0,),
    )
    assert write_cache(cache_path(tmp_path / "cache", "imagefolder", old_key.digest), old_key, clipped)
    again = ImageFolder().load(tmp_path, tmp_path / "cache")
    assert np.array_equal(again.x_train, raw.x_train) and again.x_train.max() == 233


# --------------------------------------------------------------------------- timm, offline
def test_hub_probe_is_false_for_a_closed_port_and_true_for_a_listening_one(monkeypatch):
    for name in timm_models.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert timm_models.hub_reachable(timeout=2.0)
    finally:
        server.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # nothing listens there now
    assert not timm_models.hub_reachable(timeout=2.0)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # no direct route to judge by: the download decides
    assert timm_models.hub_reachable(timeout=2.0)


def test_pretrained_timm_with_the_hub_unreachable_reads_only_the_local_cache(monkeypatch):
    """Without internet, huggingface_hub retried each file five times with back-off (about a
    minute per model) and printed a line per retry; now the download runs in the Hub's offline
    mode, which answers from its local cache at once, and the error says so in one line."""
    import timm
    from huggingface_hub import constants

    seen = []

    def fake(name, pretrained=False, **kwargs):
        seen.append((name, pretrained, constants.is_offline_mode()))
        raise OSError("Cannot find the requested files in the local cache.")

    monkeypatch.setattr(timm_models, "hub_reachable", lambda timeout=0.0: False)
    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(ConfigError) as err:
        Timm(variant="resnet18", pretrained=True).build(ImageSpec(3, 32, 32, 10))
    msg = one_line(err)
    assert seen == [("resnet18", True, True)]
    assert not constants.is_offline_mode()  # restored afterwards
    assert msg.startswith(
        "Pretrained weights for timm model 'resnet18' could not be loaded (the Hugging Face Hub cannot be "
        "reached and its local cache does not hold them); download them on a connected machine"
    )
    assert msg.endswith("and pass --weights FILE.")


def test_pretrained_timm_offline_for_real_fails_fast(monkeypatch, tmp_path):
    """The real timm and huggingface_hub, no network: one line within seconds, not a minute."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(timm_models, "hub_reachable", lambda timeout=0.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached
    start = time.monotonic()
    try:
        Timm(variant="resnet18.a1_in1k", pretrained=True).build(ImageSpec(3, 32, 32, 10))
    except ConfigError as err:
        assert "cannot be reached" in str(err) and "\n" not in str(err)
    else:
        pytest.skip("the weights were found in a local cache")
    assert time.monotonic() - start < 20


def test_from_scratch_timm_never_probes_the_hub(monkeypatch):
    def probe(timeout: float = 0.0) -> bool:
        raise AssertionError("probed the Hub for a model built without --pretrained")

    monkeypatch.setattr(timm_models, "hub_reachable", probe)
    net = Timm(variant="resnet18").build(ImageSpec(1, 16, 16, 3))
    assert net.get_classifier().out_features == 3


def test_a_cifar_batches_folder_cut_short_is_named_with_the_batches_it_lacks(tmp_path):
    """Before: a copy of cifar-10-batches-py/ that stopped after data_batch_1 was "CIFAR-10 files not
    found", as if the folder were not there."""
    from tests.test_datasets import fake_cifar, write_cifar_pickles
    from unlearnkit_plugins.datasets.cifar import Cifar10

    write_cifar_pickles(tmp_path / "cifar-10-batches-py", *fake_cifar())
    for name in ("data_batch_3", "data_batch_4", "test_batch"):
        (tmp_path / "cifar-10-batches-py" / name).unlink()
    with pytest.raises(DataError) as err:
        Cifar10().check_available(tmp_path)
    message = str(err.value)
    assert message.startswith("CIFAR-10 files not found: looked in "), message
    assert "cifar-10-batches-py lacks data_batch_3, data_batch_4, test_batch (it holds 3 of the 6 batches)." in message
    assert message.endswith(".") and "Fix: pass --data-dir DIR" in message
