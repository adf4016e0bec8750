"""What a model's training cost, in units that compare across machines and recipes.

Every reference training logs, beside its wall time, the images it consumed per second and the
floating-point operations it took, so an estimate (``--estimate``) and a throughput table
(``benchmarks/ensemble.py``) read measured figures rather than guesses. FLOPs are counted by
torch's own ``FlopCounterMode`` on one forward and backward of two training images (the
convolutions and matrix products it knows; element-wise work is not counted), then scaled by the
images the recipe trains on: a figure of the architecture and the recipe, not of the machine.
"""

from __future__ import annotations

import copy
import math

import torch.nn.functional as F
from torch import nn

from unlearnkit.api.data import Split
from unlearnkit.loops.training import TrainRecipe, drops_single


def ready_to_time() -> None:
    """Import what torch loads the first time a process builds an optimizer (``torch._dynamo``: 2-3
    s on a CPU) before a clock starts. Otherwise the first method, or the first training, of every
    process is charged for it, and its ``time_s`` and ``rte`` do not compare with the next one's."""
    import torch._dynamo  # noqa: F401


def images_trained(split: Split, recipe: TrainRecipe) -> int:
    """Images ``fit`` forwards over the recipe: every epoch the whole split (a last single image dropped)."""
    return recipe.epochs * (len(split) - int(drops_single(split, recipe)))


def flops_per_image(model: nn.Module, split: Split) -> float:
    """Training FLOPs (forward and backward) of one image, counted on a copy of ``model``; NaN
    when torch cannot count them (an empty split, an operator without a formula)."""
    if len(split) == 0:
        return math.nan
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).train()  # its BatchNorm statistics move, not the model's
    x, y = next(split.batches(min(2, len(split))))
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            F.cross_entropy(probe(x).float(), y).backward()
    except Exception:  # noqa: BLE001 - counting is a report, never a reason for a training to fail
        return math.nan
    return counter.get_total_flops() / len(y)


def throughput(model: nn.Module, split: Split, recipe: TrainRecipe, seconds: float) -> dict[str, float]:
    """The metrics a reference training run logs beside ``train_time_s`` (its own seconds, or its
    share of a packed training's): images per second and the training's FLOPs."""
    images = images_trained(split, recipe)
    per_s = images / seconds if seconds > 0 and math.isfinite(seconds) else math.nan
    out = {"train_images": float(images), "train_images_per_s": per_s}
    flops = flops_per_image(model, split)
    if math.isfinite(flops):
        out["train_flops"] = flops * images
    return out
