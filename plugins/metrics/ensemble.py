"""Ensemble forgetting scores: ``forget_quality`` and ``challenge_score`` (NeurIPS 2023 unlearning
challenge) and ``klom`` (KL divergence of margins). Computed by ``unlearnkit audit --scores`` from N
members' cached logits; the arithmetic and its references are in :mod:`.ensemble_scores`."""

from __future__ import annotations

import abc

import numpy as np

from unlearnkit import Ensemble, EnsembleMetric, Scored

from .ensemble_scores import (
    bootstrap_interval,
    challenge_per_example,
    challenge_score,
    klom_per_example,
    logit_scaled_confidence,
    margins_from_logits,
)


def _interval(per_example: np.ndarray, ens: Ensemble, scale: float = 1.0) -> tuple[float, float]:
    low, high = bootstrap_interval(per_example, n_boot=ens.resamples, seed=ens.seed)
    return low * scale, high * scale


class _ForgetSetMean(EnsembleMetric):
    """A score that is the mean over D_f of a per-example value, with a percentile bootstrap over
    forget examples as its interval: the shape every ensemble score here shares."""

    @abc.abstractmethod
    def per_example(self, ens: Ensemble) -> np.ndarray:
        """One value per forget example, from the unlearned and retrained members' outputs."""

    def score(self, ens: Ensemble) -> Scored:
        per_example = self.per_example(ens)
        return Scored(float(per_example.mean()), *_interval(per_example, ens))


class _ChallengeMetric(_ForgetSetMean):
    """The NeurIPS 2023 challenge's scores, computed together (one family) from each forget
    example's share of F. Higher is better."""

    family = "challenge"
    direction = "higher"

    def per_example(self, ens: Ensemble) -> np.ndarray:
        """Each forget example's share of F (its 2^-bucket), unlearned vs retrained members."""
        labels = ens.labels("forget")
        unlearned = logit_scaled_confidence(ens.logits("unlearned", "forget"), labels)
        retrained = logit_scaled_confidence(ens.logits("retrained", "forget"), labels)
        return challenge_per_example(unlearned, retrained)


class ForgetQuality(_ChallengeMetric):
    """The challenge's forgetting quality F: per forget example, the best single- or double-threshold
    attack telling the N unlearned members' logit-scaled confidences from the N retrained members'
    gives an ε (δ = 1e-5, capped at 50), bucketed into 2^-⌊ε/0.5⌋ below the largest ε N models can
    resolve; F is the mean over D_f. 1: no example tells the ensembles apart. Interval: a percentile
    bootstrap over forget examples. Higher is better."""

    name = "forget_quality"
    algorithm_version = 1
    display_order = 200
    summary = "NeurIPS'23 challenge forgetting quality F over N unlearned vs N retrained models (higher is better)."


class ChallengeScore(_ChallengeMetric):
    """The challenge's final score F × (RA_u / RA_r) × (TA_u / TA_r): forgetting quality times the
    retain and test accuracy ratios, each accuracy averaged over its side's members. Interval: F's
    bootstrap over forget examples, the accuracy ratios held at their values. Higher is better."""

    name = "challenge_score"
    algorithm_version = 1
    display_order = 201
    summary = "NeurIPS'23 challenge score: F x retain and test accuracy ratios to retrain (higher is better)."

    def score(self, ens: Ensemble) -> Scored:
        points = self.per_example(ens)
        forget_quality = float(points.mean())
        utility = challenge_score(
            1.0,
            retain_acc_unlearned=ens.accuracy("unlearned", "retain"),
            retain_acc_retrained=ens.accuracy("retrained", "retain"),
            test_acc_unlearned=ens.accuracy("unlearned", "test"),
            test_acc_retrained=ens.accuracy("retrained", "test"),
        )
        return Scored(forget_quality * utility, *_interval(points, ens, utility))


class KLoM(_ForgetSetMean):
    """KLoM: per forget example, KL(P ‖ Q̃) between the 20-bin histograms of the N unlearned members'
    margins (P) and the N retrained members' (Q, floored at 1e-5 where P has mass); the value is the
    mean over D_f. 0: the unlearned margins are distributed as a retrain's. Interval: a percentile
    bootstrap over forget examples. Lower is better."""

    name = "klom"
    algorithm_version = 1
    family = "klom"
    display_order = 202
    summary = "KLoM: mean over D_f of KL(unlearned || retrained) of binned margins over N models (lower is better)."
    direction = "lower"

    def per_example(self, ens: Ensemble) -> np.ndarray:
        labels = ens.labels("forget")
        return klom_per_example(
            margins_from_logits(ens.logits("unlearned", "forget"), labels),
            margins_from_logits(ens.logits("retrained", "forget"), labels),
        )


ENSEMBLE_METRICS = (ForgetQuality, ChallengeScore, KLoM)
