"""The public loop helpers every method uses, data-parallel forms included: training
(:mod:`.training`: ``fit``, recipes, optimisers, losses) and the epoch building blocks
(:mod:`.helpers`). The face keeps the names ``unlearnkit.loops`` had before 0.3."""

from unlearnkit.loops.helpers import (
    EpochLoss,
    batch_gradients,
    ce_epoch,
    endless,
    endless_parts,
    kl_to_target,
    log_losses,
    mask_gradients_,
    no_divergence,
    per_class_subset,
    random_fraction,
    random_wrong_labels,
    relabel_epoch,
    step,
    trainable,
)

__all__ = [
    "EpochLoss",
    "batch_gradients",
    "ce_epoch",
    "endless",
    "endless_parts",
    "kl_to_target",
    "log_losses",
    "mask_gradients_",
    "no_divergence",
    "per_class_subset",
    "random_fraction",
    "random_wrong_labels",
    "relabel_epoch",
    "step",
    "trainable",
]
