"""Bad values a user (or a shared store) can hand the toolkit: each is one line naming the value and what
is valid, exit 2 from the command, never a traceback; the valid values around them parse as before.

Training recipes (non-finite floats, a schedule that is a list, a file that is not UTF-8), sweep recipes
and published tables that are not UTF-8, ``true`` where a recipe means a number, leaderboard filters that
match nothing by a typo, a store run whose seed is not an integer, and the waits and URLs of
``store repair`` and ``tune``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tests.board_runs import run_tags
from unlearnkit.errors import ConfigError

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"
NOT_UTF8 = b"name = 'p'\n# \xff\xfe\n"  # byte 13 starts no UTF-8 character

RECIPE = """\
name = "tiny-tune"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune"]
seeds = [3407]
epochs = 1
device = "cpu"
save_models = false
"""


def train_recipe(tmp_path: Path, body: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(f"[default]\n{body}\n")
    return str(path)


def one_line_error(code: int, err: str) -> str:
    """The one red line a refused command prints (asserting it is one, with no traceback)."""
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------------------ training recipes
@pytest.mark.parametrize("body", ["lr = inf", "lr = nan", "weight_decay = inf", "label_smoothing = nan"])
def test_a_training_recipe_refuses_non_finite_floats(tmp_path, body):
    from unlearnkit.loops.training import load_train_recipe

    path = train_recipe(tmp_path, body)
    key = body.split(" =")[0]
    with pytest.raises(ConfigError) as err:
        load_train_recipe(path, "resnet")
    assert str(err.value) == f"Bad value for '{key}' in training recipe '{path}': Input should be a finite number."


@pytest.mark.parametrize("body", ["schedule = [1]", "schedule = {a = 1}"])
def test_a_training_recipe_schedule_that_is_not_a_name_gets_the_valid_ones(tmp_path, body):
    from unlearnkit.loops.training import load_train_recipe

    path = train_recipe(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_train_recipe(path, "resnet")
    assert str(err.value) == (
        f"Bad value for 'schedule' in training recipe '{path}': "
        "Input should be 'constant', 'warmup_linear', 'warmup_cosine' or 'cosine'."
    )


def test_a_training_recipe_that_is_not_utf8_or_names_itself_is_one_line(tmp_path):
    from unlearnkit.loops.training import load_train_recipe

    path = tmp_path / "latin.toml"
    path.write_bytes(b"[default]\nlr = 0.1 # \xff\n")
    with pytest.raises(ConfigError) as err:
        load_train_recipe(str(path), "resnet")
    assert str(err.value) == f"Training recipe '{path}' is not UTF-8 text (byte 21): save it as UTF-8 TOML."
    named = train_recipe(tmp_path, 'name = "x"')  # its name is its file's: the key was a TypeError
    with pytest.raises(ConfigError, match=r"^Unknown key 'name' in training recipe .* Valid keys: batch_size, "):
        load_train_recipe(named, "resnet")


def test_valid_training_recipes_parse_as_before(tmp_path):
    from unlearnkit.loops.training import builtin_recipes, load_train_recipe

    recipe = load_train_recipe(train_recipe(tmp_path, 'lr = 1e6\nschedule = "onecycle"\nmomentum = 0'), "resnet")
    assert (recipe.lr, recipe.schedule, recipe.momentum) == (1e6, "warmup_cosine", 0.0)  # the old alias
    assert load_train_recipe(train_recipe(tmp_path, "lr = 0.05"), "resnet").schedule == "constant"  # unset
    for name in builtin_recipes():
        for family in ("resnet", "vit", "cnn"):
            try:
                params = load_train_recipe(name, family).as_params()
            except ConfigError:  # a recipe without that family's table
                continue
            assert all(math.isfinite(v) for v in params.values() if isinstance(v, float))


def test_cli_run_refuses_an_infinite_learning_rate_before_training(tmp_path, cli):
    path = train_recipe(tmp_path, "lr = inf\nepochs = 1")
    code, _, err = cli("run", "--method", "ga", "--dataset", "digits", "--train-recipe", path)
    line = one_line_error(code, err)
    assert line == f"Error: Bad value for 'lr' in training recipe '{path}': Input should be a finite number."


# ----------------------------------------------------------------------------- recipes and tables
def test_a_sweep_recipe_and_a_published_table_that_are_not_utf8_are_one_line(tmp_path):
    from unlearnkit.board.published import load_table
    from unlearnkit.scale.sweep_recipes import parse_recipe

    path = tmp_path / "latin.toml"
    path.write_bytes(NOT_UTF8)
    with pytest.raises(ConfigError) as err:
        parse_recipe(path)
    assert str(err.value) == f"Recipe '{path}' is not UTF-8 text (byte 13): save it as UTF-8 TOML."
    with pytest.raises(ConfigError) as err:
        load_table(path)
    assert str(err.value) == f"Table '{path}' is not UTF-8 text (byte 13): save it as UTF-8 TOML."


@pytest.mark.parametrize("command", [("leaderboard", "--recipe"), ("sweep",), ("reproduce",)])
def test_cli_refuses_a_file_that_is_not_utf8_in_one_line(tmp_path, cli, command):
    path = tmp_path / "latin.toml"
    path.write_bytes(NOT_UTF8)
    code, _, err = cli(*command, str(path))
    line = one_line_error(code, err)
    assert line.startswith("Error: ") and f"'{path}' is not UTF-8 text (byte 13)" in line


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("subset", "a per-class count (e.g. 500) or a fraction in (0, 1]"),
        ("models_per_device", "a whole number of 1 or more, or auto"),
    ],
)
@pytest.mark.parametrize("value", ["true", "false"])
def test_a_recipe_refuses_a_boolean_where_it_means_a_number(tmp_path, key, valid, value):
    """``subset = true`` read as 1 was the full dataset, run without a word."""
    from unlearnkit.scale.sweep_recipes import parse_recipe

    path = tmp_path / "r.toml"
    path.write_text(f"{RECIPE}{key} = {value}\n")
    with pytest.raises(ConfigError) as err:
        parse_recipe(path)
    assert str(err.value) == f"Bad value for '{key}' in recipe '{path}': expected {valid}, not {value}."


def test_a_recipe_keeps_its_numbers_and_words_for_subset_and_models_per_device(tmp_path):
    from unlearnkit.scale.sweep_recipes import parse_recipe

    path = tmp_path / "r.toml"
    for subset, per_device, expected in [
        ("10", "2", (10, 2)),
        ("0.5", '"auto"', (0.5, "auto")),
        ('"200"', '"3"', ("200", "3")),
        ("1", "1", (1, 1)),
    ]:
        path.write_text(f"{RECIPE}subset = {subset}\nmodels_per_device = {per_device}\n")
        recipe = parse_recipe(path)
        assert (recipe.subset, recipe.models_per_device) == expected
        assert [type(v) for v in (recipe.subset, recipe.models_per_device)] == [type(v) for v in expected]
    path.write_text(RECIPE)
    assert (parse_recipe(path).subset, parse_recipe(path).models_per_device) == (None, 1)


# ------------------------------------------------------------------------------------ leaderboard
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--protocol", "nope"), "Error: Unknown protocol 'nope'. Valid protocols: clean, paper."),
        (
            ("--protocol", "paer"),
            "Error: Unknown protocol 'paer'. Did you mean 'paper'? Valid protocols: clean, paper.",
        ),
        (
            ("--access", "retian"),
            "Error: Unknown data access 'retian'. Did you mean 'retain'? "
            "Valid --access values: none, forget, retain, forget+retain.",
        ),
        (("--columns", ","), "Error: --columns ',' names no column. Valid columns: "),
        (("--columns", " , "), "Error: --columns ' , ' names no column. Valid columns: "),
    ],
)
def test_cli_leaderboard_refuses_filters_and_columns_that_name_nothing(cli, args, expected):
    code, out, err = cli("leaderboard", *args)
    assert one_line_error(code, err).startswith(expected)
    assert "No finished runs" not in out


@pytest.mark.parametrize(
    "args", [("--protocol", "clean"), ("--access", "forget+retain"), ("--access", ""), ("--columns", "")]
)
def test_cli_leaderboard_valid_filters_still_find_no_runs_in_an_empty_store(cli, args):
    code, out, err = cli("leaderboard", *args)
    assert code == 0, err
    assert "No finished runs" in out


SEEDS = {"original": ["1", "2"], "retrain": ["1", "2"], "ga": ["1", "2", "abc", "", "9" * 5000]}


def test_the_board_leaves_out_a_run_whose_seed_is_not_an_integer():
    from unlearnkit.board.leaderboard import MetricInfo, build_boards
    from unlearnkit.store.mlflow_store import RunRecord

    info = {"acc_forget": MetricInfo("closer_to_retrain", in_avg_gap=True)}
    pairs = [(method, seed) for method, seeds in SEEDS.items() for seed in seeds]
    records = [
        RunRecord(f"{m}{i}", "FINISHED", i, run_tags(m, s), metrics={"acc_forget": 0.5 + i / 100})
        for i, (m, s) in enumerate(pairs)
    ]
    (board,) = build_boards(records, info)
    assert {r.method: r.seeds for r in board.rows} == {"original": [1, 2], "retrain": [1, 2], "ga": [1, 2]}
    (clean,) = build_boards([r for r in records if r.tag("seed") in ("1", "2")], info)
    assert [(r.method, r.metrics["acc_forget"].mean) for r in board.rows] == [
        (r.method, r.metrics["acc_forget"].mean) for r in clean.rows
    ]


def test_cli_leaderboard_shows_a_store_with_a_run_whose_seed_is_not_an_integer(host, cli):
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    store.check()
    for method, seeds in SEEDS.items():
        for seed in seeds:
            run = store.start_run(method, run_tags(method, seed), {})
            store.log_metrics(run, {"acc_forget": 0.5, "acc_retain": 0.9})
            store.finish(run)
    code, out, err = cli("leaderboard", "--format", "json")
    assert code == 0, err
    (board,) = json.loads(out)
    assert {r["method"]: r["seeds"] for r in board["rows"]} == {"original": [1, 2], "retrain": [1, 2], "ga": [1, 2]}
    code, out, err = cli("leaderboard")
    assert code == 0 and "Traceback" not in err and " ga " in f" {out} "


# ----------------------------------------------------------------------------- store repair, tune
@pytest.mark.parametrize("wait", ["nan", "-1", "inf"])
def test_cli_store_repair_refuses_a_wait_that_is_not_seconds(cli, wait):
    code, out, err = cli("store", "repair", "--wait", wait)
    shown = {"-1": "-1.0"}.get(wait, wait)
    assert one_line_error(code, err) == f"Error: Bad --wait {shown}: expected a finite number of seconds, 0 or more."
    assert out == ""


def test_cli_store_repair_still_takes_a_wait_of_zero(cli):
    code, out, err = cli("store", "repair", "--wait", "0")
    assert code == 0, err
    assert "nothing to repair" in out.lower()


@pytest.fixture
def tune_recipe(tmp_path) -> Path:
    path = tmp_path / "tiny-tune.toml"
    path.write_text(RECIPE)
    return path


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1.0, 0.0])
def test_tune_refuses_a_trial_timeout_that_is_not_seconds(tune_recipe, host, timeout):
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.tuner import Tuner

    with pytest.raises(ConfigError) as err:
        Tuner(tune_recipe, host.registries, Store(), methods=["finetune"], trials=1, trial_timeout=timeout)
    assert str(err.value) == f"Bad --trial-timeout {timeout}: expected a finite number of seconds > 0."


@pytest.mark.parametrize("url", ["foo://x", "://x", "foo://me:secret@host/db"])
def test_tune_refuses_a_study_storage_url_sqlalchemy_cannot_read(url):
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import study_storage

    with pytest.raises(ConfigError) as err:
        study_storage(Store("http://127.0.0.1:9"), url)  # nothing is contacted
    message = str(err.value)
    assert message.startswith(f"Bad --study-storage '{url.replace(':secret', ':***')}': not a database URL")
    assert "sqlite:///optuna.db" in message and "journal file path" in message and "secret" not in message


def test_cli_tune_estimate_refuses_an_unknown_study_storage_in_one_line(tune_recipe, cli):
    code, _, err = cli(
        "tune", str(tune_recipe), "--method", "finetune", "--tune-seeds", "1", "--study-storage", "foo://x",
        "--estimate", "--plugins-dir", str(PLUGINS),
    )  # fmt: skip
    assert one_line_error(code, err).startswith("Error: Bad --study-storage 'foo://x': not a database URL")


def test_tune_refuses_a_study_storage_it_cannot_open_in_one_line(tmp_path):
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune.studies import study_storage

    url = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    with pytest.raises(
        ConfigError, match=r"^Cannot open --study-storage 'sqlite:///.*': unable to open database file\.$"
    ):
        study_storage(Store("http://127.0.0.1:9"), url)


PUBLISHED = """name = "hostile"
title = "a table from outside"
source = "nowhere"
recipe = "reproduce-digits"
protocol = "clean"
dataset = "digits"
model = "cnn"
scenario = "0.1"
seeds = 2
measured_on = "x"
{extra}
[rows."LoTUS"]
method = "lotus"
acc_forget = "0.10"
"""


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("[scale]\nacc_forget = 0", "scale.acc_forget: Input should be greater than 0"),  # divided by
        ("[scale]\nacc_forget = -1", "scale.acc_forget: Input should be greater than 0"),  # flips the verdict
        ("[scale]\nacc_forget = nan", "scale.acc_forget: Input should be a finite number"),
        ("[min_tolerance]\nmia = inf", "min_tolerance.mia: Input should be a finite number"),
        ("[min_tolerance]\nmia = -0.1", "min_tolerance.mia: Input should be greater than or equal to 0"),
        ("runtime_factor = inf", "runtime_factor: Input should be a finite number"),
    ],
)
def test_a_published_tables_numbers_are_checked_before_anything_runs(tmp_path, extra, says):
    """A table file is outside input: a scale of 0 raised ZeroDivisionError even under --dry-run, and a
    nan one let every run be computed before the report crashed on it."""
    from unlearnkit.board.published import load_table

    head, _, rows = PUBLISHED.partition("{extra}")
    top, table = ("", extra) if extra.startswith("[") else (extra, "")  # a table goes after the rows
    path = tmp_path / "hostile.toml"
    path.write_text(f"{head}{top}\n{rows}\n{table}\n")
    with pytest.raises(ConfigError, match=rf"^Bad table '.*hostile.toml': {re.escape(says)}"):
        load_table(path)


def test_cli_tune_refuses_a_write_target_that_is_a_folder_before_any_trial(tune_recipe, cli, tmp_path):
    """Before, the whole tuning ran and only then IsADirectoryError's traceback came."""
    code, out, err = cli(
        "tune", str(tune_recipe), "--method", "finetune", "--tune-seeds", "1", "--trials", "1",
        "--write", str(tmp_path), "--plugins-dir", str(PLUGINS),
    )  # fmt: skip
    assert one_line_error(code, err).startswith(f"Error: Bad --write {tmp_path}: it is a folder")
    assert "trials" not in out  # refused before the studies ran


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:s3cret@host:5432/db", "postgresql://me:***@host:5432/db"),
        ("https://me:p@ss@example.org/refs.tar", "https://me:***@example.org/refs.tar"),  # an @ in the password
        ("mysql://me@host/db", "mysql://me@host/db"),  # a user without a password: nothing to hide
        ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),  # an @ in the path is no credential
        ("://x", "://x"),
    ],
)
def test_one_redaction_hides_a_urls_password_in_every_message(url, shown):
    from unlearnkit.errors import redacted

    assert redacted(url) == shown


