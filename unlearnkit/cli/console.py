"""Shared rich consoles and a rich-backed progress reporter."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unlearnkit.api.progress import Reporter

T = TypeVar("T")

# Piped output (CI logs, `| tee`) gets a wide page so leaderboards are not squeezed to 80 columns.
out = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)


def error(message: str) -> None:
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


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
        )
        self.console = console

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        task = self.progress.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                self.progress.advance(task)
        finally:
            self.progress.remove_task(task)

    @contextmanager
    def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        task = self.progress.add_task(description, total=total)
        try:
            yield lambda: self.progress.advance(task)
        finally:
            self.progress.remove_task(task)

    def counter(self, description: str, total: int) -> Callable[[], None]:
        task = self.progress.add_task(description, total=total)
        return lambda: self.progress.advance(task)

    def event(self, message: str) -> None:
        # print, not log: rich's log appends a source-file link to every line
        self.progress.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}", highlight=False)

    def warn(self, message: str) -> None:
        self.progress.console.print(f"[yellow]Warning:[/] {escape(message)}", highlight=False)
