"""``--estimate``: the runs and reference models a job needs, those the store holds, and the time the
rest takes at the store's own measured pace (a stated guess when it has none); nothing computed."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from unlearnkit.scale.estimate import GUESS_IMAGES_PER_S, GUESS_RUN_SHARE, estimate_sweep, minutes, run_seconds
from unlearnkit.store.mlflow_store import Store

ROOT = Path(__file__).parent
RECIPE = ROOT / "fixtures" / "recipes" / "tiny-one.toml"
PLUGINS = ROOT / "fixtures" / "plugins"


def sweep(cli, recipe: Path, *extra: str) -> tuple[int, str, str]:
    return cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS), *extra)


def two_seeds(tmp_path: Path) -> Path:
    """tiny-one with one more seed: three more runs, two more reference models."""
    path = tmp_path / "tiny-two.toml"
    path.write_text(RECIPE.read_text().replace("seeds = [1]", "seeds = [1, 2]"))
    return path


def guessed(original: int, retrained: int, runs: int, models: int = 1) -> float:
    """The guess for ``models`` (original, retrained) pairs training those images and ``runs`` method runs."""
    return (models * (original + retrained) + runs * GUESS_RUN_SHARE * original) / GUESS_IMAGES_PER_S


def everything() -> list:
    store = Store()
    return store.search(finished_only=False) if store.exists() else []


def test_an_empty_store_gives_a_guess_and_nothing_is_computed(cli):
    code, out, err = sweep(cli, RECIPE, "--estimate")
    assert code == 0, err
    assert "3 runs to do, 0 in the store; 2 reference models to train, 0 reused" in out
    assert f"about {minutes(guessed(3 * 160, 3 * 144, runs=3))}" in out  # 3 epochs of 160 and 144 images
    assert "lotus on tiny/tiny_cnn: guess" in out and "original training on tiny/tiny_cnn: guess" in out
    assert everything() == []  # nothing trained, nothing written


def test_after_a_sweep_its_estimate_is_zero_and_a_new_seed_is_priced_from_the_stored_times(cli, tmp_path):
    code, _, err = sweep(cli, RECIPE)
    assert code == 0, err
    code, out, err = sweep(cli, RECIPE, "--estimate")
    assert code == 0, err
    assert "0 runs to do, 3 in the store; 0 reference models to train, 2 reused; nothing to compute." in out

    store = Store()
    runs = store.search({"run_type": "unlearn"})
    trained = store.search({"run_type": "train"})
    expected = sum(statistics.median([r.metrics["train_time_s"]]) for r in trained)  # one of each role
    expected += sum(run_seconds(r) for r in runs)  # one finished run per method: its own time
    assert len(trained) == 2 and len(runs) == 3

    from unlearnkit.discovery.host import get_host
    from unlearnkit.scale.sweep import Sweep

    (est,) = estimate_sweep(Sweep(two_seeds(tmp_path), get_host(PLUGINS).registries, store))
    assert (est.runs_to_do, est.runs_in_store, est.models_to_train, est.models_in_store) == (3, 3, 2, 2)
    assert est.seconds == pytest.approx(expected) and not est.guessed
    code, out, err = sweep(cli, two_seeds(tmp_path), "--estimate")
    assert code == 0, err
    assert f"3 runs to do, 3 in the store; 2 reference models to train, 2 reused; about {minutes(expected)}." in out
    assert "lotus on tiny/tiny_cnn: " in out and "the median of 1 finished runs" in out and "guess" not in out
    assert len(store.search({"run_type": "unlearn"})) == 3  # the estimate ran nothing


TUNE = """\
name = "tiny-tune"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune", "ssd"]
seeds = [3407, 13]
epochs = 4
device = "cpu"
"""

AUDIT = """\
name = "tiny-audit"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["lotus"]
seeds = [1]
epochs = 4
device = "cpu"

[audit]
shadows = 4
"""


def test_tune_estimate_counts_references_and_trials_and_guesses_on_an_empty_store(cli, tmp_path):
    recipe = tmp_path / "tiny-tune.toml"
    recipe.write_text(TUNE)
    code, out, err = cli(
        "tune", str(recipe), "--method", "finetune,ssd", "--trials", "2", "--plugins-dir", str(PLUGINS), "--estimate"
    )
    assert code == 0, err
    # references: (original + retrain rows) x 2 tuning seeds; trials: 2 per method x 2 tuning seeds each
    assert "12 runs to do, 0 in the store; 4 reference models to train, 0 reused" in out
    assert f"about {minutes(guessed(4 * 160, 4 * 128, runs=12, models=2))}" in out
    assert "ssd on tiny/tiny_cnn: guess" in out
    assert everything() == []


def test_audit_estimate_adds_a_time_and_says_it_is_a_guess(cli, tmp_path):
    recipe = tmp_path / "tiny-audit.toml"
    recipe.write_text(AUDIT)
    code, out, err = cli("audit", str(recipe), "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0, err
    text = out + err
    assert "8 of 8 shadow models to train (0 in the store), 4 of 4 method runs to do" in text  # the counts, as before
    assert (
        f"4 runs to do, 0 in the store; 8 reference models to train, 0 reused; about {minutes(guessed(640, 512, 4, 4))}"
        in text
    )
    assert "guess" in text and everything() == []


def test_a_pace_that_prices_nothing_is_not_listed(cli, tmp_path):
    # an audit of the retrain row alone has no method run to do: it had listed "method run ( on tiny/tiny_cnn)"
    recipe = tmp_path / "tiny-audit.toml"
    recipe.write_text(AUDIT)
    code, out, err = cli("audit", str(recipe), "--methods", "retrain", "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0, err
    paces = [line for line in (out + err).splitlines() if "pace:" in line]
    assert paces and all("method run" not in line and "( on" not in line for line in paces), out + err
    assert any("reference model (an original or retrained training" in line for line in paces)
