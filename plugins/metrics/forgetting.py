"""Per-run forgetting scores from the unlearning literature: ``tow`` and ``relearn_time``.

Both need only the run's own models (no ensemble): they sit on every leaderboard row.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit import Evaluation, Metric, Options, Split, predict_logits, step

TOW_SPLITS = ("forget", "retain", "test")
RELEARN_STREAM = 0x52454C  # the relearning batches' generator stream: apart from every method's draws


def split_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``logits`` against ``labels`` (NaN for an empty split)."""
    if logits.shape[0] == 0:
        return float("nan")
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def tug_of_war(unlearned: dict[str, float], retrained: dict[str, float]) -> float:
    """ToW = prod over forget / retain / test of (1 - |acc_unlearned - acc_retrained|)."""
    return math.prod(1.0 - abs(unlearned[s] - retrained[s]) for s in TOW_SPLITS)


class TugOfWar(Metric):
    """ToW (Zhao et al., NeurIPS 2024, "What makes unlearning hard and what to do about it"): the
    product over D_f, D_r and test of one minus the absolute accuracy gap to the retrained model.
    1 is a perfect match on all three; one bad split pulls the product down whatever the other two
    do (the "tug of war" between forgetting and keeping utility). Accuracies are read as the
    ``acc_*`` columns read them (the protocol's passes), unrounded. Higher is better."""

    name = "tow"
    algorithm_version = 1
    display_order, shown_by_default = 35, True
    needs = frozenset({"retrained"})
    summary = "Tug-of-war: prod over forget/retain/test of 1 - |acc gap to retrain| (higher is better)."
    direction = "higher"

    def compute(self, ev: Evaluation) -> float:
        def accuracies(role: str) -> dict[str, float]:
            return {s: split_accuracy(ev.logits(role, s), ev.labels(s)) for s in TOW_SPLITS}

        return tug_of_war(accuracies("unlearned"), accuracies("retrained"))


class RelearnOptions(Options):
    """How the relearning probe fine-tunes a copy of the model on D_f."""

    lr: float = Field(0.01, gt=0, description="SGD learning rate of the relearning steps.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    batch_size: int = Field(32, ge=1, description="Forget-set images per relearning step.")
    max_steps: int = Field(100, ge=1, description="Steps before the probe gives up (the value is then max_steps).")
    tolerance: float = Field(0.0, ge=0, le=1, description="Back means acc_forget >= original's - tolerance.")


def relearn_steps(
    model: torch.nn.Module,
    forget: Split,
    target: float,
    options: RelearnOptions,
    generator: torch.Generator,
) -> int:
    """Steps of SGD on ``forget`` (shuffled, no augmentation, train mode) until the model's clean
    eval-mode accuracy on it reaches ``target``; 0 if it already does, ``max_steps`` if it never does.
    ``model`` is trained in place: pass a copy."""
    y = forget.y

    def back() -> bool:
        acc = (predict_logits(model, forget).argmax(1) == y).double().mean()
        return float(acc) >= target - 1e-12

    if back():
        return 0
    opt = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=options.momentum)
    steps = 0
    while True:
        for x, labels in forget.batches(options.batch_size, shuffle=True, augment=False, generator=generator):
            model.train()
            step(opt, F.cross_entropy(model(x).float(), labels))
            steps += 1
            if back():
                return steps
            if steps >= options.max_steps:
                return options.max_steps


class RelearnTime(Metric):
    """Relearn time (Golatkar et al. 2020; ERASURE): how many steps of fine-tuning on D_f bring the
    model's forget accuracy back to the original's. A model that only *hides* D_f relearns it in a
    step or two; a retrained one needs as many steps as learning new data. The probe runs on a copy
    (SGD lr 0.01, momentum 0.9, batch 32, clean images, seeded order), checks clean eval-mode
    accuracy on the whole of D_f after every step, and stops at ``max_steps`` (a value equal to
    ``max_steps`` means "not back within the budget"). Independent of the evaluation protocol.
    The original scores 0 by definition. Closer to retrain."""

    name = "relearn_time"
    algorithm_version = 1
    display_order, shown_by_default, display_digits = 95, True, 1
    needs = frozenset({"original"})
    summary = "Fine-tuning steps on D_f until forget accuracy is back to the original's (closer to retrain)."
    direction = "closer_to_retrain"
    Options = RelearnOptions

    def compute(self, ev: Evaluation) -> float:
        forget = ev.splits["forget"]
        if len(forget) == 0:
            return float("nan")
        o: RelearnOptions = self.options
        original, unlearned = ev.models.get("original"), ev.models.get("unlearned")
        if original is None or unlearned is None:
            return float("nan")
        target = split_accuracy(predict_logits(original, forget), forget.y) - o.tolerance
        probe = copy.deepcopy(unlearned)  # never the evaluated model itself: the other metrics read it
        device = ev.ctx.device
        # The probe's dropout draws from torch's global generator: fork it, so that the rows evaluated
        # after this one (and their methods) draw exactly what they drew without the probe; seed it, so
        # the probe itself is deterministic.
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            torch.manual_seed(ev.ctx.seed * 1_000_003 + RELEARN_STREAM)
            steps = relearn_steps(probe, forget, target, o, ev.ctx.generator(offset=RELEARN_STREAM))
        del probe
        return float(steps)


FORGETTING_METRICS = (TugOfWar, RelearnTime)
