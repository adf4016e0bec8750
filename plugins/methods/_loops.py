"""What the built-in baselines share beyond the public loop helpers (``unlearnkit.loops``): their
options, the LoTUS paper's per-family defaults, SCRUB's small/large data-size rule, the
random-relabelling epoch of Random Labeling and SalUn, and the data-parallel forms of
``ce_epoch``/``endless`` (the ``loops`` ones themselves in a single process)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from unlearnkit import loops
from unlearnkit.api import Options, Setting
from unlearnkit.context import UnlearnContext
from unlearnkit.data import Split
from unlearnkit.ddp import Part
from unlearnkit.loops import EpochLoss, step, trainable
from unlearnkit.training import cross_entropy, make_optimizer


# ------------------------------------------------------------------------------------ options
class TrainOptions(Options):
    """What every training-based baseline exposes (LoTUS paper: ResNet18 10 epochs of batch 128,
    ViT-B/16 3 epochs of batch 32; no LR schedule)."""

    epochs: int = Field(10, ge=1, description="Epochs (passes over the method's training data).")
    batch_size: int = Field(128, ge=2, description="Mini-batch size.")
    augment: bool = Field(True, description="Apply the dataset's training augmentation to training batches.")


class SGDOptions(TrainOptions):
    lr: float = Field(1e-3, gt=0, description="SGD learning rate (no schedule).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay.")


def family_defaults(setting: Setting) -> dict[str, Any]:
    """The LoTUS runs' per-family budget (``src/bash_scripts/reproduce_results.sh`` of the LoTUS
    code): fine-tuned ViT-B/16 3 epochs of batch 32 (256 on ImageNet-1k), everything else 10 x 128."""
    if setting.model_family == "vit":
        return {"epochs": 3, "batch_size": 256 if setting.dataset == "imagenet" else 32}
    return {"epochs": 10, "batch_size": 128}


def sgd(model: nn.Module, o: SGDOptions) -> torch.optim.Optimizer:
    return make_optimizer(model.parameters(), "sgd", o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


# ------------------------------------------------------------------------------- data size
# SCRUB's authors publish two settings (meghdadk/SCRUB, README.md): "small-scale" experiments on
# 500-image subsets (5 classes x 100 images; small_scale_unlearning.ipynb) and "large-scale" ones on
# the full 50,000-image datasets (large_scale_unlearning.ipynb, large_scale_ictest.ipynb). They
# state no rule between the two; ours: small up to 5,000 training images (|D_f| + |D_r|), the
# geometric middle of the two sizes.
SMALL_SCALE_MAX = 5_000
Preset = Literal["auto", "small", "large"]


def data_scale(preset: str, n_train: int) -> Literal["small", "large"]:
    """``preset`` itself, or for ``"auto"`` the scale of a training set of ``n_train`` images."""
    if preset in ("small", "large"):
        return preset  # type: ignore[return-value]
    return "small" if n_train <= SMALL_SCALE_MAX else "large"


# ------------------------------------------------------------------------------ data-parallel
def ce_epoch(
    model: nn.Module,
    split: Split,
    opt: torch.optim.Optimizer,
    ctx: UnlearnContext,
    *,
    batch_size: int,
    generator: torch.Generator,
    augment: bool,
    masks: Sequence[torch.Tensor] | None = None,
    weight_decay: float = 0.0,
) -> EpochLoss:
    """``loops.ce_epoch``, on this rank's part of each global batch when ``ctx.world`` has several
    ranks (log it with ``ddp.log_losses``); ``loops.ce_epoch`` itself in one process."""
    if not ctx.world.active:
        return loops.ce_epoch(
            model,
            split,
            opt,
            ctx,
            batch_size=batch_size,
            generator=generator,
            augment=augment,
            masks=masks,
            weight_decay=weight_decay,
        )
    model.train()
    forward = ctx.parallel(model)
    params = trainable(model)
    losses = EpochLoss(ctx)
    for x, y, _, part in split.sharded_batches(
        batch_size, ctx.world, shuffle=True, augment=augment, generator=generator
    ):
        with ctx.autocast():
            loss = cross_entropy(forward(x).float(), y, part)
        step(opt, loss, masks, params, weight_decay)
        losses.add(loss)
    return losses


def endless(
    split: Split, batch_size: int, generator: torch.Generator, augment: bool, ctx: UnlearnContext
) -> Iterator[tuple[torch.Tensor, torch.Tensor, Part]]:
    """``loops.endless`` with each batch's part: this rank's part on several ranks (same draws)."""
    if len(split) == 0:
        raise ValueError(f"cannot draw batches from the empty split '{split.name}'")
    while True:
        for x, y, _, part in split.sharded_batches(
            batch_size, ctx.world, shuffle=True, augment=augment, generator=generator
        ):
            yield x, y, part


# ------------------------------------------------------------------------------------ targets
def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly from the K-1 wrong classes of each sample: (y + U{1..K-1}) mod K."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def relabel_epoch(
    model: nn.Module,
    forget: Split,
    retain: Split,
    opt: torch.optim.Optimizer,
    ctx: UnlearnContext,
    *,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator,
    augment: bool,
    masks: Sequence[torch.Tensor] | None = None,
    weight_decay: float = 0.0,
) -> tuple[EpochLoss, EpochLoss]:
    """One Random Labeling epoch (shared with SalUn, which passes its saliency ``masks``).

    Every forget sample gets a new label drawn uniformly from its K-1 wrong classes (on the device,
    from the seeded generator), one CE pass over the relabelled D_f follows, then one CE pass over
    D_r. With ``masks`` both passes update only the masked-in weights. Returns the two passes' losses.
    """
    wrong = replace(forget, y=random_wrong_labels(forget.y, num_classes, generator))
    kw = dict(batch_size=batch_size, generator=generator, augment=augment, masks=masks, weight_decay=weight_decay)
    return ce_epoch(model, wrong, opt, ctx, **kw), ce_epoch(model, retain, opt, ctx, **kw)
