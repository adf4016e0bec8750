"""Gradient ascent on the forget set (pure NegGrad): maximise the cross-entropy of D_f, D_r unread."""

from __future__ import annotations

from pydantic import Field
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.batching import forward_batches
from unlearnkit_plugins.methods.presets import SGD_LR_MAX, WEIGHT_DECAY_MAX, Preset, data_scale


class GAOptions(uk.Options):
    epochs: int = Field(5, ge=1, description="Epochs (shuffled passes over D_f).")
    batch_size: int | None = Field(
        None, ge=2, description="Mini-batch size (forget samples per step). Unset: 256 (large data), 32 (small)."
    )
    augment: bool = Field(True, description="Apply the dataset's training augmentation to the forget batches.")
    lr: float | None = Field(
        None, gt=0, le=SGD_LR_MAX, description="SGD learning rate (no schedule). Unset: 1e-4 (large), 3e-3 (small)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=WEIGHT_DECAY_MAX, description="SGD weight decay.")
    preset: Preset = Field(
        "auto",
        description="Which setting gives an unset lr and batch size: 'large' (OPTML's CIFAR-10 values), 'small', "
        "or 'auto' (small up to 500 forget images).",
    )


# (lr, batch size) per data scale: OPTML's CIFAR-10 values, and ours for small data (see GA's docstring)
SETTINGS = {"large": (1e-4, 256), "small": (3e-3, 32)}


def forget_scale(preset: str, n_forget: int) -> str:
    """``preset``, or for ``"auto"`` the data scale judged from D_f alone (GA never reads D_r): small
    up to a tenth of the small-data bound of 5,000 training images, i.e. the forget set of a 10 %
    random scenario on small data."""
    return data_scale(preset, n_forget * 10)


class GA(uk.Method):
    """Gradient ascent: every step *descends* -CE(D_f batch), so the forget loss rises.

    Each epoch is one shuffled, augmented pass over D_f in train mode; the retain set is never
    read, which is what separates it from ``neggrad_plus`` (its beta * CE(D_r) term: beta = 0
    there would be this update, on D_r's epoch structure) and from the example package's
    ``grad_ascent_plus`` (ascent plus a retain term). Nothing stops the ascent but the budget: it
    is the field's lower bound on "forgetting by damage". Logged per epoch: ``ga_forget_loss``,
    the mean CE on the forget batches *before* each step (it rises); ``ga_lr`` and
    ``ga_batch_size`` (the preset's or the given ones) as final values. Returned in train mode, as
    the reference code leaves it.

    Hyperparameters, OPTML-Group's GA for CIFAR-10 / ResNet-18 (``Unlearn-Sparse`` and
    ``Unlearn-Saliency``, ``README.md``: ``--unlearn GA --unlearn_lr 0.0001 --unlearn_epochs 5``;
    ``arg_parser.py``: SGD momentum 0.9, weight decay 5e-4, batch 256; ``unlearn/GA.py``: the loss
    is ``-criterion(output, target)``), the same for every family (no ViT setting is published):
    SGD lr 1e-4, batch 256, 5 epochs: with CIFAR-10's 4,500 forget images, 90 steps.

    Small data (``preset``; ``auto``: at most 500 forget images): a memorised D_f has near-zero
    cross-entropy and gradient, and 5 steps of 1e-4 (150 digits in batches of 256) move nothing
    (measured: forget accuracy 0.993 -> 1.000 on digits). Ours, not a published value: batch 32
    and lr 3e-3, which on digits (seeds 0-2, ``--model cnn``) lowers forget accuracy by 0.03-0.17
    with retain accuracy within 0.06; at lr 1e-2 the ascent destroys the model (all splits ~0.1).

    Deliberate deviations:

    * the reference's loader over D_f has the training transform; so has this one (``augment``),
      and its lr schedule is off for GA (``--unlearn_lr`` without decay): none here;
    * bf16 autocast for the forwards on CUDA.
    """

    name = "ga"
    algorithm_version = 1
    distributed = True  # data-parallel under torchrun: D_f batches are sharded, each part scaled for the global batch
    summary = "Gradient ascent (NegGrad): maximise cross-entropy on the forget set D_f; D_r is never read."
    paper = (
        "Golatkar, Achille, Soatto, Eternal Sunshine of the Spotless Net, CVPR 2020 (NegGrad); as run by "
        "Jia et al., Model Sparsity Can Simplify Machine Unlearning, NeurIPS 2023"
    )
    access = uk.DataAccess.FORGET
    # Tiny data (32 forget images): 2 epochs of batch 8 at lr 1e-3 (8 steps; seeds 0-3: forget accuracy
    # -0.03 to -0.06, retain within 0.06). Ascent alone damages D_r as fast as D_f on data this small.
    conformance = uk.Conformance(options={"epochs": 2, "batch_size": 8, "lr": 1e-3})
    Options = GAOptions
    # lr: the reference's 1e-4 (OPTML README), a decade either side
    search_space = {"lr": uk.LogUniform(1e-5, 1e-3)}

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: GAOptions = self.options
        forget = data.forget
        default_lr, default_batch = SETTINGS[forget_scale(o.preset, len(forget))]
        lr, batch_size = o.lr or default_lr, o.batch_size or default_batch
        opt = uk.make_optimizer(model.parameters(), "sgd", lr, momentum=o.momentum, weight_decay=o.weight_decay)
        gen = ctx.generator()
        model.train()
        forward = ctx.parallel(model)  # the model itself in one process
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            losses = uk.EpochLoss(ctx)
            for logits, y, part in forward_batches(forward, forget, batch_size, o.augment, ctx, gen):
                ce = uk.cross_entropy(logits.float(), y, part)
                uk.step(opt, -ce)  # ascent: the optimiser descends the negated forget loss
                losses.add(ce.detach())
            uk.log_losses(ctx, epoch, "ga", ga_forget_loss=losses)
        return uk.UnlearnOutcome(model, info={"ga_lr": lr, "ga_batch_size": float(batch_size)})  # train mode


@uk.hookimpl
def register_methods(register):
    register(GA)
