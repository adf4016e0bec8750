"""Forget / retain / unseen / test index sets, as docs/protocols.md defines them.

The forget set is the scenario's (a plugin, :class:`unlearnkit.api.scenarios.Scenario`, parsed
from ``--forget NAME:PARAMETERS`` by :func:`parse_scenario`); retain is the rest of the training
set (or of ``--subset`` of it). The official test split is halved, stratified and seeded with the run seed, into ``unseen``
(LoTUS's reference) and ``test`` — unless the dataset has a dedicated unseen split (MUFAC's
validation set), which is then used whole. Index sets are part of a run's identity.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from unlearnkit.api.scenarios import ForgetSet, Scenario, ScenarioData, ScoreSource, parse_fraction
from unlearnkit.errors import ConfigError, did_you_mean, shorten

if TYPE_CHECKING:
    from unlearnkit.discovery.registry import Registry

__all__ = ["Scenario", "SplitIndices", "make_splits", "parse_fraction", "parse_scenario", "parse_subset"]


def _registry() -> Registry[Scenario]:
    from unlearnkit.discovery.host import registries

    return registries().scenarios


def scenario_help(registry: Registry[Scenario] | None = None) -> str:
    """Every registered scenario's syntax, for error messages and ``--help``."""
    registry = registry if registry is not None else _registry()
    return ", ".join(e.cls.syntax or f"{e.name}:..." for e in registry.entries())


def parse_scenario(text: str, registry: Registry[Scenario] | None = None) -> Scenario:
    """``NAME:PARAMETERS`` (or the default scenario's parameters bare, e.g. ``0.1``) -> the
    registered scenario of that name, its parameters parsed; a one-line ConfigError otherwise."""
    registry = registry if registry is not None else _registry()
    text = text.strip()
    name, sep, params = text.partition(":")
    if not sep:
        if text in registry:  # a scenario's name without its parameters ("class", "random")
            cls = registry.get(text).cls
            example = f", e.g. {text}:{cls.example}" if cls.example else ""
            raise ConfigError(
                f"Bad forget scenario '{shorten(text)}': it takes parameters, written {cls.syntax or text + ':...'}"
                f"{example}."
            )
        try:
            return registry.default().cls(text)
        except ConfigError as err:
            if _is_number(text):
                raise
            # a word: perhaps a misspelt scenario name rather than a bad fraction
            raise ConfigError(
                f"{err}{_suggestion(text, registry.names())} Or name a scenario, NAME:PARAMETERS "
                "(`unlearnkit list scenarios`)."
            ) from None
    if name.strip() not in registry:
        hint = _suggestion(name.strip(), registry.names())
        raise ConfigError(
            f"Bad forget scenario '{shorten(text)}': no scenario is named '{shorten(name.strip())}'.{hint} "
            f"Valid scenarios: {scenario_help(registry)}."
        )
    return registry.get(name.strip()).cls(params)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _suggestion(name: str, names: list[str]) -> str:
    """``" Did you mean 'random'?"`` for ``RANDOM`` (a name that differs only in case) or a close name."""
    folded = [n for n in names if n.casefold() == name.casefold()]
    return f" Did you mean '{folded[0]}'?" if folded else did_you_mean(name, names)


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
    forget_subclass: int | None = None  # not in the fingerprint: the forget set already says it
    # A sequential scenario's deletion requests, in order (their union is ``forget``); empty for one
    # request. Not in the fingerprint: the scenario's key and the seed determine them.
    requests: tuple[ForgetSet, ...] = ()

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
    subclasses: np.ndarray | None = None,
    subclass_names: list[str] | None = None,
    scores: ScoreSource | None = None,
) -> SplitIndices:
    """Compute the four index sets for one seed (see the module docstring for the rules)."""
    train = subset_indices(y_train, subset)
    test_pool = subset_indices(y_test, subset)
    data = ScenarioData(
        pool=train,
        labels=y_train,
        class_names=list(class_names),
        groups=groups,
        subclasses=subclasses,
        subclass_names=subclass_names,
        scores=scores,
    )
    requests: tuple[ForgetSet, ...] = ()
    if scenario.requests > 1:
        requests = tuple(checked_requests(scenario, data, seed))
        forget = np.concatenate([r.indices for r in requests])
        classes = {r.forget_class for r in requests}
        forget_class = classes.pop() if len(classes) == 1 else None
        forget_subclass = None
    else:
        drawn: ForgetSet = scenario.draw(data, seed)
        forget_class, forget_subclass = drawn.forget_class, drawn.forget_subclass
        forget = np.asarray(drawn.indices, dtype=np.int64)
    if not np.isin(forget, train).all():
        raise ConfigError(f"Scenario '{scenario.key}' drew training images outside the training set.")
    forget = np.sort(forget)
    retain = np.setdiff1d(train, forget, assume_unique=True)
    if y_unseen is not None:  # a dedicated unseen split: used whole, the test split stays whole too
        return SplitIndices(
            forget,
            retain,
            subset_indices(y_unseen, subset),
            test_pool,
            forget_class,
            "unseen",
            forget_subclass,
            requests,
        )
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
        forget_subclass=forget_subclass,
        requests=requests,
    )


def checked_requests(scenario: Scenario, data: ScenarioData, seed: int) -> list[ForgetSet]:
    """A sequential scenario's requests, each non-empty, sorted and disjoint from the earlier ones."""
    requests = scenario.draw_requests(data, seed)
    if len(requests) != scenario.requests:
        raise ConfigError(f"Scenario '{scenario.key}' drew {len(requests)} requests, not {scenario.requests}.")
    seen = np.empty(0, dtype=np.int64)
    out = []
    for step, request in enumerate(requests, 1):
        indices = np.sort(np.asarray(request.indices, dtype=np.int64))
        if len(indices) == 0:
            raise ConfigError(f"Scenario '{scenario.key}': deletion request {step} is empty (the pool ran out).")
        if np.isin(indices, seen).any():
            raise ConfigError(
                f"Scenario '{scenario.key}': deletion request {step} repeats an earlier request's images."
            )
        seen = np.concatenate([seen, indices])
        out.append(ForgetSet(indices, request.forget_class, request.forget_subclass))
    return out
