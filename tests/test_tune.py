"""`unlearnkit tune`: equal budgets, seeded and resumable studies, and the honesty rules enforced in code."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.loops.threads import pinned_threads
from unlearnkit.scale.sweep_recipes import load_recipe

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"
ROOT = HERE.parent

RECIPE = """\
name = "tiny-tune"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune", "ssd"]
seeds = [3407, 13]
epochs = 10
device = "cpu"
save_models = false

[options.finetune]
batch_size = 32
"""


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores two threads are many times slower for these tiny models."""
    with pinned_threads(1):
        yield


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny-tune.toml"
    path.write_text(RECIPE)
    return path


def make_tuner(recipe, host, store_dir: Path | None = None, **kw):
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.tuner import Tuner

    store = Store(f"sqlite:///{store_dir / 'mlflow.db'}") if store_dir else Store()
    args = dict(methods=["finetune", "ssd"], trials=4, tune_seeds="1", epoch_cap=0.1)
    return Tuner(recipe, host.registries, store, **{**args, **kw})


# --------------------------------------------------------------------------------- fast checks
def test_every_builtin_method_declares_a_search_space_its_options_accept():
    from unlearnkit.api.search_space import parse_space
    from unlearnkit.api.types import Setting
    from unlearnkit.discovery.host import PluginHost

    setting = Setting("cifar10", "resnet", "instance", 10)
    entries = PluginHost().registries.methods.entries()
    methods = [e for e in entries if e.cls.role is None and e.provenance.package == "unlearnkit"]
    assert len(methods) >= 9
    for entry in methods:
        space = parse_space(entry.cls.search_space, entry.name)
        assert space, f"{entry.name} declares no search space"
        for name, spec in space.items():
            assert name in entry.cls.Options.model_fields, (entry.name, name)
            for value in spec.bounds():  # every end of every range is a valid option value
                entry.cls.parse_options({name: value}, defaults=entry.cls.default_options(setting))


def test_a_recipe_tune_table_is_parsed_and_its_mistakes_are_one_line_errors(tmp_path):
    from unlearnkit.api.search_space import Categorical, LogUniform

    path = tmp_path / "r.toml"
    path.write_text(
        RECIPE + '\n[tune.lotus]\nlr = { kind = "log_uniform", low = 1e-5, high = 1e-3 }\n'
        'target = { kind = "categorical", choices = ["gumbel", "softmax"] }\n'
    )
    spec = load_recipe(path)
    assert spec.tune["lotus"] == {"lr": LogUniform(1e-5, 1e-3), "target": Categorical(("gumbel", "softmax"))}
    path.write_text(RECIPE + '\n[tune.lotus]\nlr = { kind = "log_uniform", low = 1e-5, hi = 1e-3 }\n')
    with pytest.raises(ConfigError, match=r"Unknown key 'tune.lotus.lr.hi'.*Valid \[tune.METHOD\] parameter keys"):
        load_recipe(path)
    path.write_text(RECIPE + '\n[tune.lotus]\nlr = { kind = "log_uniform", low = 0, high = 1e-3 }\n')
    with pytest.raises(ConfigError, match=r"Bad value for 'tune.lotus.lr'.*0 < low < high"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            "lr = { low = 1e-5, high = 1e-3 }",
            "'tune.lotus.lr' in recipe '.*': it has no kind\\. A parameter is a table",
        ),
        (
            'lr = { kind = "loguniform", low = 1e-5, high = 1e-3 }',
            "unknown kind 'loguniform' \\(valid kinds: log_uniform,",
        ),
    ],
)
def test_a_tune_parameter_without_a_known_kind_is_said_in_the_recipes_terms(tmp_path, entry, says):
    # pydantic's words had been "Unable to extract tag using discriminator 'kind'"
    from unlearnkit.api.search_space import parse_space

    path = tmp_path / "r.toml"
    path.write_text(RECIPE + f"\n[tune.lotus]\n{entry}\n")
    with pytest.raises(ConfigError, match=says) as err:
        load_recipe(path)
    assert "discriminator" not in str(err.value) and "tag" not in str(err.value)
    with pytest.raises(ConfigError, match="kind") as err:
        parse_space({"lr": {"low": 1e-5, "high": 1e-3}}, "the lotus plugin's search_space")
    assert "discriminator" not in str(err.value)


