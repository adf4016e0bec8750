"""``--estimate`` as a researcher uses it: it writes nothing to a store (not even an experiment for a
misspelt ``--experiment``, which it names), prices a training measured at other epochs or subsets by
the images it trains, guesses in proportion to the work where nothing is measured, and names an
ensemble's models for what they are."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests.test_estimate import AUDIT
from unlearnkit.scale.estimate import GUESS_IMAGES_PER_S, Paces
from unlearnkit.store.mlflow_store import RunRecord, tag

ROOT = Path(__file__).parent
RECIPE = ROOT / "fixtures" / "recipes" / "tiny-one.toml"
PLUGINS = ROOT / "fixtures" / "plugins"

# the estimate tests' own small audit, with ensemble scores asked for
ENSEMBLE_AUDIT = (
    AUDIT.replace('name = "tiny-audit"', 'name = "tiny-ensemble"') + 'scores = ["ulira", "klom"]\nensemble = 2\n'
)


def experiments(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(row[0] for row in conn.execute("select name from experiments"))


def pace_seconds(out: str, what: str) -> float:
    match = re.search(rf"pace: {re.escape(what)}: guess, ([0-9.e+]+) s", out)
    assert match, out
    return float(match.group(1))


@pytest.mark.parametrize("command", ["sweep", "tune"])
def test_an_estimate_with_a_misspelt_experiment_makes_none_and_says_so(cli, store_dir, command):
    db = store_dir("s") / "mlflow.db"
    code, _, err = cli("sweep", str(RECIPE), "--plugins-dir", str(PLUGINS), "--tracking-uri", f"sqlite:///{db}")
    assert code == 0, err
    before = experiments(db)
    extra = ["--method", "lotus", "--trials", "2", "--tune-seeds", "7"] if command == "tune" else []
    code, out, err = cli(
        command, str(RECIPE), *extra, "--plugins-dir", str(PLUGINS), "--tracking-uri", f"sqlite:///{db}",
        "--experiment", "unlearnkt", "--estimate",
    )  # fmt: skip
    assert code == 0, err
    assert experiments(db) == before  # had made 'unlearnkt': a read-only command wrote to the store
    assert "No experiment 'unlearnkt'" in out and "unlearnkit" in out and "Every run is counted as to do." in out


def test_an_estimate_of_a_new_store_or_of_the_default_experiment_adds_no_note(cli, store_dir):
    db = store_dir("fresh") / "mlflow.db"  # the schema, no experiment 'unlearnkit' yet: a first run makes it
    before = experiments(db)
    code, out, err = sweep_estimate(cli, f"sqlite:///{db}")
    assert code == 0, err
    assert "No experiment" not in out and experiments(db) == before == ["Default"]


def sweep_estimate(cli, uri: str, *extra: str) -> tuple[int, str, str]:
    return cli("sweep", str(RECIPE), "--plugins-dir", str(PLUGINS), "--tracking-uri", uri, *extra, "--estimate")


def test_a_guess_grows_with_the_epochs_it_trains(cli, tmp_path):
    # a flat 60 s per model had priced 3 and 30 epochs alike (and digits' 2 s trainings at 60 s)
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    _, three, _ = sweep_estimate(cli, uri)
    _, thirty, _ = sweep_estimate(cli, uri, "--epochs", "30")
    what = "original training on tiny/tiny_cnn"
    assert pace_seconds(three, what) == pytest.approx(3 * 160 / GUESS_IMAGES_PER_S, rel=0.01)
    assert pace_seconds(thirty, what) == pytest.approx(10 * pace_seconds(three, what), rel=0.01)
    assert pace_seconds(thirty, "lotus on tiny/tiny_cnn") > pace_seconds(three, "lotus on tiny/tiny_cnn")
    assert not (tmp_path / "none").exists()


class FakeStore:
    """Two trainings of 20 epochs x 500 images (10,000), at 2.5 s and 2.0 s."""

    def exists(self) -> bool:
        return True

    def search(self, filters: dict[str, str]) -> list[RunRecord]:
        return [self.record(2.5), self.record(2.0)]

    @staticmethod
    def record(seconds: float) -> RunRecord:
        metrics = {"train_time_s": seconds, "train_images": 10_000.0}
        return RunRecord("r", "FINISHED", 0, tags={tag("role"): "original"}, metrics=metrics)


def test_a_training_measured_at_other_epochs_is_scaled_by_the_images_it_trains():
    paces = Paces(FakeStore())  # type: ignore[arg-type]
    same = paces.train("original", "digits", "cnn", images=10_000)
    assert (same.seconds, same.measured) == (2.25, 2) and "scaled" not in same.describe()
    longer = paces.train("original", "digits", "cnn", images=100_000)  # 10x the epochs: had said 2.25 s
    assert longer.seconds == pytest.approx(22.5) and longer.measured == 2
    assert "scaled to 100,000 images" in longer.describe()
    assert paces.train("original", "digits", "cnn").seconds == 2.25  # no images asked: as before


def test_an_ensembles_models_are_not_called_shadow_models(cli, tmp_path):
    recipe = tmp_path / "tiny-ensemble.toml"
    recipe.write_text(ENSEMBLE_AUDIT)
    code, out, err = cli("audit", str(recipe), "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0, err
    paces = [line for line in (out + err).splitlines() if "pace:" in line]
    assert paces and not any("shadow model (" in line for line in paces), paces
    assert any("reference model (an original or retrained training on tiny/tiny_cnn)" in line for line in paces)
