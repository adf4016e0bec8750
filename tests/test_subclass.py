"""cifar20 and sub-class forgetting on a tiny archive in CIFAR-100's python format, built here."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.errors import ConfigError, DataError

FINE = ["apple", "rocket", "bus", "pear"]  # fine classes 0..3
COARSE = ["fruit", "vehicles"]  # apple, pear -> fruit; rocket, bus -> vehicles
COARSE_OF = [0, 1, 1, 0]


def write_archive(root, per_fine=(12, 6)):
    """cifar-100-python/{train,test,meta} with ``per_fine`` train/test images per fine class."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", per_fine[0]), ("test", per_fine[1])):
        fine = np.tile(np.arange(len(FINE)), n)
        base = (fine * 60).astype(np.uint8)[:, None]
        data = np.clip(base + rng.integers(0, 30, size=(len(fine), 3072)), 0, 255).astype(np.uint8)
        batch = {
            b"data": data,
            b"fine_labels": fine.tolist(),
            b"coarse_labels": [COARSE_OF[f] for f in fine],
        }
        (folder / split).write_bytes(pickle.dumps(batch))
    meta = {b"fine_label_names": [n.encode() for n in FINE], b"coarse_label_names": [n.encode() for n in COARSE]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


def load(regs, root, tmp_path):
    cls = regs.datasets.get("cifar20").cls
    return cls().load(root, tmp_path / "cache")


def test_cifar20_labels_are_the_coarse_ones_and_the_fine_ones_are_its_subclasses(regs, tmp_path):
    raw = load(regs, write_archive(tmp_path / "data"), tmp_path)
    assert raw.class_names == COARSE and raw.subclass_names == FINE
    assert raw.y_train.tolist() == [COARSE_OF[f] for f in raw.subclasses.tolist()]
    assert raw.y_test.tolist() == [COARSE_OF[f] for f in raw.subclasses_test.tolist()]
    assert raw.subclasses.tolist()[:4] == [0, 1, 2, 3]  # dataset order kept


def test_a_missing_archive_is_one_line_naming_the_folder(regs, tmp_path):
    cls = regs.datasets.get("cifar20").cls
    with pytest.raises(DataError) as err:
        cls().check_available(tmp_path / "empty")
    assert "\n" not in str(err.value) and "cifar-100-python" in str(err.value)


def test_subclass_forgets_every_image_of_one_fine_class_and_nothing_else(regs, tmp_path):
    raw = load(regs, write_archive(tmp_path / "data"), tmp_path)
    for text in ("subclass:rocket", "subclass:1"):
        scenario = parse_scenario(text, regs.scenarios)
        idx = make_splits(
            raw.y_train, raw.y_test, scenario, 0, raw.class_names,
            subclasses=raw.subclasses, subclass_names=raw.subclass_names,
        )  # fmt: skip
        assert set(raw.subclasses[idx.forget].tolist()) == {1} and len(idx.forget) == 12
        assert 1 not in set(raw.subclasses[idx.retain].tolist())  # the control: bus, its sibling, stays
        assert 2 in set(raw.subclasses[idx.retain].tolist())
        assert idx.forget_subclass == 1 and idx.forget_class is None
    assert parse_scenario("subclass:rocket", regs.scenarios).key == "subclass:rocket"


def test_bad_subclasses_are_one_line_errors(regs, tmp_path):
    raw = load(regs, write_archive(tmp_path / "data"), tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"^Unknown sub-class 'horse' for sub-class unlearning. Valid sub-classes \(4\): apple, rocket, bus, pear\.$",
    ):
        make_splits(raw.y_train, raw.y_test, parse_scenario("subclass:horse", regs.scenarios), 0, raw.class_names,
                    subclasses=raw.subclasses, subclass_names=raw.subclass_names)  # fmt: skip
    with pytest.raises(ConfigError, match="needs a dataset that gives every image a fine class"):
        make_splits(raw.y_train, raw.y_test, parse_scenario("subclass:rocket", regs.scenarios), 0, raw.class_names)
    with pytest.raises(ConfigError, match=r"^Bad forget scenario 'subclass:': expected a fine class name or id"):
        parse_scenario("subclass:", regs.scenarios)


def test_a_subclass_run_reports_the_three_accuracies(cli, tmp_path):
    root = write_archive(tmp_path / "data", per_fine=(30, 10))
    code, out, err = cli(
        "run", "--dataset", "cifar20", "--data-dir", str(root), "--model", "cnn", "--method", "finetune",
        "--forget", "subclass:rocket", "--epochs", "2", "--seeds", "0", "--train-recipe", "fast", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = {r["method"]: r for r in json.loads(out)} if out.strip().startswith("[") else None
    assert rows is not None, out
    for method in ("original", "finetune"):
        metrics = rows[method]["metrics"] if "metrics" in rows[method] else rows[method]
        for name in ("acc_subclass_forget", "acc_superclass_rest", "acc_other"):
            assert 0.0 <= metrics[name] <= 1.0, (method, name, metrics)
