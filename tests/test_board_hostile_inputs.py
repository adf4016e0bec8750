"""The leaderboard, its files and figures, and ``uk.unlearn`` given what a shared store (or a notebook)
may hold: names that are formulas, markup or line breaks, metric values at the edge of a float, figure
paths that name no image file, and arguments of the wrong kind. Each is refused in one line or shown as
written; the numbers of the valid rows beside them never change."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
import torch
from torch import nn

import unlearnkit as uk
from tests.board_runs import run_tags
from unlearnkit.board import tables
from unlearnkit.board.leaderboard import Board, MetricInfo, build_boards
from unlearnkit.errors import ConfigError
from unlearnkit.store.mlflow_store import RunRecord, Store, tag

GAP = ("acc_forget", "acc_retain", "acc_test", "mia")
INFO = {m: MetricInfo("closer_to_retrain", in_avg_gap=True) for m in GAP} | {
    "time_s": MetricInfo("lower", cost_axis=True)
}
VALID = {"original": 0.9, "retrain": 0.5, "ga": 0.55}  # acc_forget of the rows every board here has


def metrics_of(forget: float, seed: int) -> dict[str, float]:
    return {"acc_forget": forget + seed / 100, "acc_retain": 0.9, "acc_test": 0.8, "mia": 0.6, "time_s": 10.0 + seed}


def records(extra: dict[str, dict[str, float]] | None = None) -> list[RunRecord]:
    """Two seeds of the valid rows, plus ``extra``: method -> metrics over both seeds."""
    out = []
    for method, forget in VALID.items():
        for seed in (1, 2):
            out.append(
                RunRecord(f"{method}{seed}", "FINISHED", seed, run_tags(method, seed), {}, metrics_of(forget, seed))
            )
    for method, metrics in (extra or {}).items():
        for seed in (1, 2):
            out.append(RunRecord(f"x{method[:8]}{seed}", "FINISHED", seed, run_tags(method, seed), {}, dict(metrics)))
    return out


def fill_store(methods: list[str], **metrics: float) -> None:
    """A real store holding the valid rows and ``methods`` (whose metrics ``metrics`` override)."""
    store = Store()
    store.check()
    for method in [*VALID, *methods]:
        for seed in (1, 2):
            run = store.start_run(method[:200], run_tags(method, seed), {})
            store.log_metrics(
                run, {**metrics_of(VALID.get(method, 0.6), seed), **(metrics if method in methods else {})}
            )
            store.finish(run)


def one_line_error(code: int, err: str) -> str:
    """The one red line a refused command prints (asserting it is one, with no traceback)."""
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def valid_numbers(board: Board) -> dict[str, tuple[float, float, float]]:
    return {
        r.method: (r.metrics["acc_forget"].mean, r.metrics["acc_forget"].std, r.avg_gap)
        for r in board.rows
        if r.method in VALID
    }


# ---------------------------------------------------------------------------------- metric values
HOSTILE_VALUES = {
    "infinite": {"acc_forget": math.inf, "acc_retain": -math.inf, "acc_test": 0.8, "mia": 0.6, "time_s": math.inf},
    "huge": {"acc_forget": 1.7e308, "acc_retain": 0.9, "acc_test": 0.8, "mia": 1.7e308, "time_s": 1.7e308},
    "opposite": {"acc_forget": -1.7e308, "acc_retain": 0.9, "acc_test": 0.8, "mia": 0.6, "time_s": 10.0},
}


def strict_json(text: str) -> object:
    """JSON as a strict reader takes it: ``NaN`` and ``Infinity`` are no JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


def test_a_board_with_infinite_or_huge_values_is_built_and_the_valid_rows_keep_their_numbers():
    """Two runs at 1e308 overflowed the mean (OverflowError) and an inf reached statistics.stdev
    (AttributeError): one such run left the whole store without a leaderboard."""
    (board,) = build_boards(records(HOSTILE_VALUES), INFO)
    (clean,) = build_boards(records(), INFO)
    assert valid_numbers(board) == valid_numbers(clean)
    rows = {r.method: r for r in board.rows}
    assert rows["infinite"].metrics["acc_forget"].n == 0  # ±inf is no measurement: missing, never best
    assert rows["huge"].metrics["acc_forget"].mean == pytest.approx(1.7e308)
    assert math.isinf(rows["huge"].avg_gap) or rows["huge"].avg_gap > 1e307
    head, cells = tables.board_cells(board, INFO, wide=False)
    shown = {row[0][0]: row for row in cells}
    assert shown["infinite"][2][0] == "—"
    assert all(len(text) < 40 for row in cells for text, _ in row)  # not 309 digits that cut the names off
    assert shown["huge"][2][0].startswith("1.7e+308")
    strict_json(tables.to_json([board]))
    tables.to_markdown([board], INFO, ci=True)
    tables.to_csv([board], INFO)


