"""Errors written for the user: the CLI prints ``str(err)`` as one red line and exits non-zero.

Anything that is *not* an :class:`UnlearnkitError` is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
    """A method produced non-finite weights or losses: the run is recorded as failed."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    valid = ", ".join(choices) if choices else "(none registered)"
    return f"Unknown {kind} '{name}'.{did_you_mean(name, choices)} Valid {kind}s: {valid}."
