"""What a trial is scored by: the mean gap to the retrained model over metrics that never read the
test split (``avg_gap``, or ``gap:METRIC,...``), checked against the registry and the probe."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from unlearnkit.discovery.registry import Registries
from unlearnkit.errors import ConfigError
from unlearnkit.tune.sealed_split import STAND_IN, MetricSets
from unlearnkit.tune.trials import TrialFailed


@dataclass(frozen=True)
class Objective:
    """Mean over metrics of |unlearned - retrained|, per tuning seed, then averaged: lower is better."""

    name: str
    metrics: tuple[str, ...]

    def gap(self, unlearned: Mapping[str, float], retrained: Mapping[str, float]) -> float:
        missing = [m for m in self.metrics if m not in unlearned or m not in retrained]
        if missing:
            raise TrialFailed(f"the objective's metrics {', '.join(missing)} were not measured")
        return statistics.fmean(abs(unlearned[m] - retrained[m]) for m in self.metrics)


def objective_names(text: str, registries: Registries) -> tuple[str, ...]:
    """The metric names of ``avg_gap`` (the leaderboard's Average-Gap metrics, declared ``in_avg_gap``)
    or ``gap:METRIC,...``, checked against the registry (a stand-in ``NAME_unseen`` too); which of them
    read the test split is known only after the probe (:func:`resolve_objective`)."""
    if text == "avg_gap":
        return tuple(e.name for e in registries.metrics.entries() if e.cls.in_avg_gap)
    if text.startswith("gap:"):
        names = tuple(dict.fromkeys(n.strip() for n in text[4:].split(",") if n.strip()))
        known = set(registries.metrics.names())
        for name in names:
            if name not in known and name.removesuffix(STAND_IN) not in known:
                raise ConfigError(f"Unknown objective metric '{name}'. Valid metrics: {', '.join(sorted(known))}.")
        if names:
            return names
    raise ConfigError(f"Unknown objective '{text}'. Valid objectives: avg_gap, gap:METRIC,... (docs/tuning.md).")


def resolve_objective(text: str, registries: Registries, sets: MetricSets) -> Objective:
    """``avg_gap``: every Average-Gap metric, each one that reads the test split as its ``_unseen``
    stand-in. ``gap:...``: the metrics named, refused if one reads the test split."""
    reads = {e.name for e in sets.reads_test}
    names = objective_names(text, registries)
    if text == "avg_gap":
        names = tuple(n + STAND_IN if n in reads else n for n in names)
    for name in names:
        if name in reads:
            raise ConfigError(
                f"Objective metric '{name}' reads the test split: tuning must not see the data it reports on. "
                f"Use '{name}{STAND_IN}' (unseen data in the test split's place)."
            )
        if name not in sets.names:
            why = sets.failing.get(name.removesuffix(STAND_IN), "not measured in tuning runs")
            raise ConfigError(f"Objective metric '{name}' cannot be tuned on: {why}.")
    return Objective(text, names)


__all__ = ["Objective", "objective_names", "resolve_objective"]