def test_cli_leaderboard_shows_a_store_holding_infinite_values(host, cli):
    """MLflow keeps inf as ±1.8e308: both seeds of such a run overflowed the mean, with a traceback."""
    fill_store(["diverged"], acc_forget=math.inf, mia=-math.inf, time_s=math.inf)
    code, out, err = cli("leaderboard")
    assert code == 0 and "Traceback" not in err, err
    assert " diverged " in out and " ga " in out
    code, out, err = cli("leaderboard", "--format", "json")
    assert code == 0, err
    strict_json(out)


def test_cli_leaderboard_of_a_store_with_reference_models_only_says_they_are_there(host, cli):
    """After `unlearnkit import` the store holds trained references and no result row: "No finished
    runs" read as if the import had done nothing."""
    store = Store()
    store.check()
    for seed in (1, 2):
        store.finish(store.start_run("original", {tag("run_type"): "train", tag("seed"): str(seed)}, {}))
    code, out, err = cli("leaderboard")
    assert code == 0 and "No finished unlearning runs in" in out and "2 trained reference models" in out, out + err


# ------------------------------------------------------------------------------------- names in files
FORMULAS = ['=HYPERLINK("http://x","click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1:A9)", "\tx", "\rx"]


def test_csv_cells_that_start_like_a_formula_are_written_as_text():
    """A method, dataset or reason tag starting with = + - @ (or a tab) ran as a formula in the
    spreadsheet that opened the CSV; numbers (a negative mean) are left as they are."""
    extra = {name: metrics_of(0.6, 1) for name in FORMULAS}
    other = records()  # a second benchmark, on a dataset named like a formula
    for rec in other:
        rec.tags |= {tag("dataset"): "=1+1", tag("benchmark"): "b2", tag("config_hash"): f"b2-{rec.run_id}"}
    recs = records(extra) + other
    for rec in recs:
        if rec.tag("method") == "ga":
            rec.tags[tag("weak_original")] = "true"
            rec.tags[tag("weak_original_reason")] = "-2+3"
    recs.append(
        RunRecord("neg", "FINISHED", 9, run_tags("negative", 1), {}, {**metrics_of(0.6, 1), "acc_forget": -0.5})
    )
    boards = build_boards(recs, INFO)
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(boards, INFO))))
    text = [row[k] for row in rows for k in ("dataset", "method", "weak_original_reason") if row[k]]
    assert not [t for t in text if t.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert {f"'{name}" for name in FORMULAS} <= {row["method"] for row in rows}
    assert "'=1+1" in {row["dataset"] for row in rows}
    assert {row["mean"] for row in rows if row["method"] == "negative" and row["metric"] == "acc_forget"} == {"-0.5"}
    valid = [row for row in rows if row["method"] == "retrain" and row["dataset"] == "tiny"]
    assert {row["metric"]: row["mean"] for row in valid}["acc_forget"] == str(0.5 + 1.5 / 100)


MARKDOWN_NAMES = [
    "a|b",
    "two\nlines",
    "<script>alert(1)</script>",
    "[click](http://evil)",
    "back\\|slash",
    "\x1b[2Jclear",
]


def unescaped_pipes(line: str) -> int:
    """The cell separators of a markdown table row: pipes no backslash escapes."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def test_markdown_keeps_a_hostile_name_inside_its_cell():
    """A | split the row into more cells, a line break ended it, <script> went out as raw HTML and
    [text](url) as a link; an ESC went into the published file as it was."""
    (board,) = build_boards(records({name: metrics_of(0.6, 1) for name in MARKDOWN_NAMES}), INFO)
    markdown = tables.to_markdown([board], INFO)
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(VALID) + len(MARKDOWN_NAMES)  # header, rule, one line per row
    assert {unescaped_pipes(line) for line in table} == {unescaped_pipes(header)}
    assert "<script" not in markdown and "](" not in markdown and "\x1b" not in markdown
    assert "| two lines |" in markdown and "&lt;script>" in markdown
    (clean,) = build_boards(records(), INFO)
    assert valid_lines(markdown) == valid_lines(tables.to_markdown([clean], INFO))


def valid_lines(markdown: str) -> list[str]:
    """The markdown table lines of the valid rows."""
    lines = markdown.replace("**", "").splitlines()  # best marks: the hostile rows compete for them
    return [line for line in lines if line.startswith("| ") and line.split()[1] in VALID]


def test_the_terminal_board_prints_a_name_with_a_line_break_on_its_own_row():
    """A line break in a run's name printed a second line in the table: a made-up row of numbers."""
    from rich.console import Console

    from unlearnkit.cli.leaderboard import render

    fake = "sneaky\nfake             2 0.50±0.00"
    (board,) = build_boards(records({fake: metrics_of(0.6, 1)}), INFO)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(board, INFO, None, wide=False))
    lines = console.export_text().splitlines()
    assert not [line for line in lines if line.strip().startswith("fake")]
    assert any("sneaky\\nfake" in line for line in lines)


