"""The test split, sealed: a tuning run that reads the data its table reports on stops.

A tuning trial is an ordinary run whose ``test`` split is a :class:`SealedSplit` (any use raises
:class:`TestSplitAccessError`, which stops the tuning rather than failing one run). Which metrics
read it is learnt, not declared: :func:`probe_metrics` computes every registered metric once on
sealed splits, and those that read the test split are tuned on as ``NAME_unseen`` stand-ins
(:func:`stand_in`) with the unseen half of the official test split in the test half's place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.api.contracts import Metric
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.discovery.registry import Entry, Registries

STAND_IN = "_unseen"  # a metric that reads the test split is tuned on as NAME_unseen (unseen in the test half's place)


class TestSplitAccessError(RuntimeError):
    """Something read the test split during tuning. Not an UnlearnkitError on purpose: the runner
    would record it as one failed run and go on; this stops the tuning instead."""


class SealedSplit:
    """Stands in for the ``test`` split in a tuning run: any use of it (its images, labels, length,
    batches) raises :class:`TestSplitAccessError`, so nothing computed during tuning can depend on it."""

    def __init__(self, name: str = "test") -> None:
        object.__setattr__(self, "name", name)

    def _refuse(self, what: str) -> TestSplitAccessError:
        return TestSplitAccessError(
            f"The '{self.name}' split was read during tuning ({what}): tuning may use forget, retain and unseen "
            "data only, so that the reported test numbers stay out of sample (docs/tuning.md)."
        )

    def __getattr__(self, attr: str) -> Any:
        raise self._refuse(attr)

    def __len__(self) -> int:
        raise self._refuse("len")

    def __iter__(self) -> Iterator[Any]:
        raise self._refuse("iter")


class UnseenAsTest:
    """An evaluation as a stand-in metric sees it: the unseen half of the official test split in the
    place of the test half (the two are a stratified, seeded halving: the same distribution). Outputs
    are shared with the evaluation itself, so a stand-in costs no forward pass."""

    def __init__(self, ev: Evaluation) -> None:
        self._ev = ev

    @staticmethod
    def _split(split: str) -> str:
        return "unseen" if split == "test" else split

    def logits(self, role: str, split: str, pass_: str = "eval") -> Any:
        return self._ev.logits(role, self._split(split), pass_)

    def probs(self, role: str, split: str, pass_: str = "eval") -> Any:
        return self._ev.probs(role, self._split(split), pass_)

    def labels(self, split: str) -> Any:
        return self._ev.labels(self._split(split))

    @property
    def splits(self) -> dict[str, Any]:
        return {**self._ev.splits, "test": self._ev.splits["unseen"]}

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._ev, attr)


def stand_in(entry: Entry[Metric]) -> Entry[Metric]:
    """``NAME_unseen``: the metric ``NAME`` computed with unseen data in the test split's place (the
    entropy MIA then takes unseen twice as non-members, which its balanced fit weighs as unseen once)."""
    base = entry.cls

    class StandIn(Metric):
        name = entry.name + STAND_IN
        algorithm_version = base.algorithm_version
        summary = f"Tuning-time {entry.name}: unseen data in the test split's place."
        direction = base.direction
        needs = base.needs

        def compute(self, ev: Evaluation) -> float:
            return base(base.Options()).compute(UnseenAsTest(ev))  # type: ignore[arg-type]

    StandIn.__name__ = StandIn.__qualname__ = f"{base.__name__}OnUnseen"
    return Entry(StandIn.name, StandIn, entry.provenance)


@dataclass
class MetricSets:
    """The registered metrics sorted by a probe on sealed splits: those that compute without the test
    split (evaluated as they are), and those that read it (evaluated as their ``_unseen`` stand-ins)."""

    clean: list[Entry[Metric]] = field(default_factory=list)
    reads_test: list[Entry[Metric]] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> list[Entry[Metric]]:
        return [*self.clean, *(stand_in(e) for e in self.reads_test)]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def probe_metrics(registries: Registries, ev: Evaluation) -> MetricSets:
    """Compute every registered metric once on ``ev`` (whose test split is sealed): a metric that
    reads the test split raises :class:`TestSplitAccessError` and gets a stand-in."""
    sets = MetricSets()
    have = {role for role, model in ev.models.items() if model is not None}
    for entry in registries.metrics.entries():
        if entry.cls.needs - have - {"retrained"}:  # an ensemble score: no single evaluation computes it
            continue
        try:
            entry.cls(entry.cls.Options()).compute(ev)
        except TestSplitAccessError:
            sets.reads_test.append(entry)
        except Exception as err:  # noqa: BLE001 - a metric that cannot compute here is left out, said once
            sets.failing[entry.name] = f"{type(err).__name__}: {err}"
        else:
            sets.clean.append(entry)
    return sets


__all__ = ["STAND_IN", "MetricSets", "SealedSplit", "TestSplitAccessError", "UnseenAsTest", "probe_metrics", "stand_in"]
