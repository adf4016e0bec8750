"""`unlearnkit audit` as a researcher uses it day to day: a resumed audit says what the first run said,
flags that would silently do nothing are named, and the table's counts say what they count."""

from __future__ import annotations

import pytest

from tests.invoke import invoke
from unlearnkit.errors import ConfigError

RECIPE = """
name = "tiny-usage"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune"]
seeds = [1]
epochs = 2
device = "cpu"

[options.finetune]
epochs = 1
batch_size = 32

[audit]
shadows = 4
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    from unlearnkit.store import claims

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)  # one process here: no rival claim to wait for
    path = tmp_path / "tiny-usage.toml"
    path.write_text(RECIPE)
    return path


def verdict(text: str) -> str:
    """The sanity check's line, wherever it was printed (a warning when under-powered)."""
    (line,) = [ln for ln in text.splitlines() if "U-LiRA separates" in ln or "U-LiRA audit under-powered" in ln]
    return line.removeprefix("Warning: ")


def test_a_resumed_audit_reports_the_sanity_check_with_the_numbers_of_the_first_run(host, recipe, capsys):
    """Every row in the store: the verdict used to shrink to the generic legend, printed twice, without the
    AUCs and the threshold it was decided on."""
    code, out, err = invoke(["audit", str(recipe)], capsys)
    assert code == 0, err
    first = verdict(out + err)
    assert "AUC" in first and "difference" in first
    code, out, err = invoke(["audit", str(recipe)], capsys)
    assert code == 0, err
    assert "3 of 3 rows scored: nothing to compute" in err and out.count("in store") == 3
    assert verdict(out + err) == first
    assert (out + err).count("‡ U-LiRA under-powered") <= 1  # the legend once, never repeated as the warning
    assert "members and non-members count (target shadow, example) pairs" in " ".join(out.split())  # 2 per example


def test_the_stored_verdict_is_the_recorded_one_and_missing_numbers_give_none(host, recipe):
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import RunRecord, Store, tag

    (runner,) = Audit(recipe, host.registries, Store()).runners
    entries = {e.cls.role: e for e in runner.entries if e.cls.role}

    def stored(role: str, metrics: dict[str, float], power: str) -> RunRecord:
        return RunRecord(role, "FINISHED", 0, {tag("ulira_power"): power}, {}, metrics)

    runner._done = {
        ("audit", runner.audit_key(entries["original"])): stored(
            "o", {"ulira_auc": 0.7, "ulira_power_threshold": 0.08}, "ok"
        ),
        ("audit", runner.audit_key(entries["retrained"])): stored("r", {"ulira_auc": 0.5}, "ok"),
    }
    power = runner.stored_power()
    assert (
        power is not None
        and power.ok
        and (power.original_auc, power.retrain_auc, power.threshold)
        == (
            0.7,
            0.5,
            0.08,
        )
    )
    runner._done[("audit", runner.audit_key(entries["original"]))].metrics.pop("ulira_power_threshold")
    assert runner.stored_power() is None  # a store from before the threshold was recorded: the legend only


def test_flags_and_recipe_keys_that_would_do_nothing_are_named(host, recipe, capsys):
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    job = Audit(recipe, host.registries, Store(), ensemble=4)  # U-LiRA only: no ensemble is trained
    assert not job.ensembles and any(w.startswith("--ensemble 4 is unused: no ensemble score") for w in job.ignored)
    assert not Audit(recipe, host.registries, Store(), scores="klom", ensemble=2).ignored
    with pytest.raises(ConfigError, match="^Bad --ensemble 1: an ensemble score needs at least 2 members"):
        Audit(recipe, host.registries, Store(), ensemble=1)  # wrong whether or not it is used
    asked = recipe.parent / "asked.toml"
    asked.write_text(RECIPE + "ensemble = 3\n")
    assert any(
        w.startswith("The recipe's [audit] ensemble 3 is unused")
        for w in Audit(asked, host.registries, Store()).ignored
    )
    assert not Audit(asked, host.registries, Store(), scores="ulira").ignored  # only U-LiRA, on purpose
    empty = recipe.parent / "empty.toml"
    empty.write_text(RECIPE + "scores = []\n")
    with pytest.raises(ConfigError, match=r"^Bad audit.scores \[\]: it names nothing. Valid scores: ulira, "):
        Audit(empty, host.registries, Store())  # it ran nothing and printed "done"
    code, out, err = invoke(["audit", str(empty), "--estimate"], capsys)
    assert code == 2 and "Bad audit.scores []" in err and "Traceback" not in err
    code, out, err = invoke(["audit", str(recipe), "--ensemble", "4", "--estimate"], capsys)
    assert code == 0 and "--ensemble 4 is unused" in err