def test_objectives_never_read_the_test_split(recipe, host):
    tuner = make_tuner(recipe, host)
    tuner.prepare()  # the data and the metric probe on sealed splits; nothing trained
    sets = tuner.metric_sets
    assert {"acc_test", "mia", "mia_efficacy", "rf_jsd"} <= {e.name for e in sets.reads_test}
    assert {"acc_forget", "acc_retain", "acc_unseen", "jsd_mean", "time_s"} <= {e.name for e in sets.clean}
    assert {"acc_test_unseen", "mia_unseen"} <= set(sets.names) and not {"acc_test", "mia"} & set(sets.names)
    # the leaderboard's Average Gap with its test-split terms on unseen data
    assert tuner.objective.metrics == ("acc_forget", "acc_retain", "acc_test_unseen", "mia_unseen")
    for name in ("acc_test", "mia"):
        with pytest.raises(ConfigError, match=f"Objective metric '{name}' reads the test split.*'{name}_unseen'"):
            make_tuner(recipe, host, objective=f"gap:acc_forget,{name}").prepare()
    assert make_tuner(recipe, host, objective="gap:acc_unseen, jsd_mean").objective.name == "gap:acc_unseen, jsd_mean"
    with pytest.raises(ConfigError, match="Unknown objective 'best'. Valid objectives: avg_gap, gap:METRIC"):
        make_tuner(recipe, host, objective="best")
    with pytest.raises(ConfigError, match="Unknown objective metric 'acc_tset'"):
        make_tuner(recipe, host, objective="gap:acc_tset")


def test_a_stand_in_puts_unseen_data_in_the_test_split_place(recipe, host):
    from unlearnkit.api.evaluation import Evaluation
    from unlearnkit.engine.prepared import Benchmark
    from unlearnkit.tune.sealed_split import SealedSplit, TestSplitAccessError, stand_in
    from unlearnkit_plugins.metrics.membership import entropy, entropy_attack

    tuner = make_tuner(recipe, host)
    tuner.prepare()
    plan = tuner.plan(tuner.cells[0], "ssd", tuner.fixed["ssd"])
    bench = Benchmark(plan)
    idx = bench.indices(1)
    model = bench.build_model().eval()
    splits = {**bench.splits(idx), "test": SealedSplit()}
    ev = Evaluation({"unlearned": model}, splits, bench.context(1, None))
    metrics = host.registries.metrics
    with pytest.raises(TestSplitAccessError):
        metrics.get("acc_test").cls().compute(ev)
    acc = stand_in(metrics.get("acc_test"))
    assert acc.name == "acc_test_unseen"
    assert acc.cls().compute(ev) == metrics.get("acc_unseen").cls().compute(ev)
    mia = stand_in(metrics.get("mia")).cls().compute(ev)  # non-members: unseen (twice: the balanced fit is unchanged)
    feature = {s: entropy(ev.probs("unlearned", s)) for s in ("retain", "unseen", "forget")}
    alone = entropy_attack(feature["retain"], feature["unseen"], feature["forget"])
    assert mia == alone


def test_tuning_seeds_that_overlap_the_reporting_seeds_are_refused(recipe, host):
    with pytest.raises(ConfigError) as err:
        make_tuner(recipe, host, tune_seeds="1,13")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("Tuning seeds 13 are reporting seeds of recipe 'tiny-tune' (3407, 13)")
    assert "--tune-seeds 1,2" in message


