"""Splits exactly as spec/protocol.md: first fraction per class, random, class; test halved."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.engine.splits import make_splits, parse_scenario, parse_subset
from unlearnkit.errors import ConfigError

Y_TRAIN = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
Y_TEST = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
NAMES = ["cat", "dog", "ship"]


def test_instance_takes_the_first_fraction_of_each_class_in_dataset_order():
    idx = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.2"), seed=1, class_names=NAMES)
    assert idx.forget.tolist() == [0, 1, 10, 11]  # first 1 of class 0 and 1 (5 each), first 2 of class 2 (10)
    assert sorted(np.concatenate([idx.forget, idx.retain]).tolist()) == list(range(20))
    other = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.2"), seed=2, class_names=NAMES)
    assert other.forget.tolist() == idx.forget.tolist()  # identical across seeds


def test_test_split_is_halved_stratified_and_seeded():
    a = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.2"), seed=1, class_names=NAMES)
    b = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.2"), seed=1, class_names=NAMES)
    c = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.2"), seed=7, class_names=NAMES)
    assert a.unseen.tolist() == b.unseen.tolist()
    assert not set(a.unseen) & set(a.test) and len(a.unseen) + len(a.test) == 12
    assert np.bincount(Y_TEST[a.unseen]).tolist() == [2, 2, 2]
    assert a.unseen.tolist() != c.unseen.tolist()  # another seed, another halving


def test_random_and_class_scenarios():
    r = make_splits(Y_TRAIN, Y_TEST, parse_scenario("random:0.25"), seed=3, class_names=NAMES)
    assert len(r.forget) == 5 and not set(r.forget) & set(r.retain)
    c = make_splits(Y_TRAIN, Y_TEST, parse_scenario("class:dog"), seed=3, class_names=NAMES)
    assert c.forget.tolist() == [1, 3, 5, 7, 9] and c.forget_class == 1
    assert make_splits(Y_TRAIN, Y_TEST, parse_scenario("class:2"), 3, NAMES).forget_class == 2


def test_subset_takes_first_n_per_class():
    idx = make_splits(Y_TRAIN, Y_TEST, parse_scenario("0.5"), 0, NAMES, subset=2)
    assert sorted(np.concatenate([idx.forget, idx.retain]).tolist()) == [0, 1, 2, 3, 10, 11]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1.5", "Bad forget fraction '1.5': expected a number strictly between 0 and 1."),
        ("0", "Bad forget fraction '0': expected a number strictly between 0 and 1."),
        ("abc", "Bad forget fraction 'abc': expected a number strictly between 0 and 1."),
        ("random:2", "Bad forget fraction '2': expected a number strictly between 0 and 1."),
        (
            "oops:0.1",
            "Bad forget scenario 'oops:0.1': no scenario is named 'oops'. Valid scenarios: class:<id|name>, "
            "first:<N>, identity:<id>[,<id>...], <fraction> or instance:<fraction>, "
            "memorised:<low|medium|high>:<fraction>[:<confidence|learning|shadows:K>], random:<fraction>, "
            "sequential:<k>:<scenario>, subclass:<fine name|id>",  # then any installed third party's
        ),
    ],
)
def test_bad_scenarios_are_one_line_errors(text, message):
    with pytest.raises(ConfigError) as err:
        parse_scenario(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_class_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown class 'horse' for class unlearning. Valid classes: 0=cat, 1=dog"):
        make_splits(Y_TRAIN, Y_TEST, parse_scenario("class:horse"), 0, NAMES)


def test_parse_subset():
    assert parse_subset("500") == 500 and parse_subset("0.1") == 0.1 and parse_subset(None) is None
    with pytest.raises(ConfigError, match="Bad subset '-3'"):
        parse_subset("-3")
