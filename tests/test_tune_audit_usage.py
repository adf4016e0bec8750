"""`unlearnkit tune` and `unlearnkit audit` as a researcher runs them over an afternoon: a study extended
and resumed, a tuned recipe reported, an ensemble estimated over runs a sweep already made. Each test
names what it held to account; the ones marked "before" failed on the code before their fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_tune import RECIPE as TUNE_RECIPE  # the tune tests' own small recipe
from unlearnkit.api.progress import RecordingReporter
from unlearnkit.loops.threads import pinned_threads

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"

ENSEMBLE_RECIPE = """\
name = "tiny-ensemble"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["lotus"]
seeds = [1, 2]
epochs = 4
device = "cpu"

[options.lotus]
batch_size = 16
epochs = 2
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


def tuner(recipe: Path, host, trials: int, methods: tuple[str, ...] = ("ssd",)):
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.tuner import Tuner

    return Tuner(recipe, host.registries, Store(), methods=list(methods), trials=trials, tune_seeds="1")


def tune(recipe: Path, host, trials: int, methods: tuple[str, ...] = ("ssd",)):
    reporter = RecordingReporter()
    report = tuner(recipe, host, trials, methods).run(reporter)
    return report, reporter


def study_trials(report) -> list:
    import optuna

    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import study_storage

    storage, _ = study_storage(Store())
    return optuna.load_study(study_name=report.methods[0].study, storage=storage).trials


# ------------------------------------------------------------------------------------------- tune
def test_raising_trials_runs_only_the_new_ones_and_says_how_many_were_done(tune_recipe, host):
    """`--trials 2`, then `--trials 3`: one new trial, the same three trials a fresh 3-trial study
    draws, the best over all three. Before, the second tune said only "3 trials", as if it ran three."""
    first, _ = tune(tune_recipe, host, 2)
    assert (first.methods[0].new_trials, first.methods[0].complete) == (2, 2)
    more, reporter = tune(tune_recipe, host, 3)
    m = more.methods[0]
    assert (m.trials, m.complete, m.new_trials) == (3, 3, 1)
    assert any(e.endswith("3 trials; 2 of them finished before, not run again") for e in reporter.events)
    assert not any("trial 0/" in e or "trial 1/" in e for e in reporter.events)  # trials 0 and 1: not run again
    values = {t.number: t.value for t in study_trials(more)}
    assert m.best_value == min(values.values()) and values[m.best_trial] == m.best_value


def test_a_trial_stopped_between_ask_and_its_owner_is_run_when_the_tune_resumes(tune_recipe, host, monkeypatch):
    """A tune stopped after Optuna's ask, before the trial's owner was recorded, left a RUNNING trial
    with no owner. Before, the resumed tune took it to be alive: it kept a place in the budget for good,
    never run, and the method ended with 1 of its 2 trials complete at every rerun."""
    from optuna.trial import Trial, TrialState

    real = Trial.set_user_attr

    def stop_at_trial_1(self, key, value):
        if key == "owner" and self.number == 1:
            raise KeyboardInterrupt("SIGINT")
        real(self, key, value)

    monkeypatch.setattr(Trial, "set_user_attr", stop_at_trial_1)
    with pytest.raises(KeyboardInterrupt):
        tune(tune_recipe, host, 2)
    monkeypatch.setattr(Trial, "set_user_attr", real)
    report, reporter = tune(tune_recipe, host, 2)
    m = report.methods[0]
    assert (m.trials, m.complete, m.failed, m.new_trials) == (2, 2, 0, 1)
    assert "ssd trial 1: resumed (its process is gone)" in reporter.events
    assert [t.state for t in study_trials(report)] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_tuned_recipe_reports_as_the_same_runs_a_hand_written_one_gives(tune_recipe, host, tmp_path, cli):
    """`tune --write`, `sweep` the tuned recipe, then a hand-written recipe with the same options: its
    runs are found in the store (the same identities), and they carry the tuned options."""
    from unlearnkit.store.mlflow_store import Store

    t = tuner(tune_recipe, host, 2)
    report = t.run()
    written = t.write_recipe(tmp_path / "tuned-tiny.toml", report)
    best = report.methods[0].best_options
    code, out, err = cli("sweep", str(written), "--plugins-dir", str(PLUGINS))
    assert code == 0, err
    assert "6 runs (6 new, 0 already in the store, 0 failed)" in out + err
    hand = tmp_path / "hand.toml"
    options = "\n".join(f"{k} = {v!r}" for k, v in best.items())
    hand.write_text(TUNE_RECIPE.replace('"finetune", "ssd"', '"ssd"') + f"\n[options.ssd]\n{options}\n")
    code, out, err = cli("sweep", str(hand), "--plugins-dir", str(PLUGINS))
    assert code == 0, err
    assert "6 runs (0 new, 6 already in the store, 0 failed)" in out + err
    runs = [r for r in Store().search({"run_type": "unlearn", "method": "ssd"}) if not r.tag("tuning_trial")]
    assert len(runs) == 2 and all(float(r.params[f"method.{k}"]) == v for r in runs for k, v in best.items())


# ------------------------------------------------------------------------------------------ audit
def test_the_ensemble_estimate_counts_a_method_run_with_other_options_as_to_do(tmp_path, cli, monkeypatch):
    """A sweep ran lotus at seeds 1 and 2; the ensemble over those seeds reuses its runs, but not once
    [options.lotus] changed. Before, the estimate matched runs by method and seed alone and said "0 of 2
    method runs to do (2 in the store)" for the changed options, whose audit then ran both."""
    from unlearnkit.store import claims

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)
    same, other = tmp_path / "same.toml", tmp_path / "other.toml"
    same.write_text(ENSEMBLE_RECIPE)
    other.write_text(ENSEMBLE_RECIPE.replace("epochs = 2", "epochs = 3"))
    code, out, err = cli("sweep", str(same), "--plugins-dir", str(PLUGINS))
    assert code == 0, err

    def estimate(path: Path) -> str:
        code, out, err = cli(
            "audit", str(path), "--scores", "klom", "--ensemble", "2", "--estimate", "--plugins-dir", str(PLUGINS)
        )
        assert code == 0, err
        (line,) = [x for x in (out + err).splitlines() if x.startswith("Ensemble ")]
        return line

    # the same options: the sweep's runs and models; only the retrain row's own retrains (seeds 3, 4) are new
    assert "2 of 6 reference models to train, 0 of 2 method runs to do (2 in the store)" in estimate(same)
    assert "2 of 6 reference models to train, 2 of 2 method runs to do (0 in the store)" in estimate(other)


def test_tune_estimate_prices_no_failed_trial_since_none_is_run_again(tune_recipe, cli):
    """A trial that failed (here: past its wall-time guard) counts as one of the method's trials and is
    never run again; the estimate had priced its runs as still to do."""
    common = ["tune", str(tune_recipe), "--method", "ssd", "--trials", "1", "--plugins-dir", str(PLUGINS)]
    code, out, err = cli(*common, "--trial-timeout", "0.001")
    assert code == 0 and "1 failed" in out, out + err
    code, out, err = cli(*common, "--estimate")
    assert code == 0, out + err
    assert "ssd (1 trial): 0 runs to do" in out and "Tuning 'tiny-tune': 0 runs to do" in out, out
