"""Recipe grids are counted before they are built and refused past a limit; --dry-run shows the grid."""

from __future__ import annotations

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.scale.sweep_recipes import MAX_CELLS, count_cells, expand, load_recipe

HUGE = """name = "huge"
datasets = ["tiny"]
models = ["tiny_cnn"]
methods = ["lotus"]
[grid.lotus]
alpha = [{alpha}]
lr = [{lr}]
batch_size = [{batch}]
"""


def recipe(tmp_path, n: int):
    path = tmp_path / "grid.toml"
    values = ", ".join(str(i + 1) for i in range(n))
    path.write_text(HUGE.format(alpha=values, lr=", ".join(f"{i + 1}e-4" for i in range(n)), batch=values))
    return path


def test_a_grid_is_counted_without_being_built_and_refused_with_its_count(tmp_path):
    spec = load_recipe(recipe(tmp_path, 100))  # 10^6 cells: building them took minutes
    assert count_cells(spec) == 1_000_000
    with pytest.raises(ConfigError, match="has 1,000,000 cells .* more than the limit of 10,000"):
        expand(spec)
    assert len(expand(load_recipe(recipe(tmp_path, 3)))) == 27


def test_max_cells_raises_or_lowers_the_limit(tmp_path):
    spec = load_recipe(recipe(tmp_path, 3))
    with pytest.raises(ConfigError, match="has 27 cells"):
        expand(spec, max_cells=26)
    assert len(expand(spec, max_cells=27)) == 27


def test_the_cli_default_is_the_library_default():
    from unlearnkit.cli import sweep

    assert sweep.MAX_CELLS == MAX_CELLS


def test_dry_run_prints_the_count_and_the_first_cells(cli, tmp_path):
    path = recipe(tmp_path, 3)
    code, out, err = cli("sweep", str(path), "--dry-run")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "Sweep 'huge': 27 cells."
    assert lines[1].strip().startswith("tiny/tiny_cnn/0.1 [lotus.alpha=1,lotus.batch_size=1,lotus.lr=0.0001]")
    assert lines[-1].strip() == "... 7 more" and len(lines) == 22
    assert not (tmp_path / "unlearnkit-store").exists()  # nothing stored, nothing computed


def test_a_grid_past_the_limit_is_one_line_from_the_cli(cli, tmp_path):
    code, out, err = cli("sweep", str(recipe(tmp_path, 3)), "--dry-run", "--max-cells", "10")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "has 27 cells" in lines[0] and "--max-cells 27" in lines[0], err
