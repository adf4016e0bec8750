"""Valid but unusual paths, typed as a researcher types them: ``~`` where no shell expands it (a TOML file,
``--flag=~/x``), spaces and non-ASCII names, folders not made yet, relative against absolute spellings. A
path must reach the file it names, and a file's path must not change a run's identity where its content is
what counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from unlearnkit.api.types import ImageSpec
from unlearnkit.testing import TinyModel

PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
RECIPE = """\
name = "paths"
datasets = ["tiny"]
models = ["tiny_cnn"]
methods = ["lotus"]
seeds = [1]
epochs = 2
device = "cpu"
"""
TRAINING = '[default]\noptimizer = "adam"\nlr = 0.003\nbatch_size = 32\nepochs = 2\n'


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of the test's own, apart from the working folder (``tmp_path``, the ``cli`` fixture's)."""
    folder = tmp_path.parent / f"{tmp_path.name}-home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def saved_model(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(TinyModel().build(ImageSpec(1, 8, 8, 4)).state_dict(), path)
    return path


def reset() -> None:
    """Forget the loaded plugins between two commands of one test, as two processes would."""
    from unlearnkit.discovery.host import reset_host

    reset_host()


def runs(run_type: str) -> list:
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    return store.search({"run_type": run_type}, finished_only=False) if store.exists() else []


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.strip().splitlines() if line.startswith("Error")]


# ------------------------------------------------------------------------------- ~ where no shell reads it
def test_a_tilde_in_a_recipes_model_and_training_files_is_the_home_folder(cli, tmp_path, home):
    # a TOML file is read by no shell: `original = "~/orig.pt"` was "Original model file '~/orig.pt' does not
    # exist", and `train_recipe = "~/fit.toml"` an unknown training recipe
    saved_model(home / "orig.pt")
    (home / "fit.toml").write_text(TRAINING)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE + 'original = "~/orig.pt"\ntrain_recipe = "~/fit.toml"\n')
    code, out, err = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0, out + err
    assert "Sweep 'paths': 3 runs to do, 0 in the store; 1 reference model to train" in out, out
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("where", ["recipe", "--data-dir"])
def test_a_tilde_data_dir_reaches_a_ray_worker_as_the_home_folder(tmp_path, home, monkeypatch, where):
    # the datasets expand `~` where they read a folder, so the driver found the data; a Ray task got the
    # path made absolute first (`portable`), and looked in <working folder>/~/data
    from unlearnkit.scale.ray_executor import portable
    from unlearnkit.scale.sweep_recipes import expand, load_recipe

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE + ('data_dir = "~/data"\n' if where == "recipe" else ""))
    overrides = {"data_dir": Path("~/data")} if where == "--data-dir" else {}
    (cell,) = expand(load_recipe(recipe), overrides)
    assert cell.request.data_dir == home / "data"
    assert portable(cell.request).data_dir == (home / "data").resolve()


def test_a_tilde_in_a_flag_written_with_an_equals_sign_is_the_home_folder(cli, tmp_path, home):
    # `--original=~/orig.pt` reaches the command unexpanded (bash expands `~` only at a word's start):
    # the model file, the training recipe and the plugin folder were not found
    saved_model(home / "orig ü.pt")
    (home / "fit.toml").write_text(TRAINING)
    shutil.copytree(PLUGINS, home / "plugins")
    code, out, err = cli(
        "run", "--dataset", "tiny", "--model", "tiny_cnn", "--device", "cpu", "--json",
        "--original=~/orig ü.pt", "--train-recipe=~/fit.toml", "--plugins-dir=~/plugins",
    )  # fmt: skip
    assert code == 0, out + err
    assert "Using original model from" in err and str(home / "orig ü.pt") in err
    assert {row["status"] for row in json.loads(out)} == {"finished"}


def test_a_tilde_in_an_output_flag_writes_under_home_not_a_folder_named_tilde(cli, tmp_path, home):
    # `--plot=~/figs/board.png` made <working folder>/~/figs and wrote the figure there
    code, out, err = cli("leaderboard", "--plot=~/figs/board ü.png")
    assert code == 0, out + err
    assert (home / "figs" / "board ü.png").is_file()
    assert not (tmp_path / "~").exists()


