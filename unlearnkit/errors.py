"""Errors written for the user: the CLI prints ``str(err)`` as one red line and exits non-zero.

Anything that is *not* an :class:`UnlearnkitError` is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import re
from collections.abc import Callable, Iterable, Iterator

ECHO_CHARS = 60  # how much of a user's value an error line repeats (a 20 KB key stays one short line)
SUGGEST_UP_TO = 200  # longer names get no "did you mean" (nothing registered is that long)


class UnlearnkitError(Exception):
    """Base class: a problem the user can fix (bad input, missing data, unreachable store)."""

    exit_code = 2


class UnknownNameError(UnlearnkitError):
    """A method, metric, dataset or model name that nothing registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(unknown_name_message(kind, name, self.choices))


class PluginError(UnlearnkitError):
    """A plugin failed to load or registered something invalid."""


class DataError(UnlearnkitError):
    """Dataset files are missing, corrupt or unreadable."""


class ConfigError(UnlearnkitError):
    """An option, fraction, seed, scenario or recipe value is invalid."""


class StoreError(UnlearnkitError):
    """The result store (MLflow) cannot be reached or holds inconsistent data."""


class DivergenceError(UnlearnkitError):
    """A method produced non-finite weights, losses or outputs: the run is recorded as failed."""


class StoreUnavailableError(StoreError):
    """The tracking server stayed unreachable past the retry window. Exit 1: nothing was wrong
    with the request, and running the same command again resumes once the server is back."""

    exit_code = 1


class DiskFullError(UnlearnkitError):
    """A write found no space left (the store, its artifacts, the cache or a temp folder). Exit 1:
    the unfinished run is never counted, and the same command resumes once space is freed."""

    exit_code = 1


class AgreementError(UnlearnkitError):
    """Under torchrun, a message on the process group's key-value store that rank 0 did not send
    (not the JSON it writes): refused, never decoded into objects. Exit 1."""

    exit_code = 1


def redacted(url: str, limit: int | None = None) -> str:
    """``url`` as an error line may echo it: shortened (:func:`shorten`, to ``limit`` characters), the
    password a URL may carry (``user:password@host``) written as ``***``, so a database or bundle URL's
    credentials stay out of logs and terminals."""
    parts = credentials(url)
    if parts is not None:
        head, creds, host, tail = parts
        user, colon, _ = creds.partition(":")
        url = f"{head}://{user}{':***' if colon else ''}@{host}{tail}"
    return shorten(url) if limit is None else shorten(url, limit)


def credentials(url: str) -> tuple[str, str, str, str] | None:
    """``scheme://user:password@host/path`` as ``(scheme, "user:password", host, "/path")``; None for a
    URL that carries no credentials."""
    head, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return None
    creds, _, host = netloc.rpartition("@")
    return head, creds, host, slash + path


def url_password(url: str) -> str:
    """The password a URL carries (``scheme://user:password@host``), as typed; "" when none."""
    parts = credentials(url)
    return parts[1].partition(":")[2] if parts is not None else ""


def shorten(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` as an error line may echo it: at most ``limit`` characters, then how long it was,
    so a pasted file or a 20 KB key does not turn one line into a page; line breaks and other
    unprintable characters (a newline, U+202E) are escaped, so it cannot break or reorder the line."""
    text = str(value)
    cut = text if len(text) <= limit else text[:limit]
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut)
    return shown if len(text) <= limit else f"{shown}…({len(text)} chars)"


def counted(count: float, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` as a sentence says them: "1 cell", "3 cells", "1,200 runs", "0.5 GPUs"."""
    number = f"{int(count):,}" if float(count).is_integer() else f"{count:g}"
    return f"{number} {noun if count == 1 else plural or noun + 's'}"


# C0 and C1 control characters but tab, newline and carriage return (which rich drops itself, and
# which csv's line ends hold), and the bidirectional overrides and isolates
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def written_out(text: str) -> str:
    """``text`` with each control character written as an escape (``\\x1b``) instead of sent: what the
    CLI prints and what the board writes (a published file is printed too, ``cat``) comes from stores,
    bundles and plugins, and an escape sequence there would clear a terminal or reorder a line."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def one_line(message: str) -> str:
    """A message as the single line the CLI prints: any line breaks become spaces."""
    return " ".join(message.split("\n")).replace("\r", " ")


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def disk_full(err: BaseException) -> DiskFullError | None:
    """The one-line :class:`DiskFullError` for ``err`` when a full disk is what it comes down to
    (an OSError with ENOSPC or EDQUOT, or SQLite's "database or disk is full", anywhere along the
    cause chain, however a library wrapped it); None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            where = f" writing {shorten(current.filename, 200)}" if current.filename else ""
            return DiskFullError(
                f"No space left on the device{where}. The unfinished run is not counted: free some space "
                "(or point UNLEARNKIT_STORE, UNLEARNKIT_CACHE_DIR or TMPDIR elsewhere) and run the same command "
                "again to resume."
            )
        if getattr(current, "sqlite_errorname", "") == "SQLITE_FULL" or "database or disk is full" in str(current):
            return DiskFullError(
                "The store's database is full (no space left on its disk). The unfinished run is not counted: "
                "free some space and run the same command again to resume."
            )
        current = current.__cause__ or current.__context__
    return None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    if len(name) > SUGGEST_UP_TO:
        return ""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    valid = ", ".join(choices) if choices else "(none registered)"
    return f"Unknown {kind} '{shorten(name)}'.{did_you_mean(name, choices)} Valid {kind}s: {valid}."


@contextlib.contextmanager
def translated(
    kind: type[BaseException], translate: Callable[[BaseException], UnlearnkitError | None]
) -> Iterator[None]:
    """Re-raise a ``kind`` error that ``translate`` recognises as its one-line error (a full disk, a
    torch/torchvision build mismatch), without the traceback; any other error passes unchanged."""
    try:
        yield
    except kind as err:
        known = translate(err)
        if known is None:
            raise
        raise known from None
