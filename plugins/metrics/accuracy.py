"""Top-1 accuracy on each split: ``acc_forget``, ``acc_retain``, ``acc_test``, ``acc_unseen``."""

from __future__ import annotations

from typing import ClassVar

from unlearnkit.api import Metric
from unlearnkit.evaluation import Evaluation


class _SplitAccuracy(Metric):
    """Acc = (1/N) sum_i [argmax_k z_ik == y_i] of the model in eval mode. Direction: closer to retrain."""

    split: ClassVar[str] = ""
    direction = "closer_to_retrain"

    def compute(self, ev: Evaluation) -> float:
        logits = ev.logits("unlearned", self.split)
        if logits.shape[0] == 0:
            return float("nan")
        return float((logits.argmax(1).cpu() == ev.labels(self.split)).double().mean())


class ForgetAccuracy(_SplitAccuracy):
    name, split = "acc_forget", "forget"
    summary = "Top-1 accuracy on the forget set D_f (closer to retrain is better)."


class RetainAccuracy(_SplitAccuracy):
    name, split = "acc_retain", "retain"
    summary = "Top-1 accuracy on the retain set D_r (closer to retrain is better)."


class TestAccuracy(_SplitAccuracy):
    name, split = "acc_test", "test"
    summary = "Top-1 accuracy on the test half of the official test split (closer to retrain is better)."


class UnseenAccuracy(_SplitAccuracy):
    name, split = "acc_unseen", "unseen"
    summary = "Top-1 accuracy on the unseen half of the official test split (LoTUS's reference)."


ACCURACY_METRICS = (ForgetAccuracy, RetainAccuracy, TestAccuracy, UnseenAccuracy)