# ------------------------------------------------------------------------------------------ figures
def test_store_text_reaches_a_figure_as_written(tmp_path):
    """``$...$`` in a method's name started matplotlib's math mode: an unknown symbol failed the
    whole figure (ParseFatalException), and an ESC went to the terminal in a missing-glyph warning."""
    import matplotlib.text

    from unlearnkit.board.plots import board_figure, plot_boards

    names = ["$\\foo{$", "price $5", "\x1b[2Jclear"]
    (board,) = build_boards(records({name: metrics_of(0.6, 1) for name in names}), INFO)
    plot_boards([board], tmp_path / "board.png")
    assert (tmp_path / "board.png").stat().st_size > 0
    texts = [t.get_text() for t in board_figure([board]).findobj(matplotlib.text.Text)]
    assert not [t for t in texts if "\x1b" in t]
    assert "price \\$5" in texts


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("board", "has no extension. Valid extensions: "),
        ("board.xyz", "has the extension '.xyz'. Valid extensions: "),
        ("", "is a folder: name a file in it, e.g. board.png."),
        ("folder", "is a folder: name a file in it, e.g. board.png."),
    ],
)
def test_cli_leaderboard_refuses_a_plot_path_that_names_no_image_file(cli, tmp_path, given, says):
    """Given no extension matplotlib added .png, so the figure was not where the message said
    (``--plot ''`` wrote a hidden .png); an unknown one was a matplotlib traceback."""
    (tmp_path / "folder").mkdir()
    code, out, err = cli("leaderboard", "--plot", given)
    line = one_line_error(code, err)
    assert line.startswith("Error: Figure path '") and says in line
    assert "png" in line and not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*png"))


