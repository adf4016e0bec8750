"""Runs stored by unlearnkit 0.2 are found again: the five 0.2 forget rules, now scenario plugins,
keep their keys, benchmark identities and split fingerprints byte for byte.

Every value below was computed by unlearnkit 0.2's hard-coded rules (``engine/splits.py`` before
scenarios became plugins), on the embedded ``synthetic`` dataset with the ``cnn`` model, and
pasted here. A benchmark's hash also holds ``CORE_VERSION`` and the dataset's and model's plugin
versions: if one of those is bumped on purpose, the benchmark columns change with it (and only
then may they be re-pinned); the keys and fingerprints never may.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.prepared import Benchmark
from unlearnkit.engine.splits import make_splits, parse_scenario

# text, key, benchmark key, unlearning key, fingerprint (seed 0), fingerprint (seed 7, subset 10), forget class
PINNED_BY_0_2 = [
    (
        "0.1",
        "instance:0.1",
        "f3d57be33993e6e6e90b",
        "0eeeea000b1cf6f73dd1",
        "27b29cb2fce61263",
        "ace8c7178081de67",
        None,
    ),
    (
        "instance:0.1",
        "instance:0.1",
        "f3d57be33993e6e6e90b",
        "0eeeea000b1cf6f73dd1",
        "27b29cb2fce61263",
        "ace8c7178081de67",
        None,
    ),
    (
        "random:0.1",
        "random:0.1",
        "292267793fd3e283f0aa",
        "ca17cf512c101885c378",
        "78371dde0db0d4a0",
        "69d44ee199767aa6",
        None,
    ),
    ("class:3", "class:3", "46f654db9245ead90380", "7a288df5aa44ba4d5a6e", "0ceaea737616df29", "2c9c21a50623af12", 3),
    (
        "class:cat",
        "class:cat",
        "238dab9007274fa12bbe",
        "30ca13d0666f6ce081ab",
        "62657c4dc2ad3022",
        "353bfb5822e7c378",
        1,
    ),
    (
        "identity:a,b",
        "identity:a,b",
        "691aaf0b4f8967d1b990",
        "a8605d9b243e65c70792",
        "2c82c2867f5e08af",
        "ae027834b61da83b",
        None,
    ),
    (
        "first:50",
        "first:50",
        "ae2dd470a95e6f8a6797",
        "529f6ea4f1e645fd8b18",
        "97449ac8e1ece2aa",
        "72beec9868ce35b1",
        None,
    ),
]


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


@pytest.mark.parametrize("text, key, bench_key, unlearning_key, fp0, fp7, forget_class", PINNED_BY_0_2)
def test_the_five_rules_keep_their_0_2_identity(regs, text, key, bench_key, unlearning_key, fp0, fp7, forget_class):
    scenario = parse_scenario(text, regs.scenarios)
    assert scenario.key == key
    plan = validate(RunRequest(dataset="synthetic", model="cnn", forget=text, methods=["finetune"], seeds="0"), regs)
    bench = Benchmark(plan)
    assert bench.identity["scenario"] == key and "scenario_version" not in bench.identity
    assert (bench.key, bench.unlearning_key) == (bench_key, unlearning_key)
    assert bench.setting().scenario_rule == key.split(":")[0]
    raw = bench.raw
    groups = np.array(["a", "b", "c", "d", "e"])[np.arange(len(raw.y_train)) % 5]
    names = list(raw.class_names)
    if scenario.forgets_whole_classes and not scenario.params.isdigit():
        names = ["dog", "cat", "ship", "car"][: len(names)]
    idx = make_splits(raw.y_train, raw.y_test, scenario, 0, names, groups=groups)
    assert (idx.fingerprint(), idx.forget_class) == (fp0, forget_class)
    assert make_splits(raw.y_train, raw.y_test, scenario, 7, names, 10, groups=groups).fingerprint() == fp7


def test_a_scenario_at_version_2_enters_the_identity_and_moves_the_key(regs, monkeypatch):
    """The control: the pins above would not hold by accident. Bumping a rule's version (what a
    change to its meaning requires) changes the benchmark key; the key text alone does not."""
    plan = validate(RunRequest(dataset="synthetic", model="cnn", forget="random:0.1", methods=["finetune"]), regs)
    before = Benchmark(plan).key
    monkeypatch.setattr(type(plan.scenario), "algorithm_version", 2)
    bumped = Benchmark(plan)
    assert bumped.identity["scenario_version"].endswith("random@2")
    assert bumped.key != before
