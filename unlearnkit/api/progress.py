"""Progress reporting without printing: the core emits, the CLI renders with rich.

Library code calls ``reporter.track(...)`` around long loops and ``reporter.event(...)`` for
milestones; the default reporter is silent, so tests and notebooks stay quiet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Reporter:
    """Silent by default; the CLI subclasses it with rich progress bars."""

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        yield from iterable

    @contextmanager
    def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        """A bar over ``total`` fine-grained steps (every optimiser step of a training), removed when
        done: its ETA moves within an epoch, not once per epoch. Yields the function that advances it."""
        yield lambda: None

    def counter(self, description: str, total: int) -> Callable[[], None]:
        """A progress count over ``total`` items (a sweep's runs); returns the function that advances it."""
        return lambda: None

    def event(self, message: str) -> None:
        """A milestone worth a line in the CLI (model trained, run skipped, ...)."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the run."""


SILENT = Reporter()


class RecordingReporter(Reporter):
    """Keeps events and warnings in lists (tests, programmatic use)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.warnings: list[str] = []

    def event(self, message: str) -> None:
        self.events.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
