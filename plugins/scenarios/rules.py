"""The five forget rules of unlearnkit 0.2, as scenario plugins (docs/protocols.md).

Their keys and forget sets are exactly those 0.2 computed, so a run stored by 0.2 is found again
(``tests/test_scenario_identity.py`` pins them): ``instance:0.1``, ``random:0.1``, ``class:cat``,
``identity:a,b``, ``first:50``.
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np

import unlearnkit as uk


def by_class(labels: np.ndarray) -> list[np.ndarray]:
    """Positions of each class's members, classes in increasing order, members in dataset order."""
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


MAX_DIGITS = 18  # no dataset has 10**18 images or classes; int() refuses more than 4300 digits


def as_number(text: str) -> int | None:
    """ASCII digits as a number; None for anything else (a sign, a space, '²' or '٣', whose
    ``isdigit``/``\\d`` Python accepts, or more digits than any count or id can have)."""
    if text.isascii() and text.isdigit() and len(text.lstrip("0")) <= MAX_DIGITS:
        return int(text)
    return None


def is_digits(text: str) -> bool:
    """Whether ``text`` is written as an id (digits), however long: then it is never a name."""
    return bool(re.fullmatch(r"[0-9]+", text))


def is_signed_id(text: str) -> bool:
    """Whether ``text`` is an id with a sign (``-1``, ``+3``): refused like an id past the last one,
    with the range, not a look-alike name ("Did you mean '1'?" for ``class:-1``)."""
    return bool(re.fullmatch(r"[-+][0-9]+", text))


LISTED_UP_TO = 30  # an error line names at most this many classes (ImageNet has 1,000)


def suggestion(target: str, names: list[str]) -> str:
    """``" Did you mean 'cat'?"`` for a name that differs only in case (``Cat``), or a close one."""
    folded = [n for n in names if n.casefold() == target.casefold()]
    if folded:
        return f" Did you mean '{uk.Scenario.shown(folded[0])}'?"
    return uk.did_you_mean(target, names)


def listed(names: list[str], numbered: bool) -> str:
    """The valid names for an error line: all of them, or the first ``LISTED_UP_TO`` and how many."""
    shown = [f"{i}={n}" if numbered else n for i, n in enumerate(names[:LISTED_UP_TO])]
    more = f", ... ({len(names)} in all, ids 0 to {len(names) - 1})" if len(names) > LISTED_UP_TO else ""
    return ", ".join(shown) + more


def resolve_class(target: str, class_names: list[str]) -> int:
    """A class id or name -> its label; a clear error naming the valid classes otherwise."""
    if is_digits(target):
        idx = as_number(target)
        if idx is not None and idx < len(class_names):
            return idx
        hint = f" Class ids run from 0 to {len(class_names) - 1}."
    elif target in class_names:
        return class_names.index(target)
    elif is_signed_id(target):
        hint = f" Class ids run from 0 to {len(class_names) - 1}."
    else:
        hint = suggestion(target, class_names)
    raise uk.ConfigError(
        f"Unknown class '{uk.Scenario.shown(target)}' for class unlearning.{hint} "
        f"Valid classes: {listed(class_names, numbered=True)}."
    )


class _FractionRule(uk.Scenario):
    """A rule whose one parameter is a fraction of the training set, keyed by its shortest
    spelling (``0.10`` and ``0.1`` are one scenario). Bad fractions get the core's message, which
    is 0.2's word for word."""

    by_fraction = True

    def parse(self, params: str) -> str:
        return f"{uk.parse_fraction(params):g}"


class Instance(_FractionRule):
    """The first ``fraction`` of each class's training images, in dataset order (the LoTUS paper's
    rule): the same set at every seed. A bare fraction (``--forget 0.1``) means this rule."""

    name = "instance"
    summary = "The first FRACTION of each class's training images, in dataset order (the paper's rule)."
    syntax = "<fraction> or instance:<fraction>"
    example = "0.1"
    default = True
    tuning_stand_in = True
    algorithm_version = 1

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        f = float(self.params)
        picked = np.concatenate([idx[: max(1, int(len(idx) * f))] for idx in by_class(data.pool_labels)])
        return uk.ForgetSet(data.pool[picked])