@pytest.mark.parametrize(
    ("count", "noun", "plural", "said"),
    [
        (1, "cell", None, "1 cell"),
        (0, "cell", None, "0 cells"),
        (2, "reference model", None, "2 reference models"),
        (1200, "run", None, "1,200 runs"),
        (1, "model's", "models'", "1 model's"),
        (5, "model's", "models'", "5 models'"),
    ],
)
def test_a_count_is_said_in_the_singular_only_for_one(count, noun, plural, said):
    from unlearnkit.errors import counted

    assert counted(count, noun, plural) == said


def test_a_rate_no_step_on_the_weights_can_take_fails_its_row_in_one_line(cli):
    """uk.make_optimizer is what third-party methods (the example's grad_ascent_plus) build on: an lr
    past float32's largest value stopped the whole command with torch's "cannot be converted to type
    float without overflow", so the methods after it never ran."""
    args = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", str(PLUGINS), "--seeds", "1"]
    code, out, err = cli(*args, "--epochs", "2", "-m", "grad_ascent_plus,finetune", "-o", "grad_ascent_plus.lr=1e39")
    assert code == 1 and "Traceback" not in err, err
    assert (
        "grad_ascent_plus (seed 1) failed: Optimizer sgd with lr 1e+39: a step on float32 weights cannot take it "
        "(past 3.4e+38); lower lr." in err
    ), err
    assert "finetune (seed 1): done" in err


