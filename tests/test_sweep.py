"""Recipes and resumable sweeps: unknown keys rejected, grids expanded, SIGKILL survived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from unlearnkit.engine.config import validate
from unlearnkit.errors import ConfigError
from unlearnkit.scale.sweep_recipes import count_cells, expand, load_recipe, recipe_scope

HERE = Path(__file__).parent
RECIPE = HERE / "fixtures" / "recipes" / "tiny.toml"
PLUGINS = HERE / "fixtures" / "plugins"
ROOT = HERE.parent


def test_every_shipped_recipe_parses_and_expands(host):
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        cells = expand(load_recipe(path, host.registries), registries=host.registries)
        assert cells, path


@pytest.mark.parametrize(
    ("scenarios", "message"),
    [
        ('["0.1", "0.10"]', "lists scenarios '0.1' and '0.10', which are one scenario (instance:0.1): list it once."),
        ('["0.1", "random:1.5"]', "scenario 'random:1.5': Bad forget fraction '1.5'"),
    ],
)
def test_a_recipes_scenarios_are_parsed_and_each_listed_once(tmp_path, host, scenarios, message):
    """Before: '0.1' and '0.10' made two cells of one benchmark (`--estimate` counted 15 runs where 6
    were real), and a bad scenario text was refused without the recipe it came from."""
    from unlearnkit.scale.sweep_recipes import RecipeFile

    spec = RecipeFile(name="twice", datasets=["tiny"], models=["tiny_cnn"], scenarios=json.loads(scenarios))
    with pytest.raises(ConfigError) as refused:
        expand(spec, registries=host.registries)
    assert str(refused.value).startswith("Recipe 'twice'") and message in str(refused.value), refused.value


def test_unknown_recipe_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nseed = [1]\n')
    with pytest.raises(ConfigError, match=r"Unknown key 'seed' in recipe '.*bad.toml'. Valid keys: data_dir, "):
        load_recipe(bad)
    bad.write_text('name = "x"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nepochs = "many"\n')
    with pytest.raises(ConfigError, match="Bad value for 'epochs'"):
        load_recipe(bad)


@pytest.mark.parametrize(
    ("table", "key"), [("[grid.lotus]\nalpha = []\n", "grid.lotus.alpha"), ("[grid.lotus]\n", "grid.lotus")]
)
def test_a_grid_with_no_point_is_refused_instead_of_running_nothing(tmp_path, table, key):
    path = tmp_path / "empty.toml"
    path.write_text(RECIPE.read_text() + "\n" + table)
    with pytest.raises(ConfigError, match=rf"^Bad value for '{key}' in recipe .*: .*at least 1 item"):
        load_recipe(path)


def test_grid_expands_into_points_and_flags_override(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(RECIPE.read_text() + "\n[grid.lotus]\nalpha = [2, 8]\n")
    cells = expand(load_recipe(path), {"epochs": 7})
    assert len(cells) == 4  # 2 scenarios x 2 alphas
    assert {c.grid_point for c in cells} == {"lotus.alpha=2", "lotus.alpha=8"}
    assert all(c.request.epochs == 7 and c.request.options["lotus.batch_size"] == 16 for c in cells)


GRID_AND_FIXED = """
[options.finetune]
epochs = 1

