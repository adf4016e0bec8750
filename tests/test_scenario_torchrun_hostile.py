"""Hostile forget scenarios and torchrun environments: each is refused in one line naming the value
and what is valid, before anything is trained or written, and valid ones keep their forget sets."""

from __future__ import annotations

import re

import numpy as np
import pytest

from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.errors import ConfigError
from unlearnkit.parallel import torchrun

MANY = "9" * 5000  # past int()'s 4300-digit limit
LONG = "x" * 3000


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


def splits(regs, text: str, seed: int = 0, **extra):
    """The split of 4 classes x 10 training images (fine classes s0..s7) under scenario ``text``."""
    y_train, y_test = np.repeat(np.arange(4), 10), np.repeat(np.arange(4), 5)
    fine = {"subclasses": np.arange(40) % 8, "subclass_names": [f"s{i}" for i in range(8)]}
    scores = {"scores": lambda source: np.linspace(0, 1, 40)}
    scenario = parse_scenario(text, regs.scenarios)
    return make_splits(y_train, y_test, scenario, seed, ["a", "b", "c", "d"], **fine, **scores, **extra)


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    return lines[-1]


# ------------------------------------------------------------------------------------ scenarios
@pytest.mark.parametrize(
    "text", ["sequential:100:random:0.1", "sequential:20:random:0.5", "sequential:30:instance:0.5"]
)
def test_sequential_requests_that_empty_the_pool_are_refused_in_one_line(regs, text):
    """The pool runs out before the last request: before, the inner rule was asked to draw from
    nothing (numpy's ValueError from random, np.concatenate's from instance)."""
    with pytest.raises(ConfigError, match=rf"Scenario '{text}': deletion request \d+ is empty \(the pool ran out\)"):
        splits(regs, text)


@pytest.mark.parametrize("inner", ["class:0", "class:cat", "subclass:s1"])
def test_sequential_requests_of_one_whole_class_are_refused_when_parsed(regs, inner):
    """Request 1 forgets the whole class, so request 2 was always empty: the run was refused only
    after the data loaded, with "the pool ran out" (it had not), and validation let class-only
    methods through."""
    with pytest.raises(ConfigError, match=f"expected a rule that draws again from what is left, not {inner}: random:F"):
        parse_scenario(f"sequential:2:{inner}", regs.scenarios)


def test_sequential_requests_that_fit_keep_their_forget_sets(regs):
    idx = splits(regs, "sequential:3:instance:0.5")
    assert [len(r.indices) for r in idx.requests] == [20, 8, 4] and len(idx.retain) == 8
    first = splits(regs, "sequential:2:random:0.1", seed=3)
    assert np.array_equal(first.requests[0].indices, np.sort(splits(regs, "random:0.1", seed=3).forget))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"sequential:{MANY}:random:0.1", "a number of requests from 2 to 100"),
        (f"first:{MANY}", "first:<N> takes a positive number of images"),
        (f"memorised:high:0.1:shadows:{MANY}", "Valid sources: confidence, learning or shadows:<K>"),
    ],
)
def test_counts_of_thousands_of_digits_are_refused_when_parsed(regs, text, says):
    """int() refuses more than 4300 digits with a ValueError: before, that was the traceback."""
    with pytest.raises(ConfigError, match=says) as refused:
        parse_scenario(text, regs.scenarios)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize(("text", "says"), [(f"class:{MANY}", "Valid classes: 0=a"), (f"subclass:{MANY}", "s0, s1")])
def test_ids_of_thousands_of_digits_are_refused_when_drawn(regs, text, says):
    with pytest.raises(ConfigError, match=says) as refused:
        splits(regs, text)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize(
    "text",
    [
        f"random:0.{'0' * 3000}5",
        f"random:{LONG}",
        LONG,
        f"first:{LONG}",
        f"memorised:{LONG}",
        f"memorised:high:{LONG}",
        f"memorised:high:0.1:{LONG}",
        f"sequential:2:{LONG}",
        f"class:{LONG}",
        f"subclass:{LONG}",
    ],
)
def test_an_error_line_repeats_a_pasted_value_shortened(regs, text):
    """A 3 KB parameter made a 3 KB error line; now at most ECHO_CHARS of it and its length."""
    with pytest.raises(ConfigError) as refused:
        splits(regs, text)
    assert len(str(refused.value)) < 300 and "chars)" in str(refused.value)


