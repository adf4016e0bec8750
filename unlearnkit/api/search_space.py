"""Search spaces for ``unlearnkit tune`` (docs/tuning.md): small typed parameter specs.

A method declares what may be tuned next to its Options, one spec per option::

    search_space = {
        "lr": LogUniform(1e-5, 1e-2),          # log-uniform float
        "alpha": Uniform(0.5, 16.0),           # uniform float
        "noise_steps": IntRange(1, 40),        # integer range (log=True: log-uniform integers)
        "target": Categorical(["gumbel", "softmax"]),
    }

A recipe's ``[tune.METHOD]`` table replaces a method's space with the same specs in TOML::

    [tune.lotus]
    lr = { kind = "log_uniform", low = 1e-5, high = 1e-3 }
    target = { kind = "categorical", choices = ["gumbel", "softmax"] }

This module is light (pydantic only): the plugin contract (:mod:`unlearnkit.api`) and the recipe
schema import it; Optuna is imported only when a spec is turned into a distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from unlearnkit.errors import ConfigError

_STRICT = ConfigDict(extra="forbid")
Scalar = bool | int | float | str


def _finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError("bounds must be finite numbers")


@dataclass(frozen=True, config=_STRICT)
class _FloatRange:
    """A float drawn from [low, high], uniformly or, with ``log``, log-uniformly (then 0 < low)."""

    low: float
    high: float
    log: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _finite(self.low, self.high)
        if not self.low < self.high or (self.log and not 0 < self.low):
            need = "log_uniform needs 0 < low < high" if self.log else "uniform needs low < high"
            raise ValueError(f"{need}, got [{self.low}, {self.high}]")

    def distribution(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log)

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} [{self.low:g}, {self.high:g}]"

    def bounds(self) -> list[Scalar]:
        return [self.low, self.high]


@dataclass(frozen=True, config=_STRICT)
class LogUniform(_FloatRange):
    """A float drawn log-uniformly from [low, high] (learning rates, temperatures); 0 < low < high."""

    kind: Literal["log_uniform"] = "log_uniform"
    log: ClassVar[bool] = True


@dataclass(frozen=True, config=_STRICT)
class Uniform(_FloatRange):
    """A float drawn uniformly from [low, high]; low < high."""

    kind: Literal["uniform"] = "uniform"


@dataclass(frozen=True, config=_STRICT)
class IntRange:
    """An integer in [low, high] (both included), every ``step``-th, or log-uniform with ``log``."""

    low: int
    high: int
    step: int = 1
    log: bool = False
    kind: Literal["int"] = "int"

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"int needs low <= high, got [{self.low}, {self.high}]")
        if self.step < 1 or (self.log and (self.step != 1 or self.low < 1)):
            raise ValueError("int needs step >= 1; with log = true, step 1 and low >= 1")

    def distribution(self) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        how = "log-int" if self.log else "int"
        return f"{how} [{self.low}, {self.high}]" + (f" step {self.step}" if self.step != 1 else "")

    def bounds(self) -> list[Scalar]:
        return [self.low, self.high]

    def capped(self, high: int) -> IntRange:
        """The same range with its upper end at most ``high`` (an epoch cap)."""
        top = min(self.high, max(high, 1))
        low = min(self.low, top)
        return IntRange(low, top, self.step if top - low >= self.step else 1, self.log)


@dataclass(frozen=True, config=_STRICT)
class Categorical:
    """One of ``choices`` (booleans, numbers or strings)."""

    choices: tuple[Scalar, ...]
    kind: Literal["categorical"] = "categorical"

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("categorical needs at least one choice")

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.choices))

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def bounds(self) -> list[Scalar]:
        return list(self.choices)


Param = Annotated[LogUniform | Uniform | IntRange | Categorical, Field(discriminator="kind")]
SearchSpace = dict[str, Param]
PARAM_FIELDS = ("kind", "low", "high", "step", "log", "choices")
_SPACE: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Param])


KINDS = ("log_uniform", "uniform", "int", "categorical")
PARAM_FORMS = (
    "A parameter is a table with kind = log_uniform|uniform (low, high), int (low, high[, step, log]) or "
    "categorical (choices)."
)


def param_problem(error: Mapping[str, Any]) -> str:
    """What is wrong with one parameter, from pydantic's first error, in the recipe's own terms: its
    ``kind`` missing or unknown is said so, not as a "discriminator" tag."""
    if error["type"] == "union_tag_not_found":
        return "it has no kind"
    if error["type"] == "union_tag_invalid":
        given = error.get("ctx", {}).get("tag", "")
        return f"unknown kind '{given}' (valid kinds: {', '.join(KINDS)})"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_space(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``[tune.METHOD]`` table (already-built specs pass through) -> a search space; a one-line error."""
    try:
        return _SPACE.validate_python(dict(table))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"] if p not in KINDS)
        raise ConfigError(f"Bad search-space entry '{key}' in {where}: {param_problem(first)}. {PARAM_FORMS}") from None


def space_table(space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A search space as the plain tables a recipe's ``[tune.METHOD]`` holds (for provenance and docs)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        row = _SPACE.dump_python({name: spec})[name]
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}
    return out


__all__ = [
    "KINDS",
    "PARAM_FIELDS",
    "PARAM_FORMS",
    "Categorical",
    "IntRange",
    "LogUniform",
    "Param",
    "SearchSpace",
    "Uniform",
    "param_problem",
    "parse_space",
    "space_table",
]
