"""``forget_confidence``: how sure the unlearned model still is on the forget set."""

from __future__ import annotations

from unlearnkit.api import Metric
from unlearnkit.evaluation import Evaluation


class ForgetConfidence(Metric):
    """Mean over D_f of the top softmax probability of the unlearned model:
    (1/|D_f|) sum_i max_k softmax(z_i)_k. A model that memorised D_f is near 1; the retrained
    model shows the confidence of unseen data. Direction: closer to retrain."""

    name = "forget_confidence"
    summary = "Mean max-softmax of the unlearned model on D_f (closer to retrain is better)."
    direction = "closer_to_retrain"

    def compute(self, ev: Evaluation) -> float:
        probs = ev.probs("unlearned", "forget")  # cached: no extra forward pass if another metric ran it
        if probs.shape[0] == 0:
            return float("nan")
        return float(probs.max(dim=1).values.mean())
