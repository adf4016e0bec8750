"""Fine-tuning on the retain set: the simplest baseline (catastrophic forgetting of D_f)."""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearnkit.api import Conformance, DataAccess, Method, Setting, UnlearnOutcome
from unlearnkit.context import UnlearnContext
from unlearnkit.data import UnlearnData
from unlearnkit.hookspecs import hookimpl
from unlearnkit.loops import ce_epoch
from unlearnkit.training import raise_if_diverged
from unlearnkit_plugins.methods._loops import SGDOptions, family_defaults, sgd


class FinetuneOptions(SGDOptions):
    """E epochs of SGD (lr 1e-3, momentum 0.9, weight decay 5e-4) on D_r."""


class Finetune(Method):
    """Fine-tune the original model with cross-entropy on the retain set only.

    D_f is never seen: whatever the model memorised about it fades as training on D_r moves the
    weights ("catastrophic forgetting"). Each epoch is one shuffled, augmented pass over D_r.
    Hyperparameters (as the LoTUS paper ran it): SGD lr 1e-3, momentum 0.9, weight decay 5e-4,
    no schedule; ResNet 10 epochs of batch 128, ViT 3 epochs of batch 32. The public LoTUS code
    does not deviate here.
    """

    name = "finetune"
    algorithm_version = 1
    summary = "Fine-tuning: cross-entropy on the retain set D_r only (catastrophic forgetting)."
    paper = (
        "Golatkar, Achille, Soatto, Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
        "Networks, CVPR 2020 (fine-tuning baseline); as run by Spartalis et al., LoTUS, CVPR 2025"
    )
    access = DataAccess.RETAIN
    # Tiny data (128 retain images, 1x8x8): more epochs, smaller batches and a larger lr so that 80
    # steps show the forgetting 10 CIFAR-scale epochs show (tiny benches of seeds 0-4: forget
    # accuracy falls by 0.09-0.22, retain accuracy does not fall).
    conformance = Conformance(options={"epochs": 20, "batch_size": 32, "lr": 0.05})
    Options = FinetuneOptions

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        return family_defaults(setting)

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        o = self.options
        retain = data.retain
        opt = sgd(model, o)
        gen = ctx.generator()
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            diverged = ce_epoch(model, retain, opt, ctx, batch_size=o.batch_size, generator=gen, augment=o.augment)
            raise_if_diverged(diverged, f"finetune (epoch {epoch + 1})")
        return UnlearnOutcome(model.eval())


@hookimpl
def register_methods(register):
    register(Finetune)
