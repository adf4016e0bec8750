"""``forget_confidence``: how sure the unlearned model still is on the forget set."""

from __future__ import annotations

import unlearnkit as uk


class ForgetConfidence(uk.Metric):
    """Mean over D_f of the top softmax probability of the unlearned model:
    (1/|D_f|) sum_i max_k softmax(z_i)_k. A model that memorised D_f is near 1; the retrained
    model shows the confidence of unseen data. Direction: closer to retrain."""

    name = "forget_confidence"
    summary = "Mean max-softmax of the unlearned model on D_f (closer to retrain is better)."
    algorithm_version = 1  # bump when a change can change the number
    direction = "closer_to_retrain"
    display_order = 45  # after the accuracies (10-40), before the membership attack (50)

    def compute(self, ev: uk.Evaluation) -> float:
        probs = ev.probs("unlearned", "forget")  # cached: no extra forward pass if another metric ran it
        if probs.shape[0] == 0:
            return float("nan")
        return float(probs.max(dim=1).values.mean())