def test_cli_leaderboard_says_when_a_figure_cannot_be_written(cli, tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    code, _, err = cli("leaderboard", "--plot", str(tmp_path / "file.txt" / "board.png"))
    line = one_line_error(code, err)
    assert line.startswith(f"Error: Cannot write the figure to '{tmp_path}") and line.endswith(
        "file.txt' is a file, not a folder."
    )


def test_cli_leaderboard_says_it_replaced_an_earlier_figure(cli, tmp_path):
    code, _, err = cli("leaderboard", "--plot", "board.png")
    assert code == 0 and err.strip() == "Figure written to board.png", err
    code, _, err = cli("leaderboard", "--plot", "board.png")
    assert code == 0 and err.strip() == "Figure written to board.png (it replaced the file there)", err


def test_an_interrupted_figure_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    """The figure was written in place: Ctrl-C midway left half a PNG where the last good one was."""
    from matplotlib.figure import Figure

    from unlearnkit.board.plots import plot_boards

    (board,) = build_boards(records(), INFO)
    path = plot_boards([board], tmp_path / "board.png")
    before = path.read_bytes()

    def torn(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(KeyboardInterrupt):
        plot_boards([board], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["board.png"]  # no partial file left beside it


# ------------------------------------------------------------------------------------ command options
@pytest.mark.parametrize("option", ["--sort", "--columns"])
def test_cli_leaderboard_echoes_a_long_unknown_key_shortened(cli, option):
    """A pasted 3000-character value was repeated whole in the error line."""
    code, _, err = cli("leaderboard", option, "acc_forgt" + "x" * 3000)
    line = one_line_error(code, err)
    assert "…(3009 chars)" in line and len(line) < 1200


def test_cli_leaderboard_suggests_the_sort_key_meant(cli):
    code, _, err = cli("leaderboard", "--sort", "acc_forgt")
    assert "Did you mean 'acc_forget'?" in one_line_error(code, err)


# ----------------------------------------------------------------------------------- published tables
TABLE = """name = "{name}"
title = "a table from outside"
source = "nowhere"
recipe = "reproduce-digits"
protocol = "clean"
dataset = "digits"
model = "cnn"
scenario = "0.1"
seeds = 2
measured_on = "x"

[rows."{label}"]
method = "lotus"
acc_forget = "0.10"
"""


@pytest.mark.parametrize("name", ["../../escape", "a/b", "", ".hidden", "x" * 300])
def test_a_table_whose_name_is_a_path_is_refused_when_it_is_read(tmp_path, name):
    """The name becomes the artifact NAME.toml: MLflow refused ``..`` with its own traceback, and only
    when the verdicts were logged, after every cell had run."""
    from unlearnkit.board.published import load_table

    path = tmp_path / "t.toml"
    path.write_text(TABLE.format(name=name, label="LoTUS"))
    with pytest.raises(ConfigError, match=r"^Bad table '.*': name: .*is not a plain name \(letters, digits"):
        load_table(path)


def test_a_reproduction_report_writes_a_hostile_row_label_as_text(tmp_path):
    from unlearnkit.board.published import compare, load_table, to_csv, to_markdown

    path = tmp_path / "t.toml"
    path.write_text(TABLE.format(name="hostile", label='=HYPERLINK(\\"http://x\\")|<b>'))
    rep = compare(load_table(path), None)
    (row,) = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert row["row"].startswith("'=HYPERLINK")
    (line,) = [line for line in to_markdown(rep).splitlines() if "HYPERLINK" in line]
    assert unescaped_pipes(line) == 7 and "<b>" not in line


# ------------------------------------------------------------------------------------------ uk.unlearn
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


IMAGES = torch.randint(0, 255, (9, 3, 4, 4), dtype=torch.uint8)
LABELS = torch.arange(9) % 3


class Pairs(torch.utils.data.Dataset):
    """A Dataset whose labels are one-element tensors, as many loaders return them."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return IMAGES[i], LABELS[i : i + 1]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"seed": "abc"}, r"^Bad seed 'abc': expected a whole number"),
        ({"seed": 1.5}, r"^Bad seed '1\.5': expected a whole number"),
        ({"num_classes": -3}, r"^Bad num_classes '-3': expected a whole number of classes, 1 or more"),
        ({"num_classes": 2.5}, r"^Bad num_classes '2\.5'"),
        ({"device": "gpu"}, r"^Unknown device 'gpu'\. Valid devices: cpu, cuda, cuda:N, mps"),
        ({"device": f"cuda:{torch.cuda.device_count()}"}, r"^Device 'cuda:\d+' requested but this machine has \d+"),
        ({"options": [("lr", 1)]}, r"^options must be a mapping of option names to values, not a list"),
        ({"forget": "abc"}, r"^The forget split must be \(images, labels\) or a Dataset .*, not a str"),
        ({"forget": {"x": IMAGES}}, r"^The forget split must be \(images, labels\) or a Dataset .*, not a dict"),
        ({"forget": [IMAGES[:3], ["a", "b", "c"]]}, r"^The forget split must be \(images, labels\) or a Dataset"),
        (
            {"forget": (IMAGES[:3], torch.tensor([0.7, 1.0, 2.0]))},
            r"^The forget split has the label 0\.7: labels must be whole class ids\.$",
        ),
        (
            {"forget": (torch.full((3, 3, 4, 4), math.nan), LABELS[:3])},
            r"^The forget split has NaN or infinite image values",
        ),
        ({"model": nn.Flatten()}, r"^The model has no parameters: there is nothing to unlearn"),
    ],
)
def test_uk_unlearn_refuses_arguments_of_the_wrong_kind_in_one_line(given, says):
    """Each was a torch or Python traceback (ValueError, RuntimeError, StopIteration, KeyError), the label
    0.7 ran as class 0, and NaN images gave metrics computed from NaN outputs."""
    args = {"forget": (IMAGES[:3], LABELS[:3]), "retain": (IMAGES[3:], LABELS[3:]), "method": "finetune", **given}
    model = args.pop("model", tiny_model())
    with pytest.raises(ConfigError, match=says):
        uk.unlearn(model, **args)


def test_uk_unlearn_takes_one_metric_name_as_a_string_and_a_dataset_with_tensor_labels():
    """``metrics="acc_forget"`` was read letter by letter: "Unknown metric 'a'"."""
    result = uk.unlearn(
        tiny_model(),
        forget=Pairs(),
        retain=(IMAGES[3:], LABELS[3:]),
        method="finetune",
        metrics="acc_forget",
        options={"epochs": 1},
    )
    assert set(result.metrics) == {"acc_forget"}


# ------------------------------------------------------------------- the other commands that print store text
def test_sweep_refuses_a_plot_path_before_anything_runs(cli, tmp_path):
    """`sweep --plot board` was checked when the board was published: after every cell had run."""
    from pathlib import Path

    recipe = Path(__file__).parent / "fixtures" / "recipes" / "tiny.toml"
    plugins = Path(__file__).parent / "fixtures" / "plugins"
    code, out, err = cli("sweep", str(recipe), "--plot", "board", "--plugins-dir", str(plugins))
    assert one_line_error(code, err).startswith("Error: Figure path 'board' has no extension.")
    assert not (tmp_path / "mlruns").exists() and not list(tmp_path.glob("*.db")), list(tmp_path.iterdir())


def test_show_run_prints_store_text_on_its_own_lines_and_checks_the_plot_first(cli):
    """A tag with a line break printed a second line (a made-up ``seed:``); a bad --plot was refused
    only after the run had been printed."""
    store = Store()
    store.check()
    run = store.start_run("ga", run_tags("ga", 1, failure="boom\n  seed: 3407"), {})
    store.log_metrics(run, metrics_of(0.5, 1))
    store.finish(run)
    code, out, _ = cli("show", "run", run)
    assert code == 0 and "  failure: boom\\n  seed: 3407" in out
    assert [line for line in out.splitlines() if line.strip().startswith("seed:")] == ["  seed: 1"], out
    code, out, err = cli("show", "run", run, "--plot", "series")
    assert one_line_error(code, err).startswith("Error: Figure path 'series' has no extension.") and not out


def test_leaderboard_seeds_keeps_only_those_seeds_audits(cli):
    # the audit columns had been the mean over every audit seed whatever --seeds said
    fill_store([])
    store = Store()
    for seed, auc in ((1, 0.5), (2, 0.9)):
        audit = {"run_type": "audit", "audit": f"a{seed}", "shadows": "4", "mode": "online", "fixed_variance": "false"}
        run = store.start_run("lotus-audit", run_tags("lotus", seed, **audit, config_hash=f"audit-{seed}"), {})
        store.log_metrics(run, {"ulira_auc": auc})
        store.finish(run)
    code, out, err = cli("leaderboard", "--seeds", "1", "--format", "json")
    (board,) = json.loads(out)
    (lotus,) = [r for r in board["rows"] if r["method"] == "lotus"]
    assert code == 0 and lotus["metrics"]["ulira_auc"]["mean"] == 0.5 and lotus["metrics"]["ulira_auc"]["n"] == 1


def test_an_unknown_format_is_shortened_and_the_one_meant_suggested(cli):
    code, _, err = cli("leaderboard", "--format", "mardown")
    assert "Unknown format 'mardown'. Did you mean 'markdown'?" in one_line_error(code, err)
    code, _, err = cli("leaderboard", "--format", "m" * 3000)
    assert "…(3000 chars)" in one_line_error(code, err)


def test_leaderboard_seeds_keeps_only_those_seeds_and_says_when_nothing_matches(cli):
    fill_store([])
    code, out, err = cli("leaderboard", "--seeds", "2", "--format", "json")
    (board,) = json.loads(out)
    assert code == 0 and {tuple(r["seeds"]) for r in board["rows"]} == {(2,)}, out + err
    code, out, _ = cli("leaderboard", "--seeds", "7", "--dataset", "tiny")
    assert code == 0 and "No finished runs in " in out and out.rstrip().endswith("match --dataset tiny, --seeds 7.")
    code, _, err = cli("leaderboard", "--seeds", "x")
    assert one_line_error(code, err).startswith("Error: Bad seed 'x'")


def test_cli_leaderboard_scenario_filter_matches_any_spelling_of_the_stored_key(host, cli):
    """`--scenario 0.20` matched nothing where `run --forget 0.20` stores `instance:0.2`; a text no
    installed scenario parses is still matched as typed."""
    fill_store([])
    for spelling in ("instance:0.2", "0.20", "instance:0.200"):
        code, out, err = cli("leaderboard", "--scenario", spelling, "--format", "csv")
        assert code == 0 and "instance:0.2" in out, (spelling, out + err)
    code, out, _ = cli("leaderboard", "--scenario", "tail:0:5")  # the example package's rule, stored as typed
    assert code == 0 and "No finished runs" in out and "--scenario tail:0:5" in out