def test_a_training_recipe_whose_rate_no_step_can_take_is_one_line(cli, tmp_path):
    recipe = tmp_path / "huge.toml"
    recipe.write_text('description = "huge"\n[default]\noptimizer = "adam"\nlr = 1e38\nepochs = 1\nbatch_size = 16\n')
    args = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", str(PLUGINS), "--seeds", "1"]
    code, _, err = cli(*args, "--train-recipe", str(recipe), "-m", "finetune")
    assert "Traceback" not in err and code != 0, err
    assert "Optimizer adam with lr 1e+38: a step on float32 weights cannot take it (past 3.4e+38 for 10 lr" in err


def test_a_recipe_giving_true_or_false_for_a_number_is_refused(cli, tmp_path):
    """TOML's booleans reached pydantic, which read ``alpha = false`` as 0.0 and ``epochs = true`` as
    1: sfron ran as plain fine-tuning. A flag option still takes them."""
    recipe = tmp_path / "flags.toml"
    recipe.write_text(RECIPE + "\n[options.finetune]\nepochs = true\naugment = false\n")
    code, _, err = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS))
    line = one_line_error(code, err)
    assert "option 'epochs' of method 'finetune': Input should not be true or false: this option is no flag" in line
    recipe.write_text(RECIPE + "\n[options.finetune]\naugment = false\n")
    code, out, err = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0 and "runs to do" in out + err, out + err


def test_sweep_refuses_a_tune_table_naming_no_method(cli, tmp_path):
    """`[tune.sdd]` is read by `unlearnkit tune` alone, but the recipe is the same file: `sweep` said nothing."""
    recipe = tmp_path / "typo.toml"
    recipe.write_text(RECIPE + '\n[tune.sdd]\nalpha = { kind = "log_uniform", low = 1, high = 10 }\n')
    code, _, err = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS))
    assert one_line_error(code, err).startswith(
        "Error: Recipe 'tiny-tune' has a [tune.sdd] table: Unknown method 'sdd'. Did you mean 'ssd'?"
    )
