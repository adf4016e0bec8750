"""Forget / retain / unseen / test index sets, as docs/protocols.md defines them.

- instance (the paper's rule): the *first* ``fraction`` of each class's training indices, in
  dataset order — identical for every seed;
- random: a seeded random ``fraction`` of the training set;
- class: every training image of one class;
- identity: every training image of the named people (datasets that name an identity per image);
- first: the first N training images in dataset order (MUFAC's forget set in the LoTUS code).

The official test split is halved, stratified and seeded with the run seed, into ``unseen``
(LoTUS's reference) and ``test`` — unless the dataset has a dedicated unseen split (MUFAC's
validation set), which is then used whole. Index sets are part of a run's identity.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np

from unlearnkit.errors import ConfigError

SCENARIO_HELP = (
    "a fraction like 0.1 (first 10% of each class), random:0.1, class:<id|name>, identity:<id>[,<id>...] or first:<N>"
)


@dataclass(frozen=True)
class Scenario:
    """A forget scenario; ``key`` is its canonical text (used in tags and leaderboards)."""

    rule: str  # "instance", "random", "class", "identity" or "first"
    fraction: float | None = None
    target: str | None = None  # class id or name, comma-separated identities, or a count, resolved against the data

    @property
    def key(self) -> str:
        if self.rule in ("class", "identity", "first"):
            return f"{self.rule}:{self.target}"
        return f"{self.rule}:{self.fraction:g}"


def parse_fraction(text: str, what: str = "forget fraction") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"Bad {what} '{text}': expected a number strictly between 0 and 1.") from None
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ConfigError(f"Bad {what} '{text}': expected a number strictly between 0 and 1.")
    return value


def parse_scenario(text: str) -> Scenario:
    """Parse ``0.1``, ``instance:0.1``, ``random:0.1``, ``class:3`` / ``class:cat`` or ``identity:a,b``."""
    text = text.strip()
    if text.startswith("first:"):
        count = text.split(":", 1)[1].strip()
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"Bad forget scenario '{text}': first:<N> takes a positive number of images.")
        return Scenario("first", target=str(int(count)))
    for rule in ("class", "identity"):
        if text.startswith(f"{rule}:"):
            target = text.split(":", 1)[1].strip()
            if rule == "identity":
                target = ",".join(p.strip() for p in target.split(",") if p.strip())
            if not target:
                raise ConfigError(f"Bad forget scenario '{text}': expected {SCENARIO_HELP}.")
            return Scenario(rule, target=target)
    rule, _, frac = text.rpartition(":")
    rule = rule or "instance"
    if rule not in ("instance", "random"):
        raise ConfigError(f"Bad forget scenario '{text}': expected {SCENARIO_HELP}.")
    return Scenario(rule, fraction=parse_fraction(frac))


def resolve_class(target: str, class_names: list[str]) -> int:
    """A class id or name -> its label; a clear error naming the valid classes otherwise."""
    if re.fullmatch(r"\d+", target):
        idx = int(target)
        if idx < len(class_names):
            return idx
    elif target in class_names:
        return class_names.index(target)
    shown = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    raise ConfigError(f"Unknown class '{target}' for class unlearning. Valid classes: {shown}.")


def resolve_identities(target: str, groups: np.ndarray | None) -> np.ndarray:
    """The identities named by ``identity:a,b`` -> a boolean mask over the training images."""
    if groups is None:
        raise ConfigError(
            "The identity: scenario needs a dataset that names the identity (person) of every training image; "
            "this one does not. Use a fraction, random:F or class:C instead."
        )
    names = groups.astype(str)
    wanted = target.split(",")
    known = set(names.tolist())
    missing = [w for w in wanted if w not in known]
    if missing:
        sample = ", ".join(sorted(known)[:8])
        raise ConfigError(
            f"Unknown identity '{missing[0]}' for identity unlearning. This dataset has {len(known)} identities, "
            f"e.g. {sample}."
        )
    return np.isin(names, wanted)


@dataclass(frozen=True)
class SplitIndices:
    """Indices into the dataset's official train (forget, retain) and test (unseen, test) arrays;
    ``unseen`` indexes the dedicated unseen split instead when ``unseen_from == "unseen"``."""

    forget: np.ndarray
    retain: np.ndarray
    unseen: np.ndarray
    test: np.ndarray
    forget_class: int | None = None
    unseen_from: str = "test"

    def fingerprint(self) -> str:
        """A hash of every index: cached models are keyed on it, so changing a split retrains."""
        h = hashlib.sha256()
        for arr in (self.forget, self.retain, self.unseen, self.test):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
            h.update(b"|")
        h.update(self.unseen_from.encode())
        return h.hexdigest()[:16]


def _by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def subset_indices(labels: np.ndarray, subset: float | int | None) -> np.ndarray:
    """The first ``subset`` images of each class (a count, or a fraction of each class), in order."""
    if subset is None:
        return np.arange(len(labels))
    keep = []
    for idx in _by_class(labels).values():
        n = int(subset) if isinstance(subset, int) or subset >= 1 else max(1, round(len(idx) * subset))
        keep.append(idx[:n])
    return np.sort(np.concatenate(keep))


def parse_subset(text: str | None) -> float | int | None:
    """``--subset``: a per-class count (``200``) or a fraction of every class (``0.1``)."""
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"Bad subset '{text}': expected a per-class count (e.g. 500) or a fraction in (0, 1]."
        ) from None
    if value <= 0 or math.isnan(value) or (value > 1 and not value.is_integer()):
        raise ConfigError(f"Bad subset '{text}': expected a per-class count (e.g. 500) or a fraction in (0, 1].")
    return int(value) if value > 1 else (None if value == 1 else value)


def make_splits(
    y_train: np.ndarray,
    y_test: np.ndarray,
    scenario: Scenario,
    seed: int,
    class_names: list[str],
    subset: float | int | None = None,
    *,
    groups: np.ndarray | None = None,
    y_unseen: np.ndarray | None = None,
) -> SplitIndices:
    """Compute the four index sets for one seed (see the module docstring for the rules)."""
    train = subset_indices(y_train, subset)
    test_pool = subset_indices(y_test, subset)
    rng = np.random.default_rng(seed)
    forget_class = None
    if scenario.rule == "identity":
        mask = resolve_identities(scenario.target or "", groups)
        forget = train[mask[train]]
    elif scenario.rule == "first":
        forget = train[: int(scenario.target or 0)]
    elif scenario.rule == "instance":
        fraction = scenario.fraction or 0.0
        forget = np.concatenate([idx[: max(1, int(len(idx) * fraction))] for idx in _by_class(y_train[train]).values()])
        forget = train[forget]
    elif scenario.rule == "random":
        n = max(1, int(round(len(train) * (scenario.fraction or 0.0))))
        forget = rng.choice(train, size=n, replace=False)
    else:
        forget_class = resolve_class(scenario.target or "", class_names)
        forget = train[y_train[train] == forget_class]
    forget = np.sort(forget)
    retain = np.setdiff1d(train, forget, assume_unique=True)
    if y_unseen is not None:  # a dedicated unseen split: used whole, the test split stays whole too
        return SplitIndices(forget, retain, subset_indices(y_unseen, subset), test_pool, forget_class, "unseen")
    # Stratified, seeded halving of the test split: one half unseen, the other test.
    halving = np.random.default_rng([seed, 1])
    unseen, test = [], []
    for idx in _by_class(y_test[test_pool]).values():
        perm = test_pool[idx][halving.permutation(len(idx))]
        unseen.append(perm[: len(perm) // 2])
        test.append(perm[len(perm) // 2 :])
    return SplitIndices(
        forget=forget,
        retain=retain,
        unseen=np.sort(np.concatenate(unseen)),
        test=np.sort(np.concatenate(test)),
        forget_class=forget_class,
    )
