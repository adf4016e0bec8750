"""Text that comes from data (grid labels, a plugin's docstring, store tags) prints as written.

rich reads ``[word...]`` as markup and drops it: a grid point's label ``lotus [lotus.alpha=2]`` lost
its point in the leaderboard, in ``--format json`` and in ``--estimate``, so two grid points showed
as two identical ``lotus`` rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field
from unlearnkit_example.grad_ascent import GradAscentPlus, GradAscentPlusOptions

from tests.invoke import invoke
from unlearnkit.api.hookspecs import hookimpl

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"
GRID = """name = "grid-labels"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.1"]
methods = ["lotus"]
seeds = [1]
epochs = 2
device = "cpu"

[grid.lotus]
alpha = [2, 8]
"""
LABELS = ("lotus [lotus.alpha=2]", "lotus [lotus.alpha=8]")


def test_grid_points_keep_their_labels_in_every_leaderboard_format_and_in_the_estimate(tmp_path, cli):
    recipe = tmp_path / "grid.toml"
    recipe.write_text(GRID)
    code, _, err = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS))
    assert code == 0, err[-2000:]
    code, out, err = cli("leaderboard")  # the rich table
    assert code == 0 and all(label in out for label in LABELS), out
    code, out, _ = cli("leaderboard", "--format", "json")
    methods = {row["method"] for board in json.loads(out) for row in board["rows"]}
    assert set(LABELS) <= methods, methods
    code, out, _ = cli("sweep", str(recipe), "--plugins-dir", str(PLUGINS), "--estimate")
    assert code == 0 and "tiny/tiny_cnn/0.1 [lotus.alpha=2]:" in out, out


class BracketedOptions(GradAscentPlusOptions):
    passes: int = Field(1, ge=1, description="Set it in [options.bracketed]; sweep it in [grid.bracketed].")


class Bracketed(GradAscentPlus):
    """A method whose texts hold brackets, as [grid.bracketed] or [bold]this[/bold] in a docstring."""

    name = "bracketed"
    summary = "Reads its [options.bracketed] table."
    paper = "Someone, [preprint] 2026"
    Options = BracketedOptions


class BracketedPlugin:
    @hookimpl
    def register_methods(self, register):
        register(Bracketed)


def test_a_plugins_own_texts_print_as_written(host, capsys):
    plugin = BracketedPlugin()
    host.register(plugin)
    try:
        code, out, err = invoke(["show", "method", "bracketed"], capsys)
        assert code == 0, err
        flat = " ".join(out.split())  # the options table folds long cells
        for text in (
            "Reads its [options.bracketed] table.",
            "Someone, [preprint] 2026",
            "as [grid.bracketed] or [bold]this[/bold] in a docstring",
            "Set it in [options.bracketed]; sweep it in [grid.bracketed].",
        ):
            assert text in flat, (text, out)
        code, out, _ = invoke(["list", "methods"], capsys)
        assert "[options.bracketed]" in " ".join(out.split()), out
    finally:
        host.unregister(plugin)


HOSTILE = "lotus\x1b]0;owned\x07\x1b[2J\u202eexe.txt"  # retitle the window, clear the screen, reverse the line


def test_control_characters_from_a_store_are_shown_not_sent(capsys):
    """A shared store is outside input: a tag holding terminal escape sequences or a bidirectional
    override prints as visible escapes, in plain lines and in table cells alike."""
    from unlearnkit.store.mlflow_store import Store, tag

    store = Store()
    run_id = store.start_run("hostile", {tag("method"): HOSTILE, tag("failure"): f"boom {HOSTILE}"}, {})
    code, out, err = invoke(["show", "run", run_id], capsys)
    assert code == 0, err
    assert not any(c in out for c in "\x1b\x07\u202e"), repr(out)
    assert "lotus\\x1b]0;owned\\x07\\x1b[2J\\u202eexe.txt" in out  # still readable: nothing is dropped

    from rich.table import Table

    from unlearnkit.cli import console

    table = Table()
    table.add_column("method")
    table.add_row(HOSTILE)
    with console.out.capture() as captured:
        console.out.print(table)
        console.out.print(f"[bold]{console.escape(HOSTILE)}[/]")
    assert not any(c in captured.get() for c in "\x1b\x07\u202e"), repr(captured.get())


def test_progress_descriptions_show_control_characters_instead_of_sending_them():
    """The progress bar renders a task's description from markup, past the console's own escaping: a
    recipe's name or a plugin's step description with an escape sequence must not reach the terminal."""
    import io

    from unlearnkit.cli.console import DataConsole, RichReporter

    buffer = io.StringIO()
    screen = DataConsole(file=buffer, force_terminal=True, width=200, color_system=None)
    with RichReporter(console=screen) as reporter:
        for _ in reporter.track([1], total=1, description=f"sweep {HOSTILE}"):
            reporter.progress.refresh()
        with reporter.steps(f"steps {HOSTILE}", 1) as step:
            step()
            reporter.progress.refresh()
        reporter.counter(f"counter {HOSTILE}", 1)()
        reporter.progress.refresh()
    shown = buffer.getvalue()
    assert "\x1b]0;owned" not in shown and "\u202e" not in shown, repr(shown)
    assert shown.count("\\x1b]0;owned\\x07") >= 3  # each description still readable


def test_progress_into_a_log_or_a_pipe_writes_its_lines_and_nothing_else():
    """No bar is drawn where the output is no terminal, and stopping the bars wrote an empty line
    there: the line between "Loading dataset" and a refusal's "Error:" in every CI log."""
    import io

    from unlearnkit.cli.console import DataConsole, RichReporter

    buffer = io.StringIO()
    log = DataConsole(file=buffer, force_terminal=False, width=200, color_system=None)
    with RichReporter(console=log) as reporter:
        reporter.event("Loading dataset digits")
        for _ in reporter.track([1, 2], total=2, description="epochs"):
            pass
        reporter.warn("weak original")
    lines = buffer.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:1]] == ["Loading dataset digits"]
    assert lines[1:] == ["Warning: weak original"], lines


def test_a_long_event_or_warning_is_one_line_in_a_log():
    """rich cut a line at the console's 200 columns where no terminal is: a long warning (a failed Ray
    task's reason, a path) became two lines, and a grep for it found half."""
    import io

    from unlearnkit.cli.console import DataConsole, RichReporter

    buffer = io.StringIO()
    log = DataConsole(file=buffer, force_terminal=False, width=200, color_system=None)
    long = "x " * 180 + "end"
    with RichReporter(console=log) as reporter:
        reporter.event(long)
        reporter.warn(long)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2 and all(line.endswith(long) for line in lines), lines
