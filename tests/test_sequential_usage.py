"""Successive deletion requests as a researcher writes them: a refused inner scenario names the
whole text, every example in an error line is a valid ``--forget`` value, a request that draws
nothing says why, and what docs/protocols.md says of the requests holds. Each test failed before
its fix (the docstring says what happened then)."""

from __future__ import annotations

import numpy as np
import pytest

import unlearnkit as uk
from unlearnkit.api.scenarios import ScenarioData
from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.errors import ConfigError

TINY = ["run", "--dataset", "synthetic", "--model", "cnn", "--epochs", "1", "--method", "finetune"]


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


def refusal(regs, text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_scenario(text, regs.scenarios)
    return str(refused.value)


# ------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    "text, inner",
    [
        ("sequential:3:random:1.5", "Bad forget fraction '1.5': expected a number strictly between 0 and 1."),
        ("sequential:3:random", "Bad forget scenario 'random': it takes parameters"),
        ("sequential:2:memorised:high:0.5", "Bad forget scenario 'memorised:high:0.5': expected a fraction of at most"),
        ("sequential:3:random:0.1:extra", "Bad forget fraction '0.1:extra'"),
    ],
)
def test_a_refused_inner_scenario_names_the_whole_text(regs, text, inner):
    """``--forget sequential:3:random:1.5`` answered "Bad forget fraction '1.5'": nothing said it came
    from the sequential scenario, which a script or recipe of several scenarios cannot trace back."""
    message = refusal(regs, text)
    assert message.startswith(f"Bad forget scenario '{text}': in the scenario of its requests, {inner}")
    assert "\n" not in message


def test_a_long_inner_text_is_echoed_once(regs):
    message = refusal(regs, "sequential:2:" + "x" * 3000)
    assert message.startswith("Bad forget scenario 'sequential:2:…': in the scenario of its requests, Bad forget")
    assert message.count("(3000 chars)") == 1 and len(message) < 300


def test_the_command_line_refuses_it_in_one_line_before_anything_runs(cli):
    from unlearnkit.store.mlflow_store import Store

    code, _, err = cli(*TINY, "--forget", "sequential:3:random:1.5")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1
    assert lines[0].startswith("Error: Bad forget scenario 'sequential:3:random:1.5': in the scenario of its requests")
    assert Store().search(finished_only=False) == []


@pytest.mark.parametrize("text", ["sequential:abc:random:0.1", "sequential:101:random:0.1", "sequential:"])
def test_the_example_a_bad_count_gives_is_a_valid_forget_value(regs, text):
    """The count's refusal said "e.g. 3:random:0.02", which as ``--forget`` is refused again
    ("no scenario is named '3'")."""
    message = refusal(regs, text)
    example = message.split("e.g. ")[1].rstrip(".")
    assert parse_scenario(example, regs.scenarios).key == "sequential:3:random:0.02"


def test_one_request_is_pointed_to_the_inner_scenario_itself(regs):
    message = refusal(regs, "sequential:1:random:0.1")
    assert "from 2 to 100" in message and message.endswith("(for one request, use random:0.1 itself).")


class Ends(uk.Scenario):
    """The last N images of class 0 (a third party's rule, as the example package's ``tail``)."""

    name = "sequential_probe_ends"
    summary = "The last N training images of class 0 (test scenario)."
    syntax = "sequential_probe_ends:<N>"
    example = "2"

    def parse(self, params: str) -> str:
        return str(int(params))

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        return uk.ForgetSet(data.pool[data.pool_labels == 0][-int(self.params) :])


class EndsPlugin:
    @uk.hookimpl
    def register_scenarios(self, register):
        register(Ends)


@pytest.fixture
def ends(host):
    plugin = EndsPlugin()
    host.register(plugin)
    yield host.registries
    host.unregister(plugin)