[grid.lotus]
alpha = [2, 8]
"""


def test_a_grid_runs_its_points_and_the_other_methods_once_with_their_own_options(tmp_path, host):
    path = tmp_path / "grid.toml"
    path.write_text(RECIPE.read_text().replace('["lotus"]', '["lotus", "finetune"]') + GRID_AND_FIXED)
    spec = load_recipe(path, host.registries)
    cells = expand(spec)
    assert [(c.grid_point, c.request.methods) for c in cells[:3]] == [
        ("lotus.alpha=2", ["lotus"]),
        ("lotus.alpha=8", ["lotus"]),
        ("", ["finetune"]),  # once per scenario, not once per point
    ]
    assert len(cells) == 6 == count_cells(spec)  # 2 scenarios x (2 points + 1)
    assert cells[0].request.options == {"lotus.batch_size": 16, "lotus.alpha": 2}
    assert cells[2].request.options == {"finetune.epochs": 1}
    for cell in cells:  # each cell validates: no option names a method the cell does not run
        validate(cell.request, host.registries)


def test_a_recipes_scope_holds_the_methods_its_grid_varies_listed_or_not(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(RECIPE.read_text().replace('["lotus"]', '["finetune"]') + GRID_AND_FIXED)
    spec = load_recipe(path)
    assert {m for c in expand(spec) for m in c.request.methods} == {"lotus", "finetune"}
    assert recipe_scope(spec)[1] == {"lotus", "finetune"}  # the board shows every row the sweep ran


def test_a_recipe_cut_down_to_fewer_methods_keeps_the_others_tables_out_of_its_cells(tmp_path, host):
    path = tmp_path / "one.toml"
    path.write_text(RECIPE.read_text() + "\n[options.unsir]\nepochs = 3\n")
    (cell, *_) = expand(load_recipe(path, host.registries))
    assert cell.request.options == {"lotus.batch_size": 16}
    validate(cell.request, host.registries)
    assert "unsir.epochs" in expand(load_recipe(path), {"methods": ["lotus", "unsir"]})[0].request.options


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("options.lotsu", r"\[options.lotsu\] table: Unknown method 'lotsu'. Did you mean 'lotus'\? Valid methods: "),
        ("grid.lotsu", r"\[grid.lotsu\] table: Unknown method 'lotsu'."),
        ("dataset_options.tinny", r"\[dataset_options.tinny\] table: Unknown dataset 'tinny'. Did you mean 'tiny'"),
        ("model_options.tiny_cn", r"\[model_options.tiny_cn\] table: Unknown model 'tiny_cn'."),
    ],
)
def test_a_table_naming_no_plugin_is_refused_in_one_line(tmp_path, host, table, message):
    path = tmp_path / "typo.toml"
    value = "[1, 2]" if table.startswith("grid") else "1"
    path.write_text(RECIPE.read_text() + f"\n[{table}]\nx = {value}\n")
    load_recipe(path)  # the file itself is well formed
    with pytest.raises(ConfigError, match=r"^Recipe 'tiny-test' has a " + message):
        load_recipe(path, host.registries)


def test_a_model_table_may_name_a_variant_as_the_models_list_does(tmp_path, host):
    path = tmp_path / "variant.toml"
    body = RECIPE.read_text().replace('models = ["tiny_cnn"]', 'models = ["timm/resnet18"]')
    path.write_text(body + '\n[model_options."timm/resnet18"]\nx = 1\n')
    spec = load_recipe(path, host.registries)
    assert expand(spec)[0].request.model_options == {"x": 1}


@pytest.mark.parametrize("table", ['"timm/resnt18"', "timm"])
def test_a_model_table_naming_no_model_of_the_recipe_by_its_exact_name_is_refused(tmp_path, host, table):
    path = tmp_path / "variant.toml"
    body = RECIPE.read_text().replace('models = ["tiny_cnn"]', 'models = ["timm/resnet18"]')
    path.write_text(body + f"\n[model_options.{table}]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"table, but runs no model of that name: .* \(timm/resnet18\)\.$"):
        load_recipe(path, host.registries)


def test_sweep_refuses_a_misspelt_table_in_one_line_before_anything_runs(tmp_path, cli, isolated_store):
    path = tmp_path / "typo.toml"
    path.write_text(RECIPE.read_text().replace("[options.lotus]", "[options.lotsu]"))
    code, out, err = cli("sweep", str(path), "--plugins-dir", str(PLUGINS))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "Error: Recipe 'tiny-test' has a [options.lotsu] table: Unknown method 'lotsu'." in err
    assert not (isolated_store / "store" / "mlflow.db").exists() or not finished_per_config()


def sweep_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", "sweep", str(RECIPE), "--plugins-dir", str(PLUGINS), *extra]


def finished_per_config() -> Counter:
    from unlearnkit.store.mlflow_store import Store

    return Counter(r.tag("config_hash") for r in Store().search({"run_type": "unlearn"}))


def test_sigkill_midway_then_rerun_gives_exactly_one_run_per_cell(isolated_store, tmp_path, cli):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(sweep_cmd(), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # kill once some, but not all, runs are finished
            if sum(finished_per_config().values()) >= 1 if (isolated_store / "store" / "mlflow.db").exists() else False:
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = finished_per_config()
    assert 1 <= sum(before.values()) < 12
    code, out, err = cli(*sweep_cmd("--plot", str(tmp_path / "lb.png"))[3:])  # the re-run: here, not a new process
    assert code == 0, err[-3000:]
    after = finished_per_config()
    assert len(after) == 12 and set(after.values()) == {1}  # 2 scenarios x 2 seeds x 3 methods, once each
    assert f"{12 - sum(before.values())} new, {sum(before.values())} already in the store" in out
    assert (tmp_path / "lb.png").stat().st_size > 10_000
    from unlearnkit.store.mlflow_store import Store

    (board_run,) = Store().search({"run_type": "leaderboard"})
    assert board_run.params["recipe"] == "tiny-test"
    code, out, err = cli(*sweep_cmd()[3:])
    assert code == 0 and "0 new, 12 already in the store" in out, err[-3000:]
    assert finished_per_config() == after


def test_two_concurrent_sweeps_share_models_and_never_duplicate(isolated_store, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            sweep_cmd("--seeds", "1"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    after = finished_per_config()
    assert len(after) == 6 and set(after.values()) == {1}  # 2 scenarios x (original, retrain, lotus), once each
    from unlearnkit.store.mlflow_store import Store

    for role in ("original", "retrained"):
        trained = Store().search({"run_type": "train", "role": role}, finished_only=False)
        # one model per seed (the original is shared by both scenarios; the retrain differs per scenario)
        assert all(r.status == "FINISHED" for r in trained)
        assert len(trained) == len({r.tag("config_hash") for r in trained})


def test_all_with_a_grid_runs_the_grids_method_at_its_points_only(tmp_path, host):
    path = tmp_path / "all.toml"
    path.write_text(RECIPE.read_text().replace('["lotus"]', '["all"]') + GRID_AND_FIXED)
    spec = load_recipe(path, host.registries)
    once = expand(spec)[2]
    assert once.grid_point == "" and once.request.methods == ["all", "-lotus"]
    assert once.request.options == {"finetune.epochs": 1}  # lotus's table stays with its points
    plan = validate(once.request, host.registries)
    names = [m.name for m in plan.methods]
    assert "lotus" not in names and "finetune" in names
    assert len(names) > 3  # every other registered method still runs
    assert recipe_scope(spec)[1] == {"all", "lotus"}


def test_a_recipes_scope_splits_comma_lists_and_keeps_what_all_leaves_in(tmp_path):
    from unlearnkit.board.leaderboard import Board, Row, in_recipe

    path = tmp_path / "commas.toml"
    path.write_text(RECIPE.read_text().replace('["lotus"]', '["lotus,finetune"]'))
    assert recipe_scope(load_recipe(path))[1] == {"lotus", "finetune"}
    path.write_text(RECIPE.read_text().replace('["lotus"]', '["all, - finetune"]'))
    cells, methods = recipe_scope(load_recipe(path))
    dataset, model, scenario = sorted(cells)[0]
    rows = [Row(m, "", "", "", "original" if m == "original" else "", [0]) for m in ("original", "lotus", "finetune")]
    board = Board("", dataset, model, scenario, "", "", "clean", rows, [])
    assert [r.method for r in in_recipe(board, cells, methods).rows] == ["original", "lotus"]


@pytest.mark.parametrize(
    ("methods", "override"), [('["lotus,finetune"]', None), ('[" lotus"]', None), ('["lotus"]', ["finetune"])]
)
def test_the_cell_count_is_the_cells_expand_builds(tmp_path, methods, override):
    path = tmp_path / "count.toml"
    body = RECIPE.read_text().replace('["lotus"]', methods)
    path.write_text(body + "\n[grid.lotus]\nalpha = [2, 8]\n[grid.finetune]\nepochs = [1]\n")
    spec = load_recipe(path)
    cells = expand(spec, {"methods": override})
    assert count_cells(spec, override) == len(cells)
    expand(spec, {"methods": override}, max_cells=len(cells))  # a grid that fits its limit is not refused


def test_all_leaves_a_class_only_methods_table_out_of_an_instance_scenarios_cells(tmp_path, host):
    path = tmp_path / "rules.toml"
    body = RECIPE.read_text().replace('["lotus"]', '["all"]').replace('["0.1", "random:0.2"]', '["0.1", "class:0"]')
    path.write_text(body + "\n[options.boundary_shrink]\nepochs = 2\n")  # defined for class forgetting only
    spec = load_recipe(path, host.registries)
    cells = expand(spec, registries=host.registries)
    assert [c.request.forget for c in cells] == ["0.1", "class:0"]
    for cell in cells:
        assert ("boundary_shrink.epochs" in cell.request.options) == (cell.request.forget == "class:0")
        validate(cell.request, host.registries)
