"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descent on D_r and ascent on D_f in one loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.api import Conformance, DataAccess, Method, Setting, UnlearnOutcome
from unlearnkit.context import UnlearnContext
from unlearnkit.data import UnlearnData
from unlearnkit.hookspecs import hookimpl
from unlearnkit.loops import endless, no_divergence, step
from unlearnkit.training import raise_if_diverged
from unlearnkit_plugins.methods._loops import SGDOptions, family_defaults, sgd


class NegGradPlusOptions(SGDOptions):
    beta: float = Field(
        0.999, ge=0, le=1, description="beta in beta * CE(D_r batch) - (1 - beta) * CE(D_f batch); 1 = no ascent."
    )


def neggrad_plus_loss(
    logits_r: torch.Tensor, y_r: torch.Tensor, logits_f: torch.Tensor, y_f: torch.Tensor, beta: float
) -> torch.Tensor:
    """beta * CE(D_r batch) - (1 - beta) * CE(D_f batch): the sign is part of the loss that is
    back-propagated, so the optimizer *ascends* the forget loss."""
    return beta * F.cross_entropy(logits_r.float(), y_r) - (1 - beta) * F.cross_entropy(logits_f.float(), y_f)


class NegGradPlus(Method):
    """NegGrad+: minimise beta * CE(D_r batch) - (1 - beta) * CE(D_f batch).

    Kurmanji et al. (2023) strengthen plain negative gradient (ascent on D_f alone, which wrecks
    the model) with a retain term. Each step draws one D_r batch and one D_f batch; an epoch is one
    shuffled pass over D_r, and D_f (usually much smaller) is cycled, re-shuffled on every pass.
    Both forwards run in train mode with the training augmentation. With beta = 1 the forget term
    vanishes and D_f is not read at all: the run is then step for step the ``finetune`` method.

    Hyperparameters (LoTUS paper runs): beta = 0.999, SGD lr 1e-3, momentum 0.9, weight decay
    5e-4, no schedule; ResNet 10 epochs of batch 128, ViT 3 epochs of batch 32.

    Deviation of the public LoTUS code we do not reproduce: it flips the sign of the gradients
    *before* ``backward`` (of the freshly zeroed gradients), so the forget step is plain descent and
    no ascent on D_f happens at all. Here the negative term is part of the loss that is
    back-propagated.
    """

    name = "neggrad_plus"
    algorithm_version = 1
    summary = "NegGrad+ (Kurmanji et al. 2023): beta*CE(D_r) - (1-beta)*CE(D_f) per step."
    paper = (
        "Kurmanji, Triantafillou, Hayes, Triantafillou, Towards Unbounded Machine Unlearning, NeurIPS 2023 (NegGrad+)"
    )
    access = DataAccess.BOTH
    # Tiny data (128 retain, 32 forget images): a memorised D_f has near-zero CE and gradient, so
    # beta = 0.999 needs far more steps than tiny data has; a larger lr and ascent weight show the
    # same effect in 80 steps (beta = 1, plain fine-tuning, forgets about half as much there).
    conformance = Conformance(options={"epochs": 20, "batch_size": 32, "lr": 0.05, "beta": 0.95})
    Options = NegGradPlusOptions

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        return family_defaults(setting)

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        o = self.options
        model.train()
        retain = data.retain
        gen = ctx.generator()
        ascent = o.beta < 1  # beta = 1 has no forget term: D_f is not even read (it is plain fine-tuning)
        forget_batches = endless(data.forget, o.batch_size, gen, o.augment) if ascent else None
        opt = sgd(model, o)
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            diverged = no_divergence(ctx)
            for x_r, y_r in retain.batches(o.batch_size, shuffle=True, augment=o.augment, generator=gen):
                if forget_batches is None:
                    with ctx.autocast():
                        loss = F.cross_entropy(model(x_r).float(), y_r)
                else:
                    x_f, y_f = next(forget_batches)
                    with ctx.autocast():
                        logits_r, logits_f = model(x_r), model(x_f)
                    loss = neggrad_plus_loss(logits_r, y_r, logits_f, y_f, o.beta)
                diverged |= step(opt, loss)
            raise_if_diverged(diverged, f"neggrad_plus (epoch {epoch + 1})")
        return UnlearnOutcome(model.eval())


@hookimpl
def register_methods(register):
    register(NegGradPlus)