def test_a_forget_set_of_one_example_says_what_to_do(host, recipe, capsys):
    one = recipe.parent / "one.toml"
    one.write_text(RECIPE.replace('scenarios = ["0.2"]', 'scenarios = ["first:1"]'))
    code, out, err = invoke(["audit", str(one), "--estimate"], capsys)
    assert code == 2 and "has 1 example; an audit needs at least 2" in err and "Traceback" not in err


def test_per_example_variance_at_four_shadows_online_is_the_pooled_one_and_the_audit_says_so(host, recipe):
    """The rows were titled "per-example variance" and were the fixed-variance numbers, silently."""
    import numpy as np

    from tests.test_audit import simulated
    from unlearnkit.audit.design import score_row
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    def scores(k: int, fixed: bool, mode: str = "online") -> np.ndarray:
        return score_row(*simulated(k, 0.5, 3, n=40), fixed_variance=fixed, mode=mode, resamples=0).scores  # type: ignore[arg-type]

    assert np.array_equal(scores(4, True), scores(4, False), equal_nan=True)  # one observation a side: pooled
    assert not np.array_equal(scores(6, True), scores(6, False), equal_nan=True)
    assert not np.array_equal(scores(4, True, "offline"), scores(4, False, "offline"), equal_nan=True)
    note = "Per-example variance (--per-example-variance) changes nothing at 4 shadows online"
    assert any(w.startswith(note) for w in Audit(recipe, host.registries, Store(), fixed_variance=False).ignored)
    for quiet in ({"fixed_variance": False, "shadows": 6}, {"fixed_variance": False, "mode": "offline"}, {}):
        assert not Audit(recipe, host.registries, Store(), **quiet).ignored, quiet  # type: ignore[arg-type]


def test_cells_sharing_shadow_originals_count_them_once_in_the_estimate(host, recipe, capsys, tmp_path):
    """Two scenarios share their 4 shadow originals: the run trains 12 models, the estimate said 16 (and,
    once they were trained, "16 reused" of 12 in the store)."""
    two = recipe.with_name("two.toml")
    two.write_text(RECIPE.replace('scenarios = ["0.2"]', 'scenarios = ["0.2", "0.3"]'))
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'two' / 'mlflow.db'}"]
    code, out, err = invoke(["audit", str(two), "--estimate", *uri], capsys)
    text = " ".join((out + err).split())
    assert code == 0 and "12 reference models to train, 0 reused" in text, text
    assert "(0 in the store, 4 shared with an earlier cell)" in text
    assert invoke(["audit", str(two), *uri], capsys)[0] == 0
    code, out, err = invoke(["audit", str(two), "--estimate", *uri], capsys)
    text = " ".join((out + err).split())
    assert code == 0 and "0 reference models to train, 12 reused" in text, text


def test_an_audit_estimate_under_a_misspelt_experiment_makes_none(host, recipe, capsys, tmp_path):
    from unlearnkit.store.mlflow_store import Store

    uri = f"sqlite:///{tmp_path / 's' / 'mlflow.db'}"
    Store(uri).check()  # a store holding the default experiment
    asked = ["audit", str(recipe), "--estimate", "--tracking-uri", uri, "--experiment", "unlearnkt"]
    for extra in ([], ["--scores", "ulira,challenge", "--ensemble", "2"]):  # the ensemble's estimate too
        code, _, err = invoke([*asked, *extra], capsys)
        assert code == 0, err
        names = {e.name for e in Store(uri).client.search_experiments()}
        assert "unlearnkt" not in names, names
