"""Random Labeling: train D_f towards random wrong labels, then repair on D_r."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import SGD_LR, LotusBudgetMethod, SGDOptions, sgd


class RandomLabelOptions(SGDOptions):
    """Per epoch: CE on D_f with fresh random wrong labels, then CE over D_r (SGD)."""


def random_label_epochs(
    model: nn.Module,
    data: uk.UnlearnData,
    opt: torch.optim.Optimizer,
    ctx: uk.UnlearnContext,
    o: SGDOptions,
    what: str,
    masks: Sequence[torch.Tensor] | None = None,
    weight_decay: float = 0.0,
) -> None:
    """Random Labeling's ``o.epochs`` epochs (``relabel_epoch``: D_f with fresh random wrong labels,
    then D_r), logging ``<what>_forget_loss`` and ``<what>_retain_loss``. SalUn runs the same epochs
    with its saliency ``masks`` (and the ``weight_decay`` they mask)."""
    gen = ctx.generator()
    for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
        forget_loss, retain_loss = uk.relabel_epoch(
            model,
            data.forget,
            data.retain,
            opt,
            ctx,
            num_classes=ctx.num_classes,
            batch_size=o.batch_size,
            generator=gen,
            augment=o.augment,
            masks=masks,
            weight_decay=weight_decay,
        )
        uk.log_losses(ctx, epoch, what, **{f"{what}_forget_loss": forget_loss, f"{what}_retain_loss": retain_loss})


class RandomLabel(LotusBudgetMethod):
    """Random Labeling: fit D_f to random wrong labels, then repair on D_r, every epoch.

    Per epoch: each forget sample gets a label drawn uniformly from its K-1 *wrong* classes
    (re-drawn every epoch, ``(y + U{1..K-1}) mod K`` on the device), one cross-entropy pass over
    the relabelled D_f confuses what the model memorised, and one cross-entropy pass over D_r
    repairs the rest. Both passes are shuffled, augmented and in train mode; their mean losses are
    logged per epoch (``random_label_forget_loss``, ``random_label_retain_loss``). Returned in train
    mode, as the LoTUS code returns it (``src/unlearning_methods/naive_unlearning_class.py``, ``relabel``).

    Hyperparameters, as the LoTUS runs (``naive_unlearning_class.py``, ``reproduce_results.sh``):
    SGD lr 1e-3, momentum 0.9, weight decay 5e-4, no schedule; ResNet 10 epochs of batch 128, ViT
    3 epochs of batch 32 (256 on ImageNet-1k).

    Deliberate deviations from the LoTUS code (``naive_unlearning_class.py``, ``relabel``): the
    labels are drawn on the device from the run's generator (there: Python's ``random``, one
    sample at a time, same distribution); the forget images get fresh crops in every batch (there:
    read once per epoch through the training transform, so each keeps one crop for the epoch);
    bf16 autocast for the forwards on CUDA.
    """

    name = "random_label"
    algorithm_version = 2
    distributed = True  # data-parallel under torchrun: labels drawn for the whole split, alike on every rank
    summary = "Random Labeling: CE on D_f with random wrong labels (re-drawn per epoch), then CE on D_r."
    paper = (
        "Golatkar, Achille, Soatto, Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
        "Networks, CVPR 2020 (random labeling baseline); Graves, Nagisetty, Ganesh, Amnesiac Machine "
        "Learning, AAAI 2021"
    )
    access = uk.DataAccess.BOTH
    # Tiny data: small batches and a larger lr (seeds 0-4: forget accuracy -0.09 to -0.25, retain <= -0.06).
    conformance = uk.Conformance(options={"epochs": 5, "batch_size": 16, "lr": 0.005})
    Options = RandomLabelOptions
    search_space = {"lr": SGD_LR}  # from the LoTUS runs' 1e-3 to SalUn's Random Labeling 0.013, a decade either side

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        random_label_epochs(model, data, sgd(model, self.options), ctx, self.options, "random_label")
        return uk.UnlearnOutcome(model)  # train mode, as the LoTUS code returns it


@uk.hookimpl
def register_methods(register):
    register(RandomLabel)
