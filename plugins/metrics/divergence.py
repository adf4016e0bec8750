"""Jensen–Shannon-type distances between output distributions: ``jsd``, ``jsd_mean``, ``rf_jsd``.

``paper_jsd`` reproduces the LoTUS paper's formula exactly (matrix-normalised, KL(M||P)
direction, "batchmean"), which is *not* the textbook JSD; ``jsd_mean`` is the textbook per-sample
divergence beside it (spec/metrics.md).
"""

from __future__ import annotations

import torch

from unlearnkit import Evaluation, Metric


def paper_jsd(p: torch.Tensor, q: torch.Tensor) -> float:
    """The paper's JSD of two N×K matrices of distributions.

    P, Q clamped to [1e-8, 1] and each divided by its *whole-matrix* sum; M = (P+Q)/2;
    value = 0.5·KL(M‖P) + 0.5·KL(M‖Q), with KL(A‖B) = Σ_ij A_ij (log A_ij − log B_ij) / N.
    """
    p = p.double().clamp(1e-8, 1)
    q = q.double().clamp(1e-8, 1)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    n = p.shape[0]
    kl_mp = (m * (m.log() - p.log())).sum() / n
    kl_mq = (m * (m.log() - q.log())).sum() / n
    return float(0.5 * kl_mp + 0.5 * kl_mq)


def per_sample_jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Textbook JSD per row: 0.5·KL(P_i‖M_i) + 0.5·KL(Q_i‖M_i), natural log (0 log 0 = 0)."""
    p, q = p.double(), q.double()
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.log() - b.log()), torch.zeros_like(a)).sum(1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class _PaperJSDMetric(Metric):
    """A value of :func:`paper_jsd`, as the paper reports it: among the default columns, shown ×1e4
    (its values are tiny), lower is better (0 where the distributions match)."""

    shown_by_default = True
    direction = "lower"
    display_scale = 1e4


class PaperJSD(_PaperJSDMetric):
    """JSD(unlearned, retrained) on D_f with the paper's formula; tables show it ×1e4. Lower is better."""

    name = "jsd"
    algorithm_version = 1
    display_order = 70
    needs = frozenset({"retrained"})
    summary = "Paper JSD between unlearned and retrained outputs on D_f (x1e4 in tables; lower is better)."

    def compute(self, ev: Evaluation) -> float:
        return paper_jsd(ev.probs("unlearned", "forget"), ev.probs("retrained", "forget"))


class MeanJSD(Metric):
    """Mean over D_f of the textbook per-sample JSD(unlearned_i, retrained_i). Size-independent; lower is better."""

    name = "jsd_mean"
    algorithm_version = 1
    display_order = 80
    needs = frozenset({"retrained"})
    summary = "Textbook per-sample JSD to the retrained model, averaged over D_f (lower is better)."
    direction = "lower"

    def compute(self, ev: Evaluation) -> float:
        return float(per_sample_jsd(ev.probs("unlearned", "forget"), ev.probs("retrained", "forget")).mean())


def class_mean_probs(probs: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Row c = mean softmax over the samples of class c, renormalised to sum 1."""
    rows = [probs[labels == c].mean(0) for c in classes]
    mat = torch.stack(rows)
    return mat / mat.sum(1, keepdim=True)


class RetrainFreeJSD(_PaperJSDMetric):
    """RF-JSD (LoTUS paper): per class c in D_f, p_c = mean softmax of the unlearned model on D_f∩c,
    q_c = mean softmax of the *original* model on test∩c; paper JSD of the K'×K stacks. ×1e4 in
    tables; lower is better; needs no retrained model."""

    name = "rf_jsd"
    algorithm_version = 1
    display_order = 90
    needs = frozenset({"original"})
    summary = "Retrain-free JSD: unlearned on D_f vs original on test, per class (x1e4; lower is better)."

    def compute(self, ev: Evaluation) -> float:
        y_f, y_t = ev.labels("forget"), ev.labels("test")
        classes = [c for c in torch.unique(y_f).tolist() if bool((y_t == c).any())]
        if not classes:
            return float("nan")
        p = class_mean_probs(ev.probs("unlearned", "forget"), y_f, classes)
        q = class_mean_probs(ev.probs("original", "test"), y_t, classes)
        return paper_jsd(p, q)


DIVERGENCE_METRICS = (PaperJSD, MeanJSD, RetrainFreeJSD)
