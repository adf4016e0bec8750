"""Ctrl-C / SIGTERM that never land in the middle of a store write.

The CLI installs ``handler`` for SIGINT and SIGTERM. Inside ``deferred()`` (every store call)
a signal is remembered and raised as KeyboardInterrupt on leaving the block, so a database
transaction or an artifact copy is never cut in half; everywhere else it interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_depth = 0
_pending: int | None = None


def handler(signum: int, frame: object) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(signal.Signals(signum).name)


def atomic(fn: F) -> F:
    """Decorator: run ``fn`` with signals deferred."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with deferred():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def install() -> None:
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
