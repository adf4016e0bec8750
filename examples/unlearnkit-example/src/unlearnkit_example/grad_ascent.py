"""``grad_ascent_plus``: gradient ascent on the forget set, held in place by descent on the retain set."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
import unlearnkit as uk
from pydantic import Field
from torch import nn


class GradAscentPlusOptions(uk.Options):
    """Hyperparameters; every field has a description, shown by ``unlearnkit show method grad_ascent_plus``."""

    epochs: int = Field(3, ge=1, description="Passes over the retain set D_r.")
    batch_size: int = Field(128, ge=1, description="Mini-batch size, for D_r and D_f batches alike.")
    lr: float = Field(0.01, gt=0, description="SGD learning rate (no schedule).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay.")
    ascent_weight: float = Field(
        0.3, ge=0, description="lambda in CE(D_r batch) - lambda * CE(D_f batch): how hard to push D_f away."
    )
    augment: bool = Field(True, description="Apply the dataset's training augmentation to both batches.")


class GradAscentPlus(uk.Method):
    """Gradient ascent on the forget set with a retain term.

    Per step: loss = CE(model(x_r), y_r) - lambda * CE(model(x_f), y_f) on one D_r batch and one
    D_f batch (D_f cycles, as it is the smaller set), minimised with SGD for ``epochs`` passes over
    D_r. Ascent alone destroys the model within a few steps; the retain term is what keeps retain
    and test accuracy. Unbounded ascent can still blow up with a large lr: the loss is checked for
    NaN/inf once per epoch and the run fails cleanly instead of logging garbage.

    The defaults (SGD lr 0.01, lambda 0.3, 3 epochs; lambda 0.1 for class unlearning) were picked
    on ``digits`` / ``cnn`` with the ``fast`` training recipe, where they move forget accuracy and
    MIA toward the retrained model at a small cost in retain accuracy; they are an example's
    defaults, not tuned ones.
    """

    name = "grad_ascent_plus"
    summary = "Gradient ascent on D_f plus cross-entropy on D_r (example third-party method)."
    paper = "Example method from the unlearnkit-example package (cf. NegGrad+, Kurmanji et al. 2023)"
    # Enters the identity of every cached run: bump it whenever a change here can change a number
    # (the loss, the loop, a default), so results of the old code are never reused for the new.
    algorithm_version = 1
    access = uk.DataAccess.BOTH  # reads D_f and D_r; reading any other split would raise
    # What unlearnkit.testing.check_method verifies on tiny data (160 images, 1x8x8): forget accuracy
    # falls below the original's while retain accuracy falls by at most 0.15. Tiny data needs bigger
    # steps to show the effect in a second; chosen with margin: on tiny benches of seeds 0-4 forget
    # accuracy falls by >= 0.09 while retain accuracy falls by <= 0.03.
    conformance = uk.Conformance(
        claim="acc_forget_down",
        retain_tolerance=0.15,
        options={"epochs": 8, "batch_size": 32, "lr": 0.01, "ascent_weight": 0.2},
    )
    Options = GradAscentPlusOptions

    @classmethod
    def default_options(cls, setting: uk.Setting) -> dict[str, Any]:
        """Per-setting defaults, applied under the user's ``-o`` overrides."""
        if setting.model_family == "vit":  # fine-tuned ViT-B/16: small batches, tiny steps
            return {"epochs": 3, "batch_size": 32, "lr": 1e-4}
        if setting.scenario_rule == "class":  # a whole class goes at once: a lighter push keeps D_r intact
            return {"ascent_weight": 0.1}
        return {}

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> nn.Module:
        # `model` is the runner's private train-mode copy of the original: train it in place.
        o = self.options
        forget, retain = data.forget, data.retain
        gen = ctx.generator()  # seeded from the run seed: same seed, same weights
        forget_batches = uk.endless(forget, o.batch_size, gen, o.augment)  # D_f cycles, re-shuffled per pass
        opt = uk.make_optimizer(model.parameters(), "sgd", o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            diverged = uk.no_divergence(ctx)  # a flag on the device: no host sync per step
            for x_r, y_r in retain.batches(o.batch_size, shuffle=True, augment=o.augment, generator=gen):
                x_f, y_f = next(forget_batches)
                with ctx.autocast():
                    loss = F.cross_entropy(model(x_r), y_r) - o.ascent_weight * F.cross_entropy(model(x_f), y_f)
                diverged |= uk.step(opt, loss)  # zero_grad, backward, step; returns ~isfinite(loss)
            uk.raise_if_diverged(diverged, f"grad_ascent_plus (epoch {epoch + 1})")  # one sync per epoch
        return model  # in train mode, as it ends; the `clean` evaluation protocol switches it to eval
