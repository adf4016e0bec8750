"""Which numbers a method's row shows when its runs were made by different code: a method's version
bump hides its older runs, a metric's bump drops only that metric's older values, and a later run of
fewer metrics (``--metric``, ``--no-retrain``) hides nothing. Runs stored by 0.2 (no ``versions``
tag) count where a newer run with the same ``code`` shows they were made by the same versions."""

from __future__ import annotations

from tests.board_runs import run_tags
from unlearnkit.board.leaderboard import newest_code, plugin_name
from unlearnkit.identity import config_hash
from unlearnkit.store.mlflow_store import RunRecord

P = "unlearnkit_plugins"


def rec(run: str, start: int, method: str, metrics: dict[str, int], *, tagged: bool = True) -> RunRecord:
    """A run of ``lotus`` by method version ``method`` computing ``metrics`` (name -> version), each
    metric valued 0.5; its tags as the runner writes them (``tagged=False``: as 0.2 wrote them)."""
    versions = [f"{P}:lotus@{method}", *sorted(f"{P}:{m}@{v}" for m, v in metrics.items())]
    extra = {"code": config_hash({"method": versions[0], "metrics": versions[1:]})}
    if tagged:
        extra["versions"] = ",".join(versions)
    return RunRecord(run, "FINISHED", start, run_tags("lotus", start, **extra), {}, dict.fromkeys(metrics, 0.5))


def shown(records: list[RunRecord]) -> dict[str, list[str]]:
    return {r.run_id: sorted(r.metrics) for r in newest_code(records)}


def test_a_later_run_of_fewer_metrics_hides_none_of_the_full_runs():
    full = [rec(f"full{s}", s, "3", {"acc_forget": 1, "jsd": 1, "mia": 2}) for s in (1, 2)]
    narrow = rec("narrow", 9, "3", {"mia": 2})  # `--metric mia`, run after
    assert shown([*full, narrow]) == {
        "full1": ["acc_forget", "jsd", "mia"],
        "full2": ["acc_forget", "jsd", "mia"],
        "narrow": ["mia"],
    }


def test_a_method_version_bump_hides_the_older_runs_of_the_method():
    old = rec("old", 1, "2", {"acc_forget": 1})
    new = rec("new", 2, "3", {"acc_forget": 1})
    assert shown([old, new]) == {"new": ["acc_forget"]}


def test_a_metric_version_bump_drops_only_that_metric_of_the_older_runs():
    old = rec("old", 1, "3", {"acc_forget": 1, "mia": 1})
    new = rec("new", 2, "3", {"mia": 2})
    assert shown([old, new]) == {"old": ["acc_forget"], "new": ["mia"]}


def test_a_stored_0_2_run_counts_where_a_newer_run_shares_its_code():
    legacy_full = rec("legacy", 1, "3", {"acc_forget": 1, "mia": 1}, tagged=False)
    legacy_other = rec("legacy_other", 2, "3", {"acc_forget": 1}, tagged=False)  # a code no newer run has
    full = rec("full", 3, "3", {"acc_forget": 1, "mia": 1})
    narrow = rec("narrow", 4, "3", {"mia": 1})
    assert shown([legacy_full, legacy_other, full, narrow]) == {
        "legacy": ["acc_forget", "mia"],
        "full": ["acc_forget", "mia"],
        "narrow": ["mia"],
    }


def test_without_versions_tags_the_newest_code_alone_counts_as_in_0_2():
    runs = [rec("a", 1, "3", {"acc_forget": 1, "mia": 1}, tagged=False), rec("b", 2, "3", {"mia": 1}, tagged=False)]
    assert shown(runs) == {"b": ["mia"]}


def test_plugin_names_are_read_from_either_version_form():
    assert plugin_name(f"{P}:acc_forget@1") == "acc_forget"
    assert plugin_name("my-pkg:my_metric==1.2.0") == "my_metric"


def test_the_runner_writes_versions_that_hash_to_its_code(cli, tmp_path):
    """The tag the board reads and the hash it is compared with come from one identity."""
    from pathlib import Path

    from unlearnkit.store.mlflow_store import Store

    fixtures = str(Path(__file__).parent / "fixtures" / "plugins")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    run = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", fixtures, "--seeds", "1"]
    code, _, err = cli(*run, "--device", "cpu", "--epochs", "1", "--method", "finetune", "--tracking-uri", uri)
    assert code == 0, err
    (record,) = Store(uri).search({"run_type": "unlearn", "method": "finetune"})
    versions = record.tag("versions").split(",")
    assert record.tag("code") == config_hash({"method": versions[0], "metrics": versions[1:]})
    assert versions[0].endswith(":finetune@2") and any(":acc_forget@" in v for v in versions[1:])
