"""`unlearnkit tune` and `unlearnkit audit` against hostile input: budgets a stored study would stretch,
a --write that would overwrite the recipe, misspelt [tune.M] tables, models that diverge on one shadow,
and store artifacts whose sha256 holds but whose content is not what the audit needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_tune import RECIPE as TUNE_RECIPE  # the tune tests' own small recipe
from unlearnkit.api.contracts import Method
from unlearnkit.api.hookspecs import hookimpl
from unlearnkit.api.progress import RecordingReporter
from unlearnkit.api.types import DataAccess
from unlearnkit.errors import ConfigError
from unlearnkit.loops.threads import pinned_threads

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"

AUDIT_RECIPE = """\
name = "tiny-audit"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["lotus"]
seeds = [1]
epochs = 4
device = "cpu"

[options.lotus]
batch_size = 16
epochs = 2

[audit]
shadows = 4
"""


@pytest.fixture(autouse=True)
def one_thread():
    with pinned_threads(1):
        yield


@pytest.fixture
def tune_recipe(tmp_path) -> Path:
    path = tmp_path / "tiny-tune.toml"
    path.write_text(TUNE_RECIPE)
    return path


@pytest.fixture
def audit_recipe(tmp_path, monkeypatch) -> Path:
    from unlearnkit.store import claims

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)  # one process: no rival claim to wait for
    path = tmp_path / "tiny-audit.toml"
    path.write_text(AUDIT_RECIPE)
    return path


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------------------------------- tune
def test_a_study_run_with_more_trials_before_is_judged_on_this_budget(tune_recipe, host):
    """Before, `tune --trials 2` after `--trials 4` summarised all 4 trials of that study while a new
    method got 2, and the written recipe said "2 trials each": an unequal budget, shown as equal."""
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.tuner import Tuner

    def tune(trials: int):
        tuner = Tuner(tune_recipe, host.registries, Store(), methods=["ssd"], trials=trials, tune_seeds="1")
        reporter = RecordingReporter()
        return tuner, tuner.run(reporter).methods[0], reporter

    _, four, _ = tune(4)
    assert (four.trials, four.complete) == (4, 4)
    tuner, two, reporter = tune(2)
    assert (two.trials, two.complete, two.new_trials) == (2, 2, 0)  # nothing run again, two trials counted
    assert two.best_trial is not None and two.best_trial < 2
    assert any("holds 2 trials past --trials 2" in e for e in reporter.events)

    import optuna

    study = optuna.load_study(study_name=two.study, storage=f"sqlite:///{tuner.store.local_db.with_name('optuna.db')}")
    first = [t for t in study.trials if t.number < 2]
    assert two.best_value == min(t.value for t in first)  # the best of the budget, not of the study


def test_tune_refuses_to_write_the_tuned_recipe_over_the_recipe_it_tunes(tune_recipe, cli):
    """Before, --write RECIPE replaced the recipe by the tuned one: its other methods, [tune] spaces and
    comments gone, and the next tune of it named, so resumed, none of its studies."""
    before = tune_recipe.read_text()
    code, out, err = cli(
        "tune", str(tune_recipe), "--method", "ssd", "--tune-seeds", "1", "--trials", "1",
        "--write", str(tune_recipe), "--plugins-dir", str(PLUGINS),
    )  # fmt: skip
    assert one_line_error(code, err).startswith(f"Error: Bad --write {tune_recipe}: it is the recipe being tuned")
    assert tune_recipe.read_text() == before and "trials" not in out

    from unlearnkit.store.mlflow_store import Store

    assert Store().search({}, finished_only=False) == []  # refused before anything ran


def test_a_tune_table_for_a_method_no_plugin_registered_is_refused(tune_recipe, host):
    """Before, a misspelt [tune.sdd] was ignored: ssd was tuned on its own space without a word."""
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.tuner import Tuner

    tune_recipe.write_text(TUNE_RECIPE + '\n[tune.sdd]\nalpha = { kind = "uniform", low = 1, high = 2 }\n')
    with pytest.raises(ConfigError, match=r"^Recipe 'tiny-tune' has a \[tune.sdd\] table: Unknown method 'sdd'"):
        Tuner(tune_recipe, host.registries, Store(), methods=["ssd"], trials=2, tune_seeds="1")


# ------------------------------------------------------------------------------------------ audit
class BufferNaN(Method):
    """Finite weights, NaN BatchNorm statistics on one shadow: its outputs there are all NaN."""

    name = "buffernan"
    summary = "Test method whose model gives NaN outputs on shadow 1."
    access = DataAccess.FORGET

    def unlearn(self, model, data, ctx):
        if ctx.seed == 2001:  # shadow 1 of an audit seeded 1
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_var.fill_(float("nan"))
        return model


class HostileMethods:
    @hookimpl
    def register_methods(self, register):
        register(BufferNaN)


def test_a_method_whose_model_gives_nan_on_one_shadow_fails_its_row_not_the_audit(audit_recipe, host):
    """Before, the NaN shadow was silently no observation: the row was scored on 34 of 64 member pairs
    and shown as done."""
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    plugin = HostileMethods()
    host.register(plugin)
    try:
        job = Audit(audit_recipe, host.registries, Store(), methods="buffernan,lotus")
        job.check()
        (report,) = job.run()
    finally:
        host.unregister(plugin)
    rows = {r.method: r for r in report.rows}
    assert rows["buffernan"].status == "failed"
    assert "shadow 1: its model gave non-finite outputs on 64 of 64 audited examples" in rows["buffernan"].failure
    assert all(rows[m].status == "finished" for m in ("original", "retrain", "lotus"))
    assert rows["lotus"].metrics["n_members"] == 64
    stored = Store().search({"run_type": "audit-shadow", "method": "buffernan"}, finished_only=False)
    assert sorted(r.status for r in stored) == ["FAILED", "FINISHED"]  # shadow 0 finished; shadow 1 never trusted


def hostile_logits(good: torch.Tensor, kind: str) -> object:
    return {
        "columns": {"logits": good[:, :2].clone()},
        "flat": {"logits": good.reshape(-1)[: good.shape[0]].clone()},
        "no key": {"weights": good},
        "nan": {"logits": torch.full_like(good, float("nan"))},
        "integers": {"logits": good.long()},
        "bare tensor": good,
    }[kind]


KINDS = ["columns", "flat", "no key", "nan", "integers", "bare tensor"]


def test_stored_audit_logits_that_are_not_a_rows_logits_are_recomputed_never_scored(audit_recipe, host):
    """An audit-shadow artifact whose sha256 matches (its writer recorded it) but whose content is not
    (pool + retained, classes) finite floats. Before: a traceback (KeyError, IndexError, np.stack's
    ValueError), or NaN and integer logits scored as if a model had given them."""
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    job = Audit(audit_recipe, host.registries, store)
    job.check()
    job.run()
    records = sorted(store.search({"run_type": "audit-shadow", "method": "lotus"}), key=lambda r: r.tag("shadow"))
    runner = job.runners[0]
    good = {r.tag("shadow"): runner.load_logits(r) for r in records}
    for i, kind in enumerate(KINDS):  # 6 kinds over the 4 shadows' runs, each loaded once tampered
        record = records[i % len(records)]
        store.save_checkpoint(
            record.run_id, hostile_logits(torch.from_numpy(good[record.tag("shadow")]), kind), "logits"
        )
        runner.reporter = reporter = RecordingReporter()
        assert runner.load_logits(store.get(record.run_id)) is None, kind
        assert any("are unusable" in w and "recomputing them" in w for w in reporter.warnings), kind
        assert store.get(record.run_id).status == "FAILED", kind

    again = Audit(audit_recipe, host.registries, store, mode="offline")  # re-scores: reads every row's logits
    again.check()
    (report,) = again.run()
    assert report.models_trained == 0 and report.method_runs == 4  # each shadow's lotus run redone, once
    redone = {r.tag("shadow"): r for r in store.search({"run_type": "audit-shadow", "method": "lotus"})}
    for shadow, arr in good.items():  # recomputed, the same logits to the last bit: no number moved
        assert np.array_equal(again.runners[0].load_logits(redone[shadow]), arr)


def test_stored_ensemble_logits_of_the_wrong_shape_are_recomputed_never_scored(audit_recipe, host):
    """Before, an ensemble-logits artifact short of one row crashed np.stack (a traceback), a missing
    split was a KeyError, and NaN logits were scored."""
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    job = Audit(audit_recipe, host.registries, store, scores="klom", ensemble=2)
    job.check()
    (first,) = job.run_ensembles()
    records = store.search({"run_type": "ensemble-logits"})
    good = {r.run_id: store.load_checkpoint(r, name="logits") for r in records}
    short, missing, nan = records[-3:]
    store.save_checkpoint(short.run_id, {**good[short.run_id], "forget": good[short.run_id]["forget"][:-1]}, "logits")
    store.save_checkpoint(missing.run_id, {k: v for k, v in good[missing.run_id].items() if k != "forget"}, "logits")
    store.save_checkpoint(nan.run_id, {**good[nan.run_id], "retain": good[nan.run_id]["retain"] * np.nan}, "logits")

    reporter = RecordingReporter()
    again = Audit(audit_recipe, host.registries, store, reporter, scores="klom,challenge", ensemble=2)
    again.check()
    (report,) = again.run_ensembles()
    unusable = [w for w in reporter.warnings if "are unusable" in w]
    assert len(unusable) == 3 and report.logits_computed == 3
    before = {r.method: r.scores["klom"].value for r in first.rows}
    assert {r.method: r.scores["klom"].value for r in report.rows} == before  # the same scores from the recomputed


def test_a_servers_study_journal_is_named_without_its_password_and_keeps_its_studies(tmp_path, monkeypatch):
    """A server URI's password landed in the journal's file name (visible to `ls`, backups, logs); the
    name now leaves it out, and a journal made by 0.2 under the old name is moved, studies and all."""
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import journal_name, study_storage

    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path))
    store = Store("http://alice:s3cret@127.0.0.1:5999")
    folder = tmp_path / "tuning"
    folder.mkdir()
    old = folder / journal_name(store.uri, store.experiment_name)
    assert "s3cret" in old.name
    old.write_text("", encoding="utf-8")  # an empty journal of 0.2's
    storage, where = study_storage(store)
    names = [p.name for p in folder.iterdir()]
    assert where == "journal" and len(names) == 1 and "s3cret" not in names[0] and "alice" in names[0], names
    study = __import__("optuna").create_study(storage=storage, study_name="kept")
    assert study.study_name == "kept" and "s3cret" not in str(list(folder.iterdir()))


def test_a_study_storage_urls_password_is_not_printed(tmp_path, monkeypatch):
    """`tune` ends with "Studies in <where>": a --study-storage URL's password was printed in full."""
    import optuna

    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import study_storage

    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda url, **kw: url)  # no server to connect to
    url = "postgresql://tuner:s3cret@db.example:5432/studies"
    storage, where = study_storage(Store(f"sqlite:///{tmp_path / 's' / 'mlflow.db'}"), url)
    assert storage == url and where == "postgresql://tuner:***@db.example:5432/studies"
