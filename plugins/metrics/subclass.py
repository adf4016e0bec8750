"""Sub-class forgetting's three numbers on the test split (``subclass:`` scenarios only).

With ``s`` the forgotten fine class and ``S`` its superclass (the label its images carry), over
the test half of the official test split:

- ``acc_subclass_forget``: accuracy on the test images of ``s``;
- ``acc_superclass_rest``: accuracy on the test images of ``S`` outside ``s``;
- ``acc_other``: accuracy on every test image outside ``S``.

Each is ``(1/N) sum_i [argmax_k z_ik == y_i]`` over its images, the model in eval mode; closer to
the retrained model is better for all three (it never saw ``s``, but generalises to it through the
rest of ``S``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

import unlearnkit as uk
from unlearnkit import Evaluation, Metric


class _SubclassAccuracy(Metric):
    """Top-1 accuracy on one part of the test split, cut by the forgotten sub-class."""

    part: ClassVar[str] = ""
    direction = "closer_to_retrain"
    needs = frozenset({"subclasses"})
    algorithm_version = 1

    def compute(self, ev: Evaluation) -> float:
        ctx = ev.ctx
        fine = ctx.subclasses.get("test") if ctx is not None else None
        if ctx is None or ctx.forget_subclass is None or fine is None:
            return float("nan")
        labels = ev.labels("test")
        in_sub = fine == ctx.forget_subclass
        if not bool(in_sub.any()):
            return float("nan")
        superclass = int(labels[in_sub][0])
        mask = {
            "subclass": in_sub,
            "rest": (labels == superclass) & ~in_sub,
            "other": labels != superclass,
        }[self.part]
        if not bool(mask.any()):
            return float("nan")
        hits = ev.logits("unlearned", "test").argmax(1).cpu() == labels
        return ev.reported(float(hits[mask].to(torch.float64).mean()))


class SubclassForgetAccuracy(_SubclassAccuracy):
    name, part = "acc_subclass_forget", "subclass"
    display_order = 45
    summary = "Top-1 accuracy on the test images of the forgotten sub-class (closer to retrain is better)."


class SuperclassRestAccuracy(_SubclassAccuracy):
    name, part = "acc_superclass_rest", "rest"
    display_order = 46
    summary = "Top-1 accuracy on the test images of its superclass's other sub-classes (closer to retrain)."


class OtherAccuracy(_SubclassAccuracy):
    name, part = "acc_other", "other"
    display_order = 47
    summary = "Top-1 accuracy on the test images outside the forgotten sub-class's superclass (closer to retrain)."


SUBCLASS_METRICS = (SubclassForgetAccuracy, SuperclassRestAccuracy, OtherAccuracy)


@uk.hookimpl
def register_metrics(register):
    for cls in SUBCLASS_METRICS:
        register(cls)