def test_a_rule_that_runs_out_of_its_class_does_not_say_the_pool_ran_out(ends):
    """Class 0 (10 images) is gone after two requests of 5; request 3 was refused with "the pool ran
    out", while 30 images of the other classes were still kept."""
    y = np.repeat(np.arange(4), 10)
    scenario = parse_scenario("sequential:3:sequential_probe_ends:5", ends.scenarios)
    with pytest.raises(ConfigError) as refused:
        make_splits(y, y[:8], scenario, 0, ["a", "b", "c", "d"])
    assert str(refused.value) == (
        "Scenario 'sequential:3:sequential_probe_ends:5': deletion request 3 is empty: sequential_probe_ends:5 "
        "draws nothing from the 30 training images still kept. Make fewer requests, or use a rule that draws from "
        "the whole pool (random:F, instance:F, first:N or memorised:S:F)."
    )
    two = make_splits(y, y[:8], parse_scenario("sequential:2:sequential_probe_ends:5", ends.scenarios), 0, list("abcd"))
    assert [r.indices.tolist() for r in two.requests] == [[5, 6, 7, 8, 9], [0, 1, 2, 3, 4]]


def test_a_pool_that_runs_out_still_says_so(regs):
    y = np.repeat(np.arange(2), 10)
    with pytest.raises(ConfigError, match=r"deletion request 3 is empty \(the pool ran out\)"):
        make_splits(y, y[:4], parse_scenario("sequential:3:first:10", regs.scenarios), 0, ["a", "b"])


@pytest.mark.parametrize("target", ["-1", "+2"])
def test_a_signed_class_id_is_answered_with_the_range(regs, target):
    """``class:-1`` (the last class, as Python counts) answered "Did you mean '1'?"."""
    y = np.arange(40) % 4
    with pytest.raises(ConfigError) as refused:
        make_splits(y, y[:8], parse_scenario(f"class:{target}", regs.scenarios), 0, ["a", "b", "c", "d"])
    assert str(refused.value).startswith(f"Unknown class '{target}' for class unlearning. Class ids run from 0 to 3.")
    fine = [f"s{i}" for i in range(8)]
    data = ScenarioData(np.arange(40), y, list("abcd"), subclasses=np.arange(40) % 8, subclass_names=fine)
    with pytest.raises(ConfigError, match=r"Unknown sub-class '-1' for sub-class unlearning\. Sub-class ids run"):
        parse_scenario("subclass:-1", regs.scenarios).draw(data, 0)


# ------------------------------------------------------------------------------------ docs
def test_the_requests_are_those_of_a_shorter_sequence(regs):
    """docs/protocols.md: the first 3 requests of sequential:5 are those of sequential:3 at the seed."""
    y = np.arange(200) % 4
    five, three = (
        make_splits(y, y[:40], parse_scenario(f"sequential:{k}:random:0.05", regs.scenarios), 7, list("abcd"))
        for k in (5, 3)
    )
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(five.requests[:3], three.requests, strict=True))


def test_a_fraction_is_of_what_is_left_for_every_rule(regs):
    """docs/protocols.md: random 10, 9, 8 of 100; instance per class of what remains; first N each."""
    y = np.arange(100) % 2
    sizes = {
        text: [
            len(r.indices) for r in make_splits(y, y[:20], parse_scenario(text, regs.scenarios), 0, ["a", "b"]).requests
        ]
        for text in ("sequential:3:random:0.1", "sequential:3:instance:0.1", "sequential:3:first:7")
    }
    assert sizes == {
        "sequential:3:random:0.1": [10, 9, 8],
        "sequential:3:instance:0.1": [10, 8, 8],
        "sequential:3:first:7": [7, 7, 7],
    }


def test_a_brought_retrained_model_is_refused_before_anything_runs(cli, tmp_path):
    """docs/protocols.md: a brought ``--retrained`` model can be the gold standard of one step only."""
    from unlearnkit.store.mlflow_store import Store

    model = tmp_path / "retrained.pt"
    model.write_bytes(b"")
    code, _, err = cli(*TINY, "--forget", "sequential:2:random:0.1", "--retrained", str(model))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1
    assert "retrains after every deletion request: a brought --retrained model is one model" in lines[0]
    assert Store().search(finished_only=False) == []
