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


def logit_margin(logits: Any, labels: Any) -> np.ndarray:
    """``z_y - logsumexp_{j != y} z_j`` over the last axis, in float64: the margin both LiRA's scaled
    logit and the ensemble scores start from, computed from raw logits with a max shift so logits of
    +-1000 neither overflow nor underflow (going through probabilities would give ``log 0``).

    ``logits``: (..., C) with C >= 2; ``labels``: integer classes broadcastable to ``logits.shape[:-1]``.
    A ``-inf`` logit is a class of zero probability: an infinite largest other logit passes through the
    shift unchanged, so a margin is ``+-inf`` where the logits make it so and NaN only where they leave
    it undetermined (both ``+inf``, or every other logit ``-inf`` against a ``-inf`` true one).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., C) with C >= 2 classes; got {z.shape}")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    y = np.broadcast_to(y, z.shape[:-1])
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels must lie in [0, {z.shape[-1] - 1}]; got [{y.min()}, {y.max()}]")
    idx = y[..., None].astype(np.intp)
    true = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    top = others.max(axis=-1, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(true - (np.log(np.exp(others - shift).sum(axis=-1)) + shift[..., 0]), dtype=np.float64)


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
