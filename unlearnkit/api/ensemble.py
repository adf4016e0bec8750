"""What an ensemble score reads: per-example outputs of N independently repeated benchmark runs.

Single-run metrics compare one unlearned model with one retrained model. The scores the field now
reports (the NeurIPS 2023 challenge score, KLoM) compare a *distribution* of unlearned models with a
distribution of retrained ones, per example. An :class:`Ensemble` holds those outputs: for each of
N members (the benchmark repeated with seeds s, s+1, ...: its own original, its own retrained
model, the method applied to that original) the float32 logits on each split, computed once and
kept in the store, so every score and every later re-scoring reads the same numbers.

An :class:`EnsembleMetric` is a :class:`~unlearnkit.api.contracts.Metric` that ``needs`` the
``ensemble``: a single run never has one, so it never enters a run's evaluation or identity; it
is computed by ``unlearnkit audit --scores`` and listed with every other metric.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from unlearnkit.api.contracts import Metric

#: The roles of an ensemble: the method's models, the references trained on D_r (its target), and
#: the originals the method started from.
ENSEMBLE_ROLES = ("unlearned", "retrained", "original")
#: Splits whose examples are the same in every member (the scores pair examples across models).
PAIRED_SPLITS = ("forget", "retain")


@dataclass(frozen=True)
class Scored:
    """An ensemble score with its interval (``low``/``high``: NaN when it has none)."""

    value: float
    low: float = math.nan
    high: float = math.nan


@dataclass(frozen=True)
class Ensemble:
    """Logits per role and split as ``(N, M, C)`` float32 arrays, labels as ``(N, M)`` integers.

    Forget and retain are the same examples in the same order in every member; test and unseen
    are each member's own halves of the test split (same size, other images), so only their
    per-member aggregates (accuracies) are comparable.
    """

    outputs: Mapping[str, Mapping[str, np.ndarray]]
    targets: Mapping[str, np.ndarray]
    seed: int = 0  # seeds the bootstrap of every interval
    resamples: int = 1000  # bootstrap resamples behind every interval

    @property
    def members(self) -> int:
        return int(next(iter(self.targets.values())).shape[0])

    def logits(self, role: str, split: str) -> np.ndarray:
        if role not in self.outputs:
            raise KeyError(f"unknown role {role!r}; expected one of {tuple(self.outputs)}")
        return self.outputs[role][split]

    def labels(self, split: str) -> np.ndarray:
        return self.targets[split]

    def accuracy(self, role: str, split: str) -> np.ndarray:
        """Each member's top-1 accuracy on ``split``: shape (N,)."""
        hits = self.logits(role, split).argmax(-1) == self.labels(split)
        return hits.mean(axis=-1) if hits.shape[-1] else np.full(hits.shape[0], np.nan)


class EnsembleMetric(Metric):
    """A score of N unlearned against N retrained models (subclass and implement :meth:`score`)."""

    needs: ClassVar[frozenset[str]] = frozenset({"ensemble"})
    # Scores computed together and asked for by one name (``--scores challenge`` gives the challenge
    # score and its forgetting quality); empty: the metric's own name only.
    family: ClassVar[str] = ""
    min_members: ClassVar[int] = 2  # fewer members leave the score undefined

    @abc.abstractmethod
    def score(self, ens: Ensemble) -> Scored:
        """The value and its interval from the ensemble's outputs."""

    def compute(self, ev: object) -> float:
        raise TypeError(f"{self.name} is an ensemble score: it reads an Ensemble (unlearnkit audit --scores)")


def ensemble_metrics(entries: Iterable[Any]) -> list[Any]:
    """The registry entries (of any kind) whose class is an ensemble score."""
    return [e for e in entries if isinstance(e.cls, type) and issubclass(e.cls, EnsembleMetric)]