def test_the_cli_refuses_overlapping_seeds_in_one_line(recipe, capsys):
    from unlearnkit.cli import main
    from unlearnkit.discovery.host import reset_host

    # a host an earlier test of this worker left loaded would warn that the fixture plugin is registered
    reset_host()
    with pytest.raises(SystemExit) as exit_:
        main(["tune", str(recipe), "--method", "ssd", "--tune-seeds", "13", "--plugins-dir", str(PLUGINS)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: Tuning seeds 13 are reporting seeds") and len(err.splitlines()) <= 2


def test_a_remote_store_keeps_its_studies_in_a_journal_file(isolated_store, tmp_path):
    import optuna

    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import study_storage

    storage, where = study_storage(Store("http://127.0.0.1:9"))  # nothing is contacted
    assert where == "journal"
    journals = list((isolated_store / "cache" / "tuning").glob("*.journal"))
    assert len(journals) == 1 and "127.0.0.1" in journals[0].name
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    again = optuna.load_study(study_name="s", storage=study_storage(Store("http://127.0.0.1:9"))[0])
    assert len(again.trials) == 1
    storage, where = study_storage(Store(), str(tmp_path / "studies.journal"))
    assert where.endswith("studies.journal")


def test_class_scenarios_paper_protocol_and_unknown_space_keys_are_refused(recipe, host, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.replace('scenarios = ["0.2"]', 'scenarios = ["class:1"]'))
    with pytest.raises(ConfigError, match="same set at every seed"):
        make_tuner(bad, host)
    bad.write_text(RECIPE.replace('device = "cpu"', 'device = "cpu"\nprotocol = "paper"'))
    with pytest.raises(ConfigError, match="forwards the test split"):
        make_tuner(bad, host)
    bad.write_text(RECIPE + '\n[tune.ssd]\nalfa = { kind = "uniform", low = 1, high = 2 }\n')
    with pytest.raises(ConfigError, match="names unknown option 'alfa'"):
        make_tuner(bad, host)


def test_the_sealed_test_split_refuses_every_read():
    from unlearnkit.tune.sealed_split import SealedSplit, TestSplitAccessError

    sealed = SealedSplit("test")
    for read in (lambda: len(sealed), lambda: sealed.y, lambda: sealed.batches(8), lambda: list(sealed)):
        with pytest.raises(TestSplitAccessError, match="'test' split was read during tuning"):
            read()


def test_the_wall_time_guard_stops_a_run_at_its_next_epoch():
    from unlearnkit.tune.trials import TrialReporter, TrialTimeout

    reporter = TrialReporter()
    seen = []
    with pytest.raises(TrialTimeout, match="ran past the trial's wall-time guard"):
        with reporter.armed(0.05, "slow (seed 1)"):
            for epoch in reporter.track(range(100)):
                seen.append(epoch)
                time.sleep(0.03)
    assert 1 <= len(seen) < 10
    assert list(reporter.track(range(3))) == [0, 1, 2]  # disarmed afterwards


# ------------------------------------------------------------------------------- real studies
def best_of(report) -> dict[str, tuple[float, int, dict]]:
    return {m.method: (m.best_value, m.best_trial, m.best_params) for m in report.methods}


def test_a_seeded_study_is_deterministic_honest_and_writes_a_recipe(recipe, host, tmp_path, monkeypatch, store_dir):
    """4 trials x 2 methods, twice in separate stores: the same best options. The test split is
    never forwarded (and a tuning run that asks for it stops); every method gets the same trials
    and epochs; trials stay off the leaderboard; the written recipe parses and reproduces the best
    options."""
    from unlearnkit.api.data import Split
    from unlearnkit.board.leaderboard import leaderboard, metric_info
    from unlearnkit.tune.sealed_split import TestSplitAccessError
    from unlearnkit.tune.trials import TuningRunner

    forwarded: list[str] = []
    real = Split.indexed_batches

    def spy(self, *args, **kwargs):
        forwarded.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Split, "indexed_batches", spy)
    first = make_tuner(recipe, host, store_dir("a"))
    report = first.run()
    assert "test" not in forwarded
    assert {"forget", "retain", "unseen"} <= set(forwarded)  # the objective's data was read: the check is not vacuous
    assert [(m.trials, m.complete) for m in report.methods] == [(4, 4), (4, 4)]  # the same budget for each
    assert first.cells[0].scenario == "random:0.2"  # the fixed first-20 % rule is tuned on a random set of its size
    assert first.cap_epochs == 1 and report.methods[0].fixed["epochs"] == 1  # 0.1 x 10 epochs
    assert math.isfinite(report.methods[1].default_value)  # ssd's defaults lie in its space: trial 0 ran them

    store = first.store
    assert (tmp_path / "a" / "optuna.db").is_file()  # the study beside the MLflow store, in its own file
    info = metric_info(host.registries)
    assert leaderboard(store, info) == []  # trials and the references at tuning seeds are hidden ...
    assert leaderboard(store, info, include_tuning=True)  # ... but kept
    trial_runs = store.search({"run_type": "unlearn", "method": "finetune"})
    assert len(trial_runs) == 4 and all(
        r.tag("tuning_trial").startswith("tune-tiny-tune-finetune-") for r in trial_runs
    )
    assert all(
        r.metrics["acc_test_unseen"] == r.metrics["acc_unseen"] and "acc_test" not in r.metrics for r in trial_runs
    )
    logged = {r.tag("method"): r for r in store.search({"run_type": "tuning"})}
    assert set(logged) == {"finetune", "ssd"}
    assert all(r.metrics["tuning_wall_s"] > 0 and r.metrics["trials_complete"] == 4 for r in logged.values())

    written = first.write_recipe(tmp_path / "tuned-tiny.toml", report)
    spec = load_recipe(written)
    assert spec.name == "tuned-tiny" and spec.seeds == [3407, 13] and spec.methods == ["finetune", "ssd"]
    for m in report.methods:
        assert spec.options[m.method] == {**m.fixed, **m.best_params}
    assert f"# {report.methods[0].method}: study {report.methods[0].study}; 4 trials" in written.read_text()

    # a tuning run whose metrics ask for the test split stops with the seal's error
    plan = first.plan(first.cells[0], "ssd", first.fixed["ssd"])
    plan = dataclasses.replace(plan, metrics=[*plan.metrics, host.registries.metrics.get("acc_test")])
    runner = TuningRunner(plan, store, first.reporter, tuning_trial="guard/0", memo=first.memo)
    with pytest.raises(TestSplitAccessError):
        runner.run()

    second = make_tuner(recipe, host, store_dir("b")).run()  # a fresh store: a fresh study
    assert best_of(second) == best_of(report)
    assert all(m.best_trial is not None for m in report.methods)


@pytest.mark.slow
def test_a_killed_tune_resumes_without_rerunning_a_finished_trial(recipe, isolated_store, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unlearnkit", "tune", str(recipe), "--method", "finetune", "--trials", "4"]
    cmd += ["--tune-seeds", "1,2", "--epoch-cap", "0.3", "--plugins-dir", str(PLUGINS)]
    db = isolated_store / "store" / "optuna.db"

    def trials() -> list[tuple[int, str]]:
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            try:
                return list(con.execute("select number, state from trials order by number"))
            except sqlite3.OperationalError:  # schema not created yet
                return []

    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not any(state == "COMPLETE" for _, state in trials()):
            if proc.poll() is not None:
                pytest.fail(f"tune ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = trials()
    finished = {n for n, state in before if state == "COMPLETE"}
    assert 1 <= len(finished) < 4

    from unlearnkit.store.mlflow_store import Store

    def trial_runs() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in Store().search({"run_type": "unlearn", "method": "finetune"}):
            out.setdefault(r.tag("tuning_trial"), []).append(r.run_id)
        return out

    runs_before = trial_runs()
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = trials()
    assert [n for n, _ in after] == [0, 1, 2, 3] and all(state == "COMPLETE" for _, state in after)
    runs_after = trial_runs()
    for key, ids in runs_after.items():
        assert len(ids) == 2, (key, ids)  # one finished run per tuning seed: nothing ran twice
    for number in finished:  # a trial finished before the kill was not run again
        key = next(k for k in runs_before if k.endswith(f"/{number}"))
        assert runs_after[key] == runs_before[key]