def test_an_error_line_escapes_a_line_break_or_a_reordering_character(regs):
    with pytest.raises(ConfigError) as refused:
        splits(regs, "class:a\u202eb")
    assert "a\\u202eb" in str(refused.value)
    with pytest.raises(ConfigError, match=r"Bad forget fraction '0.1\\n2'"):
        parse_scenario("random:0.1\n2", regs.scenarios)


def test_a_class_id_with_leading_zeros_is_one_scenario_with_its_number(regs):
    """``class:03`` was stored under its own key, beside ``class:3``'s runs of the same forget set."""
    for spelling in ("3", "03", "0003"):
        scenario = parse_scenario(f"class:{spelling}", regs.scenarios)
        assert scenario.key == "class:3"
        idx = splits(regs, f"class:{spelling}")
        assert idx.forget_class == 3 and idx.forget.tolist() == list(range(30, 40))
    assert parse_scenario("class:c", regs.scenarios).key == "class:c"  # a name stays as given


def test_a_class_id_in_other_scripts_digits_is_not_an_id(regs):
    """``\\d`` and ``int`` take Arabic-Indic digits: ``class:٣`` was class 3 under a key of its own."""
    with pytest.raises(ConfigError, match="Unknown class '٣' for class unlearning. Valid classes: 0=a, 1=b"):
        splits(regs, "class:٣")
    with pytest.raises(ConfigError, match="Unknown sub-class '٣'"):
        splits(regs, "subclass:٣")


def test_seeds_draw_their_own_sets_and_the_same_seed_the_same_set(regs):
    for text in ("random:0.2", "memorised:high:0.1", "sequential:2:random:0.1"):
        a, again, other = (splits(regs, text, seed=s).forget for s in (1, 1, 2))
        assert np.array_equal(a, again) and not np.array_equal(a, other), text
    for text in ("0.2", "class:1", "first:5"):
        assert np.array_equal(splits(regs, text, seed=1).forget, splits(regs, text, seed=2).forget), text


def test_cli_refuses_a_sequential_scenario_that_empties_the_pool_before_any_run(cli):
    from unlearnkit.store.mlflow_store import Store

    args = ["--dataset", "synthetic", "--model", "cnn", "--epochs", "1", "--method", "finetune"]
    code, _, err = cli("run", *args, "--forget", "sequential:100:random:0.1")
    line = one_line_error(code, err)
    assert "Scenario 'sequential:100:random:0.1': deletion request" in line and "is empty" in line
    assert Store().search(finished_only=False) == []


def test_an_unknown_scenario_name_is_echoed_shortened(regs):
    """The unknown-name line repeated the whole text twice: 6 KB for a 3 KB name."""
    with pytest.raises(ConfigError) as refused:
        parse_scenario("z" * 3000 + ":1", regs.scenarios)
    assert len(str(refused.value)) < 1000 and "…(3002 chars)" in str(refused.value)


def test_a_scenario_that_forgets_every_training_image_names_itself_and_the_counts(cli):
    """It said "The forget or retain set is empty", naming neither the scenario nor what it drew."""
    args = ["--dataset", "synthetic", "--model", "cnn", "--epochs", "1", "--method", "finetune"]
    code, _, err = cli("run", *args, "--forget", "first:100000")
    line = one_line_error(code, err)
    assert re.fullmatch(
        r"Error: Scenario 'first:100000' leaves the retain set empty \((\d+) of the \1 training images "
        r"forgotten\): use a larger subset or a different scenario\.",
        line,
    ), line


