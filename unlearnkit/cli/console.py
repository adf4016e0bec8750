"""Shared rich consoles and a rich-backed progress reporter.

Every command module imports this one, so it stays light: the reporter's base class lives in
:mod:`unlearnkit.api`, whose import (numpy, pydantic) ``unlearnkit --help`` need not pay, and
``RichReporter`` is made on first use (a module ``__getattr__``, as the ``unlearnkit`` face does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from unlearnkit.errors import written_out

T = TypeVar("T")


def one_row(text: str) -> str:
    """Store text as one line of output: a line break in a run's name or tag would print a second
    line, a made-up row of numbers (or a made-up ``seed:`` line) under the real ones."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def task_text(description: str) -> str:
    """A progress task's description as markup that shows it as written: the progress bar renders
    descriptions from markup itself, past the console's ``render_str``, so both are done here."""
    return escape(written_out(description))


class DataConsole(Console):
    """A console for text that comes from data. What the CLI prints comes from stores, bundles,
    recipe files and third-party plugins: any of it may hold ``[word]``, which rich markup would
    swallow (a grid label ``lotus [lotus.alpha=2]``), a terminal escape sequence (one that retitles
    the window, clears the screen or overwrites a line) or a bidirectional override that reorders a
    line. So markup is off unless a print asks for it (``markup=True``, data inside ``escape``d),
    and every string, table cells included, has its control characters written out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(written_out(text), **kwargs)


def styled(text: str, style: str) -> Text:
    """A table cell in its own style: rich markup is off in cells, and a ``Text`` skips ``render_str``,
    so its control characters are written out here."""
    return Text(written_out(text), style=style)


# Piped output (CI logs, `| tee`) gets a wide page so leaderboards are not squeezed to 80 columns.
# No emoji codes: a forget scenario names classes, and "class:cat: 6 methods" must not print a cat.
out = DataConsole(width=None if Console().is_terminal else 200, emoji=False)
err = DataConsole(stderr=True, width=None if Console(stderr=True).is_terminal else 200, emoji=False)


def error(message: str) -> None:
    err.print(f"[bold red]Error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def _rich_reporter() -> type:
    """The RichReporter class, defined against :class:`unlearnkit.api.progress.Reporter` once asked for."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from unlearnkit.api.progress import Reporter

    class RichReporter(Reporter):
        """Progress bars for long loops (nested bars allowed), milestones as log lines on stderr."""

        def __init__(self, console: Console = err) -> None:
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                speed_estimate_period=3600,  # long epochs: estimate from the whole run, not the last 30 s
                disable=not console.is_terminal,  # a log or a pipe: no bar to draw, and stopping one wrote a blank line
            )
            self.console = console

        def __enter__(self) -> RichReporter:
            self.progress.start()
            return self

        def __exit__(self, *exc: object) -> None:
            self.progress.stop()

        def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
            task = self.progress.add_task(task_text(description), total=total)
            try:
                for item in iterable:
                    yield item
                    self.progress.advance(task)
            finally:
                self.progress.remove_task(task)

        @contextmanager
        def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
            task = self.progress.add_task(task_text(description), total=total)
            try:
                yield lambda: self.progress.advance(task)
            finally:
                self.progress.remove_task(task)

        def counter(self, description: str, total: int) -> Callable[[], None]:
            task = self.progress.add_task(task_text(description), total=total)
            return lambda: self.progress.advance(task)

        def event(self, message: str) -> None:
            # print, not log: rich's log appends a source-file link to every line
            stamp = time.strftime("%H:%M:%S")
            # soft wrap: a log line stays one line in a file (rich cut it at 200 columns where no terminal)
            self.progress.console.print(
                f"[dim]{stamp}[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True
            )

        def warn(self, message: str) -> None:
            self.progress.console.print(
                f"[yellow]Warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True
            )

    RichReporter.__qualname__ = "RichReporter"
    return RichReporter


def __getattr__(name: str) -> Any:
    if name == "RichReporter":
        cls = globals()["RichReporter"] = _rich_reporter()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