class Random(_FractionRule):
    """A seeded random ``fraction`` of the training set: another set at every seed."""

    name = "random"
    summary = "A seeded random FRACTION of the training set (another set at every seed)."
    syntax = "random:<fraction>"
    example = "0.1"
    draws_per_seed = True
    algorithm_version = 1

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        n = max(1, int(round(len(data.pool) * float(self.params))))
        return uk.ForgetSet(np.random.default_rng(seed).choice(data.pool, size=n, replace=False))


class NamedClassRule(uk.Scenario):
    """A rule forgetting every training image of one class (or sub-class) named by its parameter:
    the original is not expected to have memorised it, as it generalises to it from the rest of
    the data. The name is kept as given and looked up in the dataset when drawing."""

    expects_memorisation = False
    expected: ClassVar[str]  # what the one-line error asks for when no name is given

    def parse(self, params: str) -> str:
        if not params:
            raise self.bad(params, self.expected)
        return params


class WholeClass(NamedClassRule):
    """Every training image of one class, named by id or name."""

    name = "class"
    summary = "Every training image of one class, by id or name (class unlearning)."
    syntax = "class:<id|name>"
    example = "0"
    expected = "a class id or name, e.g. class:3 or class:cat"
    forgets_whole_classes = True
    algorithm_version = 1

    def parse(self, params: str) -> str:
        """An id is keyed as its number, so ``class:03`` and ``class:3`` are one scenario; a name as given."""
        params = super().parse(params)
        number = as_number(params)
        return str(number) if number is not None else params

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        label = resolve_class(self.params, data.class_names)
        return uk.ForgetSet(data.pool[data.pool_labels == label], forget_class=label)


class Identity(uk.Scenario):
    """Every training image of the named people (datasets that name an identity per image)."""

    name = "identity"
    summary = "Every training image of the named identities (datasets that name a person per image, e.g. MUFAC)."
    syntax = "identity:<id>[,<id>...]"
    example = "p0,p3"
    algorithm_version = 1

    def parse(self, params: str) -> str:
        """Keyed by the distinct identities in the order given (``identity:a, b, a`` is ``identity:a,b``;
        a list of one id repeated is one id, not a key of any length). The order stays: ``identity:b,a``
        was its own key in 0.2, and sorting it would recompute the runs stored under it."""
        joined = ",".join(dict.fromkeys(p.strip() for p in params.split(",") if p.strip()))
        if not joined:
            raise self.bad(params, "one or more identities, e.g. identity:12 or identity:12,40")
        return joined

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        if data.groups is None:
            raise uk.ConfigError(
                "The identity: scenario needs a dataset that names the identity (person) of every training image; "
                "this one does not. Use a fraction, random:F or class:C instead."
            )
        names = data.groups.astype(str)
        wanted = self.params.split(",")
        known = set(names.tolist())
        missing = [w for w in wanted if w not in known]
        if missing:
            sample = ", ".join(sorted(known)[:8])
            raise uk.ConfigError(
                f"Unknown identity '{self.shown(missing[0])}' for identity unlearning. This dataset has {len(known)} "
                f"identities, e.g. {sample}."
            )
        mask = np.isin(names, wanted)
        return uk.ForgetSet(data.pool[mask[data.pool]])


class First(uk.Scenario):
    """The first N training images in dataset order (MUFAC's forget set in the LoTUS code)."""

    name = "first"
    summary = "The first N training images in dataset order (MUFAC's forget set in the LoTUS code)."
    syntax = "first:<N>"
    example = "5"
    tuning_stand_in = True
    algorithm_version = 1

    def parse(self, params: str) -> str:
        count = as_number(params)
        if count is None or count < 1:
            shown = self.shown(f"first:{params}")
            raise uk.ConfigError(f"Bad forget scenario '{shown}': first:<N> takes a positive number of images.")
        return str(count)

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        return uk.ForgetSet(data.pool[: int(self.params)])


RULES = (Instance, Random, WholeClass, Identity, First)