# ------------------------------------------------------------------------------------ torchrun
@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"WORLD_SIZE": "abc"}, "Bad WORLD_SIZE 'abc' in the environment: expected a number of processes, 1 or more"),
        ({"WORLD_SIZE": "-3"}, "Bad WORLD_SIZE '-3'"),
        ({"WORLD_SIZE": "0"}, "Bad WORLD_SIZE '0'"),
        ({"WORLD_SIZE": "2"}, "RANK is not set in the environment: expected a rank from 0 to 1 \\(WORLD_SIZE is 2\\)"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "Bad RANK 'x' in the environment: expected a rank from 0 to 1"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "Bad RANK '5'"),  # waited for the rendezvous timeout
        ({"WORLD_SIZE": "2", "RANK": "-1"}, "Bad RANK '-1'"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "3"}, "Bad LOCAL_RANK '3' .* from 0 to 1"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"}, "Bad LOCAL_RANK '1' .* 0 to 0"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "zero"}, "Bad LOCAL_RANK 'zero'"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_WORLD_SIZE": "3"}, "Bad LOCAL_WORLD_SIZE '3'"),
        ({"WORLD_SIZE": MANY, "RANK": "0"}, "Bad WORLD_SIZE '9999.*chars\\)'"),
    ],
)
def test_a_torchrun_environment_torchrun_never_writes_is_one_line(torchrun_env, values, says):
    torchrun_env(**values)
    with pytest.raises(ConfigError, match=says):
        torchrun.from_env()


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1", "0", "1e300"])
def test_a_collective_timeout_that_is_not_seconds_is_one_line(torchrun_env, value):
    """Before: float('abc') on every rank (a traceback each), timedelta(nan), or a timeout
    that fails every collective at once."""
    torchrun_env(**{torchrun.TIMEOUT_ENV: value})
    with pytest.raises(ConfigError, match=f"Bad UNLEARNKIT_DDP_TIMEOUT_S '{value}': expected seconds"):
        torchrun.timeout_s()
    torchrun_env(WORLD_SIZE="2", RANK="0")  # checked with the world, before the dataset loads
    with pytest.raises(ConfigError, match="UNLEARNKIT_DDP_TIMEOUT_S"):
        torchrun.from_env()


def test_valid_torchrun_environments_keep_their_world(torchrun_env):
    assert torchrun.from_env() == torchrun.SINGLE and torchrun.timeout_s() == torchrun.DEFAULT_TIMEOUT_S
    torchrun_env(WORLD_SIZE="1", RANK="3")  # one process: its rank says nothing
    assert torchrun.from_env() == torchrun.SINGLE
    torchrun_env(WORLD_SIZE="", RANK="")
    assert torchrun.from_env() == torchrun.SINGLE
    torchrun_env(MASTER_ADDR="10.0.0.1", MASTER_PORT="29500")  # torchrun writes where the ranks meet
    torchrun_env(WORLD_SIZE=" 4 ", RANK="3", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", **{torchrun.TIMEOUT_ENV: "2.5"})
    assert torchrun.from_env() == torchrun.World(3, 4, 1) and torchrun.timeout_s() == 2.5


def test_cli_refuses_a_broken_torchrun_environment_before_loading_anything(cli, torchrun_env):
    from unlearnkit.store.mlflow_store import Store

    torchrun_env(WORLD_SIZE="2", RANK="two")
    code, _, err = cli("run", "--dataset", "synthetic", "--model", "cnn", "--epochs", "1", "--method", "finetune")
    assert (
        one_line_error(code, err)
        == "Error: Bad RANK 'two' in the environment: expected a rank from 0 to 1 (WORLD_SIZE is 2)."
    )
    assert Store().search(finished_only=False) == []


def _same_everywhere_rank(rank: int, port: int, out: str, texts: list[str]) -> None:
    """One gloo rank of :func:`test_ranks_started_with_different_requests_are_refused_on_every_rank`."""
    import json
    from datetime import timedelta
    from pathlib import Path

    import torch.distributed as dist

    from unlearnkit.errors import ConfigError

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    try:
        said = []
        for text in texts:  # one call per text: the first agrees everywhere, the second only on rank 0
            try:
                torchrun.World(rank, 2).same_everywhere("requests", text if rank == 0 else text.replace("b", "c"))
                said.append("same")
            except ConfigError as err:
                said.append(str(err))
        Path(out, f"rank{rank}.json").write_text(json.dumps(said))
    finally:
        dist.destroy_process_group()


def test_ranks_started_with_different_requests_are_refused_on_every_rank(tmp_path):
    """Two real gloo processes: the same text passes on both; a text that differs on rank 1 is the
    same one line on both ranks (before, ranks that disagreed went on until a claim's topic or a
    collective failed, with tracebacks and a FAILED run in the store)."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    texts = ["{'forget': 'a'}", "{'forget': 'b'}"]
    procs = [ctx.Process(target=_same_everywhere_rank, args=(r, port, str(tmp_path), texts)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    refused = "The ranks were started with different requests: rank 1's is not rank 0's. Start every rank with"
    for rank in range(2):
        said = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert said[0] == "same" and said[1].startswith(refused), said
    torchrun.SINGLE.same_everywhere("requests", "anything")  # one process: nothing to compare
