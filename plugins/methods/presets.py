"""What the built-in baselines share beyond the public loop helpers: their options, the LoTUS
paper's per-family training budget, the SGD lr range `unlearnkit tune` searches, and SCRUB's
small/large data-size rule. Paper knowledge, not loop code: the loops themselves are public
(``unlearnkit.ce_epoch``, ``relabel_epoch``, ...)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from unlearnkit import LogUniform, Method, Options, Setting, make_optimizer

# ------------------------------------------------------------------------------------ options
# The largest rates an optimiser step on float32 weights takes: torch converts SGD's lr, SGD's and
# Adam's weight decay, and Adam's (AdamW's) first step lr / (1 - beta1) = 10 lr to float32, and stops
# with a traceback beyond (measured: SGD lr 3.5e38, Adam lr 3.5e37), which stopped `--method all`. A
# rate near these diverges at once anyway: the bound refuses a larger one in one line before anything
# trains. (AdamW's decoupled weight decay is not converted: a huge one diverges, a failed row.)
SGD_LR_MAX = 3.4e38
ADAM_LR_MAX = 3.4e37
WEIGHT_DECAY_MAX = 3.4e38


class TrainOptions(Options):
    """What every training-based baseline exposes (LoTUS paper: ResNet18 10 epochs of batch 128,
    ViT-B/16 3 epochs of batch 32; no LR schedule)."""

    epochs: int = Field(10, ge=1, description="Epochs (passes over the method's training data).")
    batch_size: int = Field(128, ge=2, description="Mini-batch size.")
    augment: bool = Field(True, description="Apply the dataset's training augmentation to training batches.")


class SGDOptions(TrainOptions):
    lr: float = Field(1e-3, gt=0, le=SGD_LR_MAX, description="SGD learning rate (no schedule).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=WEIGHT_DECAY_MAX, description="SGD weight decay.")


def family_defaults(setting: Setting) -> dict[str, Any]:
    """The LoTUS runs' per-family budget (``src/bash_scripts/reproduce_results.sh`` of the LoTUS
    code): fine-tuned ViT-B/16 3 epochs of batch 32 (256 on ImageNet-1k), everything else 10 x 128."""
    if setting.model_family == "vit":
        return {"epochs": 3, "batch_size": 256 if setting.dataset == "imagenet" else 32}
    return {"epochs": 10, "batch_size": 128}


def sgd(model: nn.Module, o: SGDOptions) -> torch.optim.Optimizer:
    return make_optimizer(model.parameters(), "sgd", o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


# What `unlearnkit tune` searches for the SGD baselines' lr: a decade either side of the span from the
# LoTUS runs' 1e-3 to their sources' own rates (SCRUB's fine-tuning and NegGrad+ 0.01, SalUn's Random
# Labeling 0.013, UNSIR's 0.01-0.02).
SGD_LR = LogUniform(1e-4, 1e-1)


class LotusBudgetMethod(Method):
    """A baseline whose default epochs and batch size are the LoTUS runs' per-family budget."""

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        return family_defaults(setting)


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
