"""Membership-inference attacks on the forget set: ``mia`` (paper) and ``mia_efficacy`` (SalUn)."""

from __future__ import annotations

import numpy as np
import torch

from unlearnkit import Evaluation, Metric


def entropy(probs: torch.Tensor) -> np.ndarray:
    """H(p) = -sum_k p_k log p_k per row (natural log, 0 log 0 = 0)."""
    p = probs.double()
    return (-torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(1)).numpy()


def entropy_attack(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray, *, paper: bool = False) -> float:
    """Fit a balanced logistic regression on one feature; fraction of ``targets`` called members.

    ``paper``: the official code fits a 2-class *multinomial* regression (C = 1). Its loss depends
    only on w1 - w0, so at the optimum w0 = -w1 and its L2 penalty (||w0||^2 + ||w1||^2) / 2C equals
    ||w1 - w0||^2 / 4C: exactly a binary regression with C = 2 (intercepts are not penalised).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([members, non_members]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    clf = LogisticRegression(C=2.0 if paper else 1.0, class_weight="balanced", solver="lbfgs", max_iter=1000)
    clf.fit(x, y)
    return float(clf.predict(targets.reshape(-1, 1)).mean())


class PaperMIA(Metric):
    """MIA as in the Bad Teacher / SSD / LoTUS code: feature = softmax entropy; logistic regression
    (class_weight="balanced") fitted on D_r (members) vs test ∪ unseen (non-members), refit for every
    model; value = fraction of D_f predicted member. Direction: closer to retrain.

    ``clean`` protocol: eval-mode outputs on clean images, binary regression (C = 1), unrounded.
    ``paper`` protocol: the outputs of the official batch-1 membership pass (model as returned,
    forget/retain augmented), the official 2-class multinomial fit, rounded to 0.01.
    """

    name = "mia"
    algorithm_version = 1
    display_order, shown_by_default, in_avg_gap = 50, True, True
    summary = "Entropy-based logistic-regression MIA: fraction of D_f called member (closer to retrain)."
    direction = "closer_to_retrain"

    def compute(self, ev: Evaluation) -> float:
        def feature(split: str) -> np.ndarray:
            return entropy(ev.probs("unlearned", split, "membership"))

        members = feature("retain")
        non_members = np.concatenate([feature("test"), feature("unseen")])
        paper = ev.protocol.name == "paper"
        return ev.reported(entropy_attack(members, non_members, feature("forget"), paper=paper))


def true_class_confidence(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return probs.double().gather(1, labels.view(-1, 1)).squeeze(1).numpy()


class MIAEfficacy(Metric):
    """SalUn's MIA-Efficacy: SVC (rbf, C=3) on the true-class confidence, fitted on D_r (members) vs
    test (non-members), equal numbers of each (D_r subsampled, seeded); value = fraction of D_f
    predicted *non-member*. Direction: closer to retrain."""

    name = "mia_efficacy"
    algorithm_version = 1
    display_order = 60
    summary = "SalUn MIA-Efficacy: SVC on confidence, fraction of D_f called non-member (closer to retrain)."
    direction = "closer_to_retrain"

    def compute(self, ev: Evaluation) -> float:
        from sklearn.svm import SVC

        members = true_class_confidence(ev.probs("unlearned", "retain"), ev.labels("retain"))
        non_members = true_class_confidence(ev.probs("unlearned", "test"), ev.labels("test"))
        n = min(len(members), len(non_members))
        rng = np.random.default_rng(ev.ctx.seed)
        members = members[rng.choice(len(members), size=n, replace=False)]
        x = np.concatenate([members, non_members[:n]]).reshape(-1, 1)
        y = np.concatenate([np.ones(n), np.zeros(n)])
        clf = SVC(C=3, kernel="rbf", gamma="auto")
        clf.fit(x, y)
        targets = true_class_confidence(ev.probs("unlearned", "forget"), ev.labels("forget")).reshape(-1, 1)
        return float(1.0 - clf.predict(targets).mean())


MEMBERSHIP_METRICS = (PaperMIA, MIAEfficacy)
