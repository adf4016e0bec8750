"""Top-1 accuracy on each split: ``acc_forget``, ``acc_retain``, ``acc_test``, ``acc_unseen``."""

from __future__ import annotations

from typing import ClassVar

from unlearnkit import Evaluation, Metric


class _SplitAccuracy(Metric):
    """Acc = (1/N) sum_i [argmax_k z_ik == y_i] of the model in eval mode. Direction: closer to retrain.

    ``clean`` protocol: clean images, unrounded. ``paper`` protocol: forget and retain through the
    training augmentation (after the membership pass has run), rounded to 0.01 (docs/protocols.md).
    """

    split: ClassVar[str] = ""
    direction = "closer_to_retrain"
    algorithm_version = 1

    def compute(self, ev: Evaluation) -> float:
        logits = ev.logits("unlearned", self.split)
        if logits.shape[0] == 0:
            return float("nan")
        return ev.reported(float((logits.argmax(1).cpu() == ev.labels(self.split)).double().mean()))


class ForgetAccuracy(_SplitAccuracy):
    name, split = "acc_forget", "forget"
    display_order, shown_by_default, in_avg_gap = 10, True, True
    summary = "Top-1 accuracy on the forget set D_f (closer to retrain is better)."


class RetainAccuracy(_SplitAccuracy):
    name, split = "acc_retain", "retain"
    display_order, shown_by_default, in_avg_gap = 20, True, True
    summary = "Top-1 accuracy on the retain set D_r (closer to retrain is better)."


class TestAccuracy(_SplitAccuracy):
    name, split = "acc_test", "test"
    display_order, shown_by_default, in_avg_gap = 30, True, True
    summary = "Top-1 accuracy on the test half of the official test split (closer to retrain is better)."


class UnseenAccuracy(_SplitAccuracy):
    name, split = "acc_unseen", "unseen"
    display_order = 40
    summary = "Top-1 accuracy on the unseen half of the official test split (LoTUS's reference)."


ACCURACY_METRICS = (ForgetAccuracy, RetainAccuracy, TestAccuracy, UnseenAccuracy)