def test_a_tilde_in_tunes_study_journal_is_the_home_folder(cli, tmp_path, home):
    # `--study-storage=~/studies/t.journal` made <working folder>/~/studies for the journal
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.replace('methods = ["lotus"]', 'methods = ["finetune"]'))
    code, out, err = cli(
        "tune", str(recipe), "--method", "finetune", "--trials", "1", "--tune-seeds", "5",
        "--plugins-dir", str(PLUGINS), "--study-storage=~/studies/t.journal", "--estimate",
    )  # fmt: skip
    assert code == 0, out + err
    assert (home / "studies").is_dir()
    assert not (tmp_path / "~").exists()


# ------------------------------------------------------------------------------------ where outputs go
@pytest.mark.parametrize("command", ["sweep", "leaderboard", "show"])
def test_a_figure_path_under_a_file_is_refused_before_anything_runs(cli, tmp_path, command):
    # `sweep --plot notes.txt/board.png` ran the whole sweep, then failed on "File exists"
    (tmp_path / "notes.txt").write_text("")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    argv = {
        "sweep": ["sweep", str(recipe), "--plugins-dir", str(PLUGINS)],
        "leaderboard": ["leaderboard"],
        "show": ["show", "run", "0123abcd"],
    }[command]
    code, out, err = cli(*argv, "--plot", "notes.txt/figs/board.png")
    assert code == 2, out + err
    assert error_lines(err) == [
        "Error: Cannot write the figure to 'notes.txt/figs/board.png': 'notes.txt' is a file, not a folder."
    ]
    assert runs("unlearn") == [] and runs("train") == []


def test_tunes_report_line_quotes_a_written_recipe_path_with_a_space(cli, tmp_path):
    # the line says which command reports the tuned recipe, and is copied: unquoted, the path split in two
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.replace('methods = ["lotus"]', 'methods = ["finetune"]') + "save_models = false\n")
    code, out, err = cli(
        "tune", str(recipe), "--method", "finetune", "--trials", "1", "--tune-seeds", "5",
        "--plugins-dir", str(PLUGINS), "--write", "tuned recipes/fine tuned.toml",
    )  # fmt: skip
    assert code == 0, out + err
    assert (tmp_path / "tuned recipes" / "fine tuned.toml").is_file()
    assert "report with `unlearnkit sweep 'tuned recipes/fine tuned.toml'`." in " ".join(out.split())


def test_a_folder_given_as_a_model_file_is_called_a_folder(cli, tmp_path):
    # it was "does not exist", of a folder that is there
    (tmp_path / "checkpoints").mkdir()
    code, out, err = cli(
        "run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", str(PLUGINS), "--original", "checkpoints/"
    )
    assert code == 2, out + err
    assert error_lines(err) == ["Error: Original model file 'checkpoints' is a folder: name the model file in it."]
    assert runs("train") == []


def test_a_folder_given_as_the_recipe_is_called_a_folder(cli, tmp_path):
    # `unlearnkit sweep recipes/` was "Recipe file 'recipes' does not exist", of a folder that is there
    (tmp_path / "recipes").mkdir()
    code, out, err = cli("sweep", "recipes/", "--dry-run")
    assert code == 2, out + err
    assert error_lines(err) == ["Error: Recipe file 'recipes' is a folder: name a recipe (.toml) file in it."]


# ----------------------------------------------------------------------------------------- identities
def test_a_run_typed_with_relative_paths_is_found_when_typed_with_absolute_ones(cli, tmp_path, monkeypatch):
    # files enter the identity by their content: another spelling of the same files, from another working
    # folder (and through a symlinked one), is the same run, found in the store
    inputs = tmp_path / "my inputs ü"
    inputs.mkdir()
    saved_model(inputs / "orig.pt")
    (inputs / "fit.toml").write_text(TRAINING)
    base = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--device", "cpu", "--json"]
    base += ["--plugins-dir", str(PLUGINS)]  # its package names the folder as given
    code, out, err = cli(*base, "--original", "my inputs ü/orig.pt", "--train-recipe", "./my inputs ü/fit.toml")
    assert code == 0, out + err
    first = {row["method"]: row["run_id"] for row in json.loads(out)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link").symlink_to(inputs)
    for cwd, original, training in [
        (elsewhere, inputs / "orig.pt", inputs / "fit.toml"),
        (elsewhere / "link", Path("orig.pt"), Path("fit.toml")),
    ]:
        monkeypatch.chdir(cwd)
        reset()
        code, out, err = cli(*base, "--original", str(original), "--train-recipe", f"{training}/")
        assert code == 0, out + err
        rows = json.loads(out)
        assert {row["status"] for row in rows} == {"skipped"}, rows
        assert {row["method"]: row["run_id"] for row in rows} == first
