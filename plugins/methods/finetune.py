"""Fine-tuning on the retain set: the simplest baseline (catastrophic forgetting of D_f)."""

from __future__ import annotations

from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import SGD_LR, LotusBudgetMethod, SGDOptions, sgd


class FinetuneOptions(SGDOptions):
    """E epochs of SGD (lr 1e-3, momentum 0.9, weight decay 5e-4) on D_r."""


class Finetune(LotusBudgetMethod):
    """Fine-tune the original model with cross-entropy on the retain set only.

    D_f is never seen: whatever the model memorised about it fades as training on D_r moves the
    weights ("catastrophic forgetting"). Each epoch is one shuffled, augmented pass over D_r in
    train mode; ``finetune_loss`` (mean step loss) is logged per epoch. Returned in train mode, as
    the LoTUS code returns it (``src/unlearning_methods/naive_unlearning_class.py``, ``finetune``).

    Hyperparameters, as the LoTUS runs (``naive_unlearning_class.py``, ``reproduce_results.sh``):
    SGD lr 1e-3, momentum 0.9, weight decay 5e-4, no schedule; ResNet 10 epochs of batch 128, ViT
    3 epochs of batch 32 (256 on ImageNet-1k).

    Deliberate deviations:

    * from the LoTUS code: none in the update; bf16 autocast for the forwards on CUDA (float32
      there); the dataset's augmentation also for a pretrained ViT, whose official transform has
      no crop (``src/helpers/data_utils.py``);
    * from SCRUB's fine-tuning baseline (``meghdadk/SCRUB``, ``small_scale_unlearning.ipynb``,
      ``finetune``: SGD lr 0.01 without momentum, an L2 pull towards the original weights, model
      in eval mode): the LoTUS runs' optimiser and train mode are used instead.
    """

    name = "finetune"
    algorithm_version = 2
    distributed = True  # data-parallel under torchrun (docs/distributed.md)
    summary = "Fine-tuning: cross-entropy on the retain set D_r only (catastrophic forgetting)."
    paper = (
        "Golatkar, Achille, Soatto, Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
        "Networks, CVPR 2020 (fine-tuning baseline); as run by Spartalis et al., LoTUS, CVPR 2025"
    )
    access = uk.DataAccess.RETAIN
    # Tiny data (128 retain images, 1x8x8): more epochs, smaller batches and a larger lr so that 80
    # steps show the forgetting 10 CIFAR-scale epochs show (tiny benches of seeds 0-4: forget
    # accuracy falls by 0.09-0.22, retain accuracy does not fall).
    conformance = uk.Conformance(options={"epochs": 20, "batch_size": 32, "lr": 0.05})
    Options = FinetuneOptions
    search_space = {"lr": SGD_LR}  # from the LoTUS runs' 1e-3 to SCRUB's fine-tuning 0.01, a decade either side

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o = self.options
        retain = data.retain
        opt = sgd(model, o)
        gen = ctx.generator()
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            loss = uk.ce_epoch(model, retain, opt, ctx, batch_size=o.batch_size, generator=gen, augment=o.augment)
            uk.log_losses(ctx, epoch, "finetune", finetune_loss=loss)
        return uk.UnlearnOutcome(model)  # train mode, as the LoTUS code returns it


@uk.hookimpl
def register_methods(register):
    register(Finetune)
