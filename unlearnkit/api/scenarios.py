"""The forget-scenario contract: a rule that turns a benchmark's training set into a forget set.

A scenario is written ``NAME:PARAMETERS`` (``random:0.1``, ``class:cat``); the default scenario
also takes its parameters bare (``0.1``). The core parses the text to the registered scenario of
that name, and asks the scenario everything else: its canonical text (the ``key`` every stored run
carries), whether it forgets whole classes, whether it draws another set at every seed, and the
forget set itself. It never compares a scenario's name.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from unlearnkit.api.contracts import Plugin
from unlearnkit.errors import ConfigError, shorten

ScoreSource = Callable[[str], np.ndarray]  # a memorisation score source's name -> one score per training image


@dataclass(frozen=True)
class ScenarioData:
    """What a scenario draws its forget set from.

    ``pool``: the candidate training indices, sorted (the whole training set, or ``--subset`` of
    it). Every other array is indexed by training-set index. ``subclasses``/``subclass_names``:
    the fine label of every training image, for datasets whose classes are groups of finer ones
    (CIFAR-20's superclasses). ``scores``: memorisation scores by source name, computed (and
    cached) by the benchmark only when a scenario asks for them.
    """

    pool: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    groups: np.ndarray | None = None
    subclasses: np.ndarray | None = None
    subclass_names: list[str] | None = None
    scores: ScoreSource | None = None

    @property
    def pool_labels(self) -> np.ndarray:
        return self.labels[self.pool]


@dataclass(frozen=True)
class ForgetSet:
    """A scenario's answer: training indices (a subset of the pool) and, when the scenario forgets
    one whole class, that class (methods read it as ``ctx.forget_class``)."""

    indices: np.ndarray
    forget_class: int | None = None
    forget_subclass: int | None = None  # the fine class forgotten, for sub-class scenarios


class Scenario(Plugin):
    """A forget-set rule. Subclasses set ``name``, ``summary``, ``syntax`` and implement
    ``parse`` (the parameter text -> its canonical form, or a one-line ConfigError) and ``draw``.

    The parsed scenario keeps the canonical parameters in ``self.params``; ``key`` is
    ``name:params``, the text every run of the benchmark is stored under. Two spellings of one
    scenario (``0.10`` and ``0.1``) must give one key.
    """

    plugin_kind: ClassVar[str] = "scenario"
    syntax: ClassVar[str] = ""  # how the text is written, e.g. "random:<fraction>"
    example: ClassVar[str] = ""  # parameters the conformance check draws with, e.g. "0.1"
    # Every image of the forgotten classes is forgotten: the original is not expected to have
    # memorised the forget set (it generalises to it), and class-forgetting methods apply.
    forgets_whole_classes: ClassVar[bool] = False
    # Another forget set at every seed (tuning needs one: it must not tune on the reported set).
    draws_per_seed: ClassVar[bool] = False
    # The original is expected to have memorised the forget set (forget accuracy above unseen
    # accuracy); not so when the forget set is a whole class or sub-class, which it generalises to.
    expects_memorisation: ClassVar[bool] = True
    # Its one parameter is a fraction of the training set (``NAME:<fraction>``).
    by_fraction: ClassVar[bool] = False
    # The same set at every seed, but a seeded random set of the same size is a fair stand-in for
    # it when tuning (not so for a class or a person, whose images belong together).
    tuning_stand_in: ClassVar[bool] = False
    # Successive deletion requests, each applied to the previous request's output.
    requests: int = 1

    def __init__(self, params: str = "") -> None:
        super().__init__()
        self.params = self.parse(params.strip())

    @property
    def key(self) -> str:
        return f"{self.name}:{self.params}"

    @property
    def rule(self) -> str:
        """The rule's name, as methods see it in ``Setting.scenario_rule``."""
        return self.name

    def bad(self, params: str, expected: str) -> ConfigError:
        """The one-line error for bad parameters, naming the text (shortened) and what was expected."""
        return ConfigError(f"Bad forget scenario '{self.shown(f'{self.name}:{params}')}': expected {expected}.")

    @staticmethod
    def shown(text: str) -> str:
        """``text`` as an error line may repeat it: a pasted 20 KB value stays one short line, and a
        line break or U+202E in it is escaped (``unlearnkit.errors.shorten``)."""
        return shorten(text)

    @abc.abstractmethod
    def parse(self, params: str) -> str:
        """Validate the parameter text; return its canonical form (what ``key`` is made of)."""

    @abc.abstractmethod
    def draw(self, data: ScenarioData, seed: int) -> ForgetSet:
        """The forget set of one seed, a subset of ``data.pool``."""

    def needs_scores(self) -> str | None:
        """The memorisation score source this scenario reads (None: none)."""
        return None

    def draw_requests(self, data: ScenarioData, seed: int) -> list[ForgetSet]:
        """The successive deletion requests of one seed (``requests`` of them), disjoint, in the
        order they arrive; their union is :meth:`draw`'s set. One request unless overridden."""
        return [self.draw(data, seed)]


def parse_fraction(text: str, what: str = "forget fraction") -> float:
    """A number strictly between 0 and 1, or a one-line ConfigError naming the text."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0.0 < value < 1.0):  # NaN too
        raise ConfigError(f"Bad {what} '{shorten(text)}': expected a number strictly between 0 and 1.")
    return value


# A sequential scenario's run records each metric's mean over its requests under this suffix.
REQUESTS_MEAN_SUFFIX = "_mean_requests"

# Where memorisation scores come from (docs/protocols.md, "memorised"): two cheap proxies read off the
# original's own training run, and the leave-one-out style estimate of K audit shadow originals.
SCORE_PROXIES = ("confidence", "learning")
SCORE_SOURCES_HELP = "confidence, learning or shadows:<K> (K >= 2 audit shadow originals)"


def parse_score_source(text: str) -> str:
    """A memorisation score source's canonical text, or a one-line ConfigError naming the valid ones."""
    text = text.strip()
    if text in SCORE_PROXIES:
        return text
    name, sep, count = text.partition(":")
    count = count.strip()
    # a count of more than 9 digits is refused before int(), which refuses more than 4300
    if name == "shadows" and sep and count.isascii() and count.isdigit() and len(count.lstrip("0")) <= 9:
        if int(count) >= 2:
            return f"shadows:{int(count)}"
    raise ConfigError(f"Bad memorisation score source '{shorten(text)}'. Valid sources: {SCORE_SOURCES_HELP}.")


__all__ = [
    "REQUESTS_MEAN_SUFFIX",
    "SCORE_PROXIES",
    "ForgetSet",
    "Scenario",
    "ScenarioData",
    "ScoreSource",
    "parse_fraction",
    "parse_score_source",
]
