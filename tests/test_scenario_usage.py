"""The forget scenarios as a researcher writes them: spellings of one scenario are one benchmark,
scenarios that cannot run are refused when parsed, and a misspelt name or class is answered with
the one it resembles. Each test failed before its fix (the docstring says what happened then)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.invoke import invoke
from unlearnkit.api.scenarios import ScenarioData
from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.prepared import Benchmark
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.errors import ConfigError

TINY = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--epochs", "1"]


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


def bench_key(regs, forget: str) -> str:
    plan = validate(RunRequest(dataset="synthetic", model="cnn", forget=forget, methods=["finetune"]), regs)
    return Benchmark(plan).key


# ------------------------------------------------------------------------------------ identity
@pytest.mark.parametrize("text", ["identity: a , b", "identity:a,b,a", "identity:a,,b,a"])
def test_one_list_of_people_spelt_with_repeats_or_spaces_is_one_benchmark(regs, text):
    """``identity:a,a,b`` forgets the people of ``identity:a,b`` but was another key, so another
    benchmark: the same forget set computed and ranked twice."""
    assert parse_scenario(text, regs.scenarios).key == "identity:a,b"
    assert bench_key(regs, text) == bench_key(regs, "identity:a,b") == "691aaf0b4f8967d1b990"  # 0.2's


def test_people_listed_in_another_order_keep_the_key_0_2_stored_them_under(regs):
    """Sorting the list would make ``identity:b,a`` the benchmark of ``identity:a,b`` and recompute,
    under a new key, every run 0.2 stored under the old one; the order is kept (docs/protocols.md)."""
    assert parse_scenario("identity:b,a", regs.scenarios).key == "identity:b,a"


def test_a_long_list_of_one_person_is_keyed_once(regs):
    """100,000 copies of one id made a 200 KB key (and a 200 KB tag on every run)."""
    assert parse_scenario("identity:" + ",".join(["p7"] * 100_000), regs.scenarios).key == "identity:p7"


# ------------------------------------------------------------------------------------ sequential
def test_sequential_requests_of_named_people_are_refused_when_parsed(regs):
    """Request 1 forgets every image of the people, so request 2 was always empty: the run was
    refused only after the data loaded, saying "the pool ran out" (it had not)."""
    with pytest.raises(ConfigError) as refused:
        parse_scenario("sequential:3:identity:a", regs.scenarios)
    assert str(refused.value) == (
        "Bad forget scenario 'sequential:3:identity:a': expected a rule that draws again from what is left, "
        "not identity:a: random:F, instance:F, first:N or memorised:S:F."
    )


def test_sequential_requests_that_draw_again_still_draw(regs):
    y = np.arange(40) % 2
    groups = np.array(list("abcd"))[np.arange(40) % 4]
    for text in ("sequential:2:random:0.1", "sequential:2:first:3", "sequential:2:0.1"):
        idx = make_splits(y, np.arange(10) % 2, parse_scenario(text, regs.scenarios), 0, ["x", "y"], groups=groups)
        assert len(idx.requests) == 2 and len(np.intersect1d(idx.forget, idx.retain)) == 0


# ------------------------------------------------------------------------------------ bad text
@pytest.mark.parametrize(
    "text, message",
    [
        ("class", "Bad forget scenario 'class': it takes parameters, written class:<id|name>, e.g. class:0."),
        ("random", "Bad forget scenario 'random': it takes parameters, written random:<fraction>, e.g. random:0.1."),
        (
            "sequential",
            "Bad forget scenario 'sequential': it takes parameters, written sequential:<k>:<scenario>, "
            "e.g. sequential:3:random:0.05.",
        ),
        (
            "clas",
            "Bad forget fraction 'clas': expected a number strictly between 0 and 1. Did you mean 'class'? "
            "Or name a scenario, NAME:PARAMETERS (`unlearnkit list scenarios`).",
        ),
        ("RANDOM:0.1", "Bad forget scenario 'RANDOM:0.1': no scenario is named 'RANDOM'. Did you mean 'random'?"),
        ("1.5", "Bad forget fraction '1.5': expected a number strictly between 0 and 1."),  # 0.2's, unchanged
    ],
)
def test_a_scenario_name_alone_or_in_capitals_says_how_to_write_it(regs, text, message):
    """``--forget class`` answered "Bad forget fraction 'class': expected a number strictly between 0
    and 1", naming no scenario; ``RANDOM:0.1`` listed the scenarios without suggesting ``random``."""
    with pytest.raises(ConfigError) as refused:
        parse_scenario(text, regs.scenarios)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    if text == "1.5":
        assert str(refused.value) == message


def test_the_command_line_says_it_in_one_line(host, capsys):
    code, _, err = invoke([*TINY, "--forget", "class"], capsys)
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1
    assert (
        errors[0] == "Error: Bad forget scenario 'class': it takes parameters, written class:<id|name>, e.g. class:0."
    )


NAMES = ["airplane", "automobile", "bird", "cat"]
Y = np.arange(40) % 4


def refused_class(regs, target: str, names: list[str] = NAMES, y: np.ndarray = Y) -> str:
    with pytest.raises(ConfigError) as refused:
        make_splits(y, y[:8], parse_scenario(f"class:{target}", regs.scenarios), 0, names)
    return str(refused.value)


@pytest.mark.parametrize("target", ["Cat", "CAT", "cta"])
def test_a_class_name_in_another_case_is_refused_with_the_right_one(regs, target):
    """``class:Cat`` listed the classes but did not say which was meant. Matching stays exact: a
    second spelling of a class would be a second benchmark."""
    assert refused_class(regs, target) == (
        f"Unknown class '{target}' for class unlearning. Did you mean 'cat'? "
        "Valid classes: 0=airplane, 1=automobile, 2=bird, 3=cat."
    )


def test_a_class_id_out_of_range_says_the_range(regs):
    assert refused_class(regs, "4").startswith("Unknown class '4' for class unlearning. Class ids run from 0 to 3.")


def test_a_thousand_classes_make_one_short_line(regs):
    """ImageNet's 1,000 wnids made a 16 KB error line; now the first 30 and how many there are."""
    names = [f"n{i:08d}" for i in range(1000)]
    message = refused_class(regs, "1000", names, np.arange(2000) % 1000)
    assert len(message) < 600 and message.endswith("29=n00000029, ... (1000 in all, ids 0 to 999).")


def test_a_sub_class_in_another_case_is_refused_with_the_right_one(regs):
    """``subclass:Rocket`` on CIFAR-20 listed the first 12 of 100 sub-classes (not rocket) and no
    suggestion."""
    fine = [f"fine{i}" for i in range(20)] + ["rocket"]
    n = len(fine) * 2
    data = ScenarioData(
        np.arange(n), np.arange(n) % 2, ["a", "b"], subclasses=np.arange(n) % len(fine), subclass_names=fine
    )
    with pytest.raises(
        ConfigError, match=r"Unknown sub-class 'Rocket' for sub-class unlearning\. Did you mean 'rocket'\?"
    ):
        parse_scenario("subclass:Rocket", regs.scenarios).draw(data, 0)
    with pytest.raises(
        ConfigError, match=r"Unknown sub-class '21' for sub-class unlearning\. Sub-class ids run from 0"
    ):
        parse_scenario("subclass:21", regs.scenarios).draw(data, 0)
    assert len(parse_scenario("subclass:rocket", regs.scenarios).draw(data, 0).indices) == 2
