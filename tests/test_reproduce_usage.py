"""``unlearnkit reproduce`` as a first-time user drives it (docs/reproducing.md, ``--help``): what the
dry-run promises is what the run does, the exit status agrees with the report, bad input is one line
naming the value and the choices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from unlearnkit.board.published import compare, load_table

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "recipes" / "tables" / "unlearnkit-digits.toml"


def paper_digits(tmp_path: Path) -> Path:
    """The digits table under the paper protocol: the one whose dry-run can be asked for draws and a clean column."""
    path = tmp_path / "paper-digits.toml"
    path.write_text(DIGITS.read_text().replace('protocol = "clean"', 'protocol = "paper"'))
    return path


def test_the_dry_run_counts_the_clean_column_and_the_eval_draws_runs(cli, tmp_path):
    """It counted the table's paper-protocol runs alone: 10 runs to do, while the run did 30."""
    table = str(paper_digits(tmp_path))
    code, out, err = cli("reproduce", table, "--dry-run", "--seeds", "1", "--clean-column", "--eval-draws", "3")
    assert code == 0, out + err
    assert "cell digits/cnn/0.1: original, retrain, lotus, neggrad_plus, finetune × seeds 1" in out
    assert "digits/cnn/0.1, eval draw 1: 5 runs to do" in out and "digits/cnn/0.1, eval draw 2: 5 runs to do" in out
    assert "digits/cnn/0.1, clean protocol: 5 runs to do" in out
    # the reference models are the same for every protocol and draw: trained once, counted once
    assert "Table 'unlearnkit-digits': 20 runs to do, 0 in the store; 2 reference models to train" in out
    code, out, err = cli("reproduce", table, "--dry-run", "--seeds", "1")
    assert code == 0 and "5 runs to do, 0 in the store; 2 reference models to train" in out
    assert "(eval draw" not in out and "(clean protocol)" not in out


def test_the_dry_run_refuses_what_the_run_refuses(cli):
    """``--eval-draws 2`` on a clean table: the run refused it in one line, the dry-run planned it."""
    code, out, err = cli("reproduce", "unlearnkit-digits", "--dry-run", "--eval-draws", "2")
    assert code == 2, out + err
    assert "--eval-draws 2: table 'unlearnkit-digits' is under the 'clean' protocol" in err
    assert len(err.strip().splitlines()) == 1


def test_from_store_with_nothing_to_judge_exits_non_zero(cli):
    """Every cell "not run" (its runs are not in this store): the JSON said ``"holds": false`` and the
    command exited 0, so a CI gate on the exit status passed a table nobody had run."""
    code, out, err = cli("reproduce", "unlearnkit-digits", "--from-store", "--format", "json")
    doc = json.loads(out[out.index("{") :])
    assert not doc["holds"] and doc["counts"]["not run"] == 35
    assert code == 1, out + err
    assert "no cell ran" in err


def test_a_cell_without_runs_says_the_same_thing_whatever_its_metric():
    """With no board (nothing of the table's benchmark in the store), the accuracy cells said "the table
    has not run" (also after ``--from-store``, which runs nothing by design) and the runtime cells of the
    same rows "no finished run in the store"."""
    rep = compare(load_table(DIGITS), None)
    reasons = {c.why for c in rep.cells}
    assert reasons == {"no finished run of the table's benchmark in the store"}, reasons


def test_a_folder_given_as_the_table_is_named_as_a_folder(cli, tmp_path):
    """``reproduce SOME_FOLDER`` said "Table file 'SOME_FOLDER' does not exist." of a folder that does."""
    (tmp_path / "tables").mkdir()
    code, _, err = cli("reproduce", "tables")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'tables' is a folder, not a table file" in err
    code, _, err = cli("reproduce", str(tmp_path / "tables"))
    assert code == 2 and "is a folder, not a table file" in err and "does not exist" not in err


def test_a_table_whose_benchmark_is_not_in_its_recipe_names_the_recipes_cells(cli, tmp_path):
    """ "has 0 cells for digits / cnn / 0.2" named neither the recipe's cells nor how to fix the table."""
    bad = tmp_path / "bad.toml"
    bad.write_text(DIGITS.read_text().replace('scenario = "0.1"', 'scenario = "0.2"'))
    code, _, err = cli("reproduce", str(bad), "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "recipe 'reproduce-digits' has no cell for digits / cnn / 0.2. Its cells: digits/cnn/0.1." in err


def test_clean_column_on_a_clean_table_says_why_there_is_none(cli):
    """It was dropped without a word: the report simply had no clean column."""
    code, out, err = cli("reproduce", "unlearnkit-digits", "--dry-run", "--clean-column")
    assert code == 0, out + err
    assert "--clean-column: table 'unlearnkit-digits' is under the clean protocol already" in err
    assert "(clean protocol)" not in out


def test_the_eval_draws_join_a_borrowed_spread_as_their_own_component():
    """A number published without ± borrows our spread with pooled degrees of freedom; the draws'
    variance must still count as a Welch–Satterthwaite component with n_draws - 1 of its own
    (docs/reproducing.md). The pooled 3 + 3 - 2 = 4 overrode it, and the draws' 2 were ignored."""
    from unlearnkit.board.leaderboard import Stat
    from unlearnkit.board.published import Published, tolerance

    # hand-computed: pooled 0.02^2 (1/3 + 1/3) = 0.000266667 (4 df), draws 0.03^2 = 0.0009 (2 df)
    # total 0.001166667; df = total^2 / (0.000266667^2 / 4 + 0.0009^2 / 2) = 3.2194
    # t_0.975(3.2194) = 3.063 (between 3.182 at 3 df and 2.776 at 4; linear in 1/df: 3.071)
    tol = tolerance(Published(0.30, None, 0.005), 3, Stat(0.35, 0.02, 3), Stat(0.35, 0.03, 3))
    assert tol == pytest.approx(3.063 * math.sqrt(0.001166667) + 0.005, abs=2e-4)
    # without draws the borrowed case is unchanged: 4 df, t = 2.7764
    tol = tolerance(Published(0.30, None, 0.005), 3, Stat(0.35, 0.02, 3))
    assert tol == pytest.approx(2.7764 * 0.02 * math.sqrt(2 / 3) + 0.005, abs=1e-5)


def test_a_bad_scenario_in_a_table_names_the_table(cli, tmp_path):
    """ "Bad forget fraction 'ten': ..." did not say it came from the table file, not a flag."""
    bad = tmp_path / "bad.toml"
    bad.write_text(DIGITS.read_text().replace('scenario = "0.1"', 'scenario = "ten"'))
    code, _, err = cli("reproduce", str(bad), "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"Table 'unlearnkit-digits' ({bad}): scenario: Bad forget fraction 'ten'" in err
