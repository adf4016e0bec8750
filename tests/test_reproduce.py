"""``unlearnkit reproduce``: published tables as data, their tolerances, and a verdict per cell."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path

import pytest

from unlearnkit.board.leaderboard import Stat
from unlearnkit.board.published import Published, load_table, ratio, tolerance
from unlearnkit.errors import ConfigError
from unlearnkit.scale.reproduce import find_table, shipped_tables

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "recipes" / "tables"
SPEC = ROOT.parent / "shared" / "spec" / "paper-tables.md"


# ------------------------------------------------------------------------------------- the formulas
def test_a_published_value_keeps_its_digits_as_its_rounding():
    v = Published.parse("0.30±0.04", "here")
    assert (v.mean, v.std, v.rounding) == (0.30, 0.04, pytest.approx(0.005))
    v = Published.parse("0.0375", "here")
    assert v.std is None and v.rounding == pytest.approx(0.00005)
    v = Published.parse("0.76±.03", "here")  # the supplement's short spreads
    assert v.std == 0.03
    scaled = Published.parse("15.75±2.24", "here").scaled(1e4)
    assert scaled.mean == pytest.approx(15.75e-4) and scaled.std == pytest.approx(2.24e-4)
    assert scaled.rounding == pytest.approx(0.005e-4)
    with pytest.raises(ConfigError, match="Bad published value 'about 0.3' at here"):
        Published.parse("about 0.3", "here")


def test_the_tolerance_is_a_welch_interval_widened_by_the_rounding():
    # hand-computed: published 0.30 ± 0.04 over 3 seeds, ours 0.35 ± 0.02 over 3 seeds
    # v_pub = 0.0016/3, v_our = 0.0004/3, se = sqrt(0.002/3) = 0.0258199
    # df = (0.002/3)^2 / ((0.0016/3)^2/2 + (0.0004/3)^2/2) = 4.4444e-7 / 1.5111e-7 = 2.94118
    # t_0.975(2.94118) = 3.2188 (between the tables' 4.303 at 2 df and 3.182 at 3; linear in 1/df: 3.227)
    tol = tolerance(Published(0.30, 0.04, 0.005), 3, Stat(0.35, 0.02, 3))
    assert tol == pytest.approx(3.2188 * 0.0258199 + 0.005, abs=1e-5)
    # no published spread: it borrows ours, with 3 + 3 - 2 = 4 df; t_0.975(4) = 2.7764
    tol = tolerance(Published(0.30, None, 0.005), 3, Stat(0.35, 0.02, 3))
    assert tol == pytest.approx(2.7764 * 0.02 * math.sqrt(2 / 3) + 0.005, abs=1e-5)
    # a single seed of ours borrows the published spread: 3 + 1 - 2 = 2 df, t = 4.3027
    tol = tolerance(Published(0.30, 0.04, 0.005), 3, Stat(0.31, float("nan"), 1))
    assert tol == pytest.approx(4.3027 * math.sqrt(0.0016 / 3 + 0.0016) + 0.005, abs=1e-4)
    # neither side has a spread: the rounding alone
    assert tolerance(Published(0.30, None, 0.005), 3, Stat(0.30, float("nan"), 1)) == 0.005


def test_a_ratio_carries_both_spreads():
    mean, std = ratio(Stat(2.0, 0.2, 3), Stat(10.0, 1.0, 3))
    assert mean == pytest.approx(0.2) and std == pytest.approx(0.2 * math.hypot(0.1, 0.1))
    assert ratio(Published(1.0, None, 0.0), Published(4.0, None, 0.0)) == (0.25, None)


# --------------------------------------------------------------------------------- the table files
def test_every_shipped_table_loads_and_names_a_shipped_recipe():
    tables = shipped_tables()
    names = {t.name for t in tables}
    assert {"lotus-t1-resnet18-cifar10", "lotus-t3-imagenet-vit", "unlearnkit-digits"} <= names
    assert {"unlearnkit-cpu-cifar10-clean", "unlearnkit-cpu-cifar10-paper"} <= names
    for t in tables:
        assert (ROOT / "recipes" / f"{t.spec.recipe}.toml").is_file(), t.name
        assert t.path.stem == t.name


def spec_rows(section: str) -> dict[str, dict[str, str]]:
    """The markdown table under the line ``section`` of the spec: label -> column -> text."""
    lines = SPEC.read_text().splitlines()
    start = lines.index(section) + 1
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    out = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[cells[0]] = dict(zip(header[1:], cells[1:]))
    return out


MAIN = {  # our table -> the spec's heading of its main-results block
    "lotus-t1-resnet18-cifar10": "ResNet18 – CIFAR-10",
    "lotus-t1-resnet18-cifar100": "ResNet18 – CIFAR-100",
    "lotus-t1-resnet18-mufac": "ResNet18 – MUFAC",
    "lotus-t1-resnet18-tinyimagenet": "ResNet18 – Tiny-ImageNet (added after rebuttal; includes SalUn)",
    "lotus-t1-vit-cifar10": "ViT – CIFAR-10",
    "lotus-t1-vit-cifar100": "ViT – CIFAR-100",
    "lotus-t1-vit-mufac": "ViT – MUFAC",
}
COLUMN = {"avg_gap": "Avg Gap", "time": "Time", "jsd": "JSD", "rf_jsd": "RF-JSD"}


@pytest.mark.skipif(not SPEC.is_file(), reason="the paper's numbers (../shared/spec) are not beside this checkout")
def test_every_transcribed_number_matches_the_spec():
    text = SPEC.read_text()
    flat = re.sub(r"\s+", " ", text).replace("/ ", "/")
    checked = 0
    for t in shipped_tables():
        if not t.name.startswith("lotus-"):
            continue
        main = spec_rows(MAIN[t.name]) if t.name in MAIN else {}
        for label, row in t.spec.rows.items():
            for metric, value in row.values.items():
                if label in main and metric in COLUMN:
                    assert main[label][COLUMN[metric]].replace(" ", "") == value, (t.name, label, metric)
                else:  # accuracies, the 50 % / ImageNet / class tables: the number stands in the spec as written
                    assert value in flat.replace(" ", ""), (t.name, label, metric, value)
                checked += 1
    # every published row of the main tables is transcribed
    for name, heading in MAIN.items():
        assert set(spec_rows(heading)) <= set(find_table(name).spec.rows), name
    assert checked > 500


def test_a_malformed_table_is_one_line(tmp_path, cli):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (TABLES / "unlearnkit-digits.toml").read_text().replace('acc_test = "0.956±0.008"', 'acc_tset = "0.9"')
    )
    code, _, err = cli("reproduce", str(bad))
    assert code == 2 and "unknown metric 'acc_tset'. Valid: acc_forget" in err and len(err.strip().splitlines()) == 1
    bad.write_text("name = [")
    code, _, err = cli("reproduce", str(bad))
    assert code == 2 and "is not valid TOML" in err
    code, _, err = cli("reproduce", "no-such-table")
    assert code == 2 and "unlearnkit-digits" in err
    with pytest.raises(ConfigError, match="exactly one of method or not_run"):
        bad.write_text((TABLES / "unlearnkit-digits.toml").read_text().replace('method = "lotus"', ""))
        load_table(bad)


def test_reproduce_list_shows_the_paper_tables_and_ours_with_their_cost(cli):
    code, out, _ = cli("reproduce", "list")
    assert code == 0
    assert "lotus-t1-resnet18-cifar10" in out and "unlearnkit-cpu-cifar10-clean" in out
    assert re.search(r"lotus-t1-resnet18-cifar10 .*0\.72 h on RTX 4080", out)


def test_reproduce_list_takes_the_format_it_offers(cli):
    """`--format json` printed the rich table; every format now carries the same rows."""
    code, out, _ = cli("reproduce", "list", "--format", "json")
    rows = {r["table"]: r for r in json.loads(out)}
    t1 = rows["lotus-t1-resnet18-cifar10"]
    assert code == 0 and round(t1["cost_hours"], 2) == 0.72 and t1["measured_on"] == "RTX 4080"
    assert t1["here_hours"] is None  # a fresh store has measured nothing
    code, out, _ = cli("reproduce", "list", "--format", "csv")
    lines = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["table"] for r in lines} == set(rows)
    code, out, _ = cli("reproduce", "list", "--format", "markdown")
    assert code == 0 and "| lotus-t1-resnet18-cifar10 | cifar10 / resnet18" in out and "0.72 h on RTX 4080" in out
    code, _, err = cli("reproduce", "list", "--format", "xml")
    assert code == 2 and "Unknown format 'xml'" in err


# ------------------------------------------------------------------------------ a table, end to end
def test_the_digits_table_holds_and_a_wrong_expectation_fails_naming_its_cell(cli, tmp_path):
    code, out, err = cli("reproduce", "unlearnkit-digits", "--format", "json")
    assert code == 0, out + err
    doc = json.loads(out[out.index("{") :])
    assert doc["holds"] and doc["counts"]["outside"] == 0 and doc["counts"]["holds"] >= 30
    assert {c["method"] for c in doc["cells"]} == {"original", "retrain", "lotus", "finetune", "neggrad_plus"}
    assert {c["n"] for c in doc["cells"] if c["verdict"] != "not run"} == {2}
    # judged on the seeds asked for, not every seed the store holds (it pooled both before)
    code, out, err = cli("reproduce", "unlearnkit-digits", "--from-store", "--seeds", "1", "--format", "json")
    one = json.loads(out[out.index("{") :])
    assert {c["n"] for c in one["cells"] if c["verdict"] != "not run"} == {1}, out + err
    # the same table with one impossible number: judged from the store (nothing reruns), exit 1, the cell named
    wrong = tmp_path / "wrong.toml"
    text = (TABLES / "unlearnkit-digits.toml").read_text()
    wrong.write_text(text.replace('acc_test = "0.956±0.008"', 'acc_test = "0.500"'))
    code, out, _ = cli("reproduce", str(wrong), "--from-store")
    assert code == 1
    assert "outside: LoTUS / acc_test" in out and "34 of 35 run cells hold, 1 outside" in out
    # the report is kept in the store, with the table's hash
    from unlearnkit.store.mlflow_store import Store

    runs = Store(None, "unlearnkit").search({"run_type": "reproduction"})
    assert len(runs) == 3 and {r.tag("reproduction_table") for r in runs} == {"unlearnkit-digits"}  # one from-store
    assert {r.tag("table_hash") for r in runs} == {find_table("unlearnkit-digits").sha256, load_table(wrong).sha256}


def test_dry_run_lists_the_cell_and_what_the_store_holds(cli):
    code, out, _ = cli("reproduce", "unlearnkit-digits", "--dry-run")
    assert code == 0
    assert "cell digits/cnn/0.1: original, retrain, lotus, neggrad_plus, finetune × seeds 1, 2" in out
    # the count the report's verdicts are out of ("34 of 35 run cells hold"): the retrain row's runtime is
    # the ratios' denominator, never judged itself
    assert "36 published cells, 35 of them judged (a runtime is judged as its ratio to the retrain row's)." in out
    assert "10 runs to do, 0 in the store" in out


# ------------------------------------------------------------------------------------ from a wheel
def test_the_wheel_ships_the_recipes_and_tables(tmp_path):
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("unlearnkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "unlearnkit_recipes/paper-resnet18-cifar10.toml" in names
    assert "unlearnkit_recipes/tables/lotus-t1-resnet18-cifar10.toml" in names
    assert "unlearnkit_recipes/reproduce-digits.toml" in names


def test_sweep_finds_a_shipped_recipe_by_name_anywhere(cli, tmp_path):
    code, out, _ = cli("sweep", "reproduce-digits", "--dry-run")  # run from tmp_path: no recipes/ folder here
    assert code == 0 and "Sweep 'reproduce-digits': 1 cell." in out
    code, _, err = cli("sweep", "no-such-recipe")
    assert code == 2 and "Shipped recipes (run by name):" in err and "paper-resnet18-cifar10" in err


def test_the_evaluation_draws_join_the_published_side_with_their_own_degrees_of_freedom():
    # hand-computed: v_draw = 0.03^2 = 0.0009 (2 df), v_pub = 0.0016/3 (2 df), v_our = 0.0004/3 (2 df)
    # total 0.00156667; df = total^2 / ((0.0009^2 + (0.0016/3)^2 + (0.0004/3)^2) / 2) = 4.4137
    # t_0.975(4.41) = 2.680 (between 2.776 at 4 df and 2.571 at 5, linear in 1/df)
    tol = tolerance(Published(0.30, 0.04, 0.005), 3, Stat(0.35, 0.02, 3), Stat(0.35, 0.03, 3))
    assert tol == pytest.approx(2.680 * math.sqrt(0.00156667) + 0.005, abs=5e-4)
    # draws alone (no spread published or ours): t with n_draws - 1 = 2 df
    tol = tolerance(Published(0.30, None, 0.005), 3, Stat(0.35, float("nan"), 1), Stat(0.35, 0.03, 3))
    assert tol == pytest.approx(4.3027 * 0.03 + 0.005, abs=1e-4)


DIGITS = ["--model", "cnn", "--train-recipe", "quick", "--epochs", "4", "--subset", "20", "--seeds", "1"]


def test_an_eval_draw_re_evaluates_the_stored_models_and_moves_the_paper_protocols_numbers(cli):
    code, out, err = cli("run", "-m", "finetune", *DIGITS, "--protocol", "paper", "--json")
    assert code == 0, err
    first = {r["method"]: r for r in json.loads(out[out.index("[") :])}
    code, out, err = cli("run", "-m", "finetune", *DIGITS, "--protocol", "paper", "--eval-draw", "1", "--json")
    assert code == 0, err
    second = {r["method"]: r for r in json.loads(out[out.index("[") :])}
    assert "finetune (seed 1): unlearned model reused from run" in err + out  # not run again
    assert second["finetune"]["run_id"] != first["finetune"]["run_id"]
    # the same weights, other crops of D_f and D_r: the augmented-split numbers move
    moved = [k for k in ("jsd", "rf_jsd", "mia") if first["finetune"]["metrics"][k] != second["finetune"]["metrics"][k]]
    assert moved, (first["finetune"]["metrics"], second["finetune"]["metrics"])
    assert first["finetune"]["metrics"]["acc_test"] == second["finetune"]["metrics"]["acc_test"]  # never augmented
    code, _, err = cli("run", "-m", "finetune", *DIGITS, "--eval-draw", "1")
    assert code == 2 and "has nothing to draw under the 'clean' protocol" in err


def test_reproduce_with_eval_draws_shows_and_uses_their_spread(cli, tmp_path):
    paper = tmp_path / "paper-digits.toml"
    paper.write_text(
        (TABLES / "unlearnkit-digits.toml").read_text().replace('protocol = "clean"', 'protocol = "paper"')
    )
    code, out, err = cli("reproduce", str(paper), "--eval-draws", "3", "--seeds", "1", "--format", "json")
    assert code in (0, 1), err
    doc = json.loads(out[out.index("{") :])
    judged = [c for c in doc["cells"] if c["verdict"] != "not run" and c["metric"] != "time_ratio"]
    assert judged and all(c["eval_draws"] == 3 for c in judged)
    assert any(c["eval_draw_std"] for c in judged)  # the crops move something
    code, _, err = cli("reproduce", "unlearnkit-digits", "--eval-draws", "2")
    assert code == 2 and "needs the paper protocol" in err


def test_reproduce_takes_the_sweeps_ray_flags_and_refuses_them_without_ray(cli):
    """The same four flags as ``sweep`` (one declaration, one check): a Ray flag without Ray is one line."""
    for argv, expected in (
        (["--cpus-per-run", "2"], "--cpus-per-run only apply to --executor ray."),
        (["--ray-address", "auto", "--gpus-per-run", "0.5"], "--ray-address, --gpus-per-run only apply to --executor"),
        (["--executor", "rya"], "Unknown executor 'rya'. Did you mean 'ray'?"),
    ):
        code, _, err = cli("reproduce", "unlearnkit-digits", *argv)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    code, out, _ = cli("reproduce", "--help")
    assert code == 0 and "--gpus-per-run" in out and "--cpus-per-run" in out
