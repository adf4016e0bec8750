"""EU-k (Goel et al. 2022): exact unlearning of the last k layers — re-initialise them and train only
them on D_r, so nothing above the frozen features has seen D_f."""

from __future__ import annotations

from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.cf_k import LastKMethod, layers, split_last


def reinitialise_last(model: nn.Module, fresh: nn.Module, k: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """Copy the last k layers' parameters and buffers from ``fresh`` (a newly initialised network
    of the same architecture) into ``model``; returns (frozen layers, reset layers) of ``model``."""
    frozen, reset = split_last(model, k)
    fresh_layers = dict(layers(fresh))
    for name, module in layers(model)[len(frozen) :]:
        module.load_state_dict(fresh_layers[name].state_dict())
    return frozen, reset


class EUk(LastKMethod):
    """EU-k: re-initialise the last k layers, then train only them on D_r.

    The exact counterpart of ``cf_k``: where CF-k fine-tunes the top layers from the original's
    weights, EU-k starts them from a fresh initialisation (the architecture's own, drawn from the
    run seed through ``ctx.new_model()``), so if the frozen features held nothing of D_f the result
    would be a retrained model of the top. Layers are counted as in ``cf_k`` (k = 3 on ResNet-18:
    ``layer4`` and ``fc``); every parameter and buffer below them is bit-identical afterwards.
    Logged per epoch: ``eu_k_loss``; ``eu_k_trained_params`` as a final value. Returned in train mode.

    Defaults as ``cf_k``'s: k = 3, SGD lr 0.01, momentum 0.9, weight decay 5e-4, the LoTUS runs'
    budget (ResNet 10 epochs of batch 128, ViT 3 of batch 32, 256 on ImageNet-1k).

    Deliberate deviations: as ``cf_k``'s — our layer rule and k, and a fine-tuning budget rather
    than Goel et al.'s retraining schedule for the reset layers (at 10 epochs a reset ResNet stage
    does not reach the original's accuracy; ``unlearnkit tune`` may raise ``epochs``).
    """

    name = "eu_k"
    algorithm_version = 1
    distributed = True  # data-parallel under torchrun; the fresh layers are drawn alike on every rank
    summary = "EU-k (Goel et al. 2022): re-initialise the last k layers and train only them on D_r."
    # conformance (the head alone, reset and trained at finetune's tiny-data budget), options and search
    # space: as cf_k's

    def last_k(self, model: nn.Module, ctx: uk.UnlearnContext) -> tuple[list[nn.Module], list[nn.Module]]:
        return reinitialise_last(model, ctx.new_model(), self.options.k)  # the last k start afresh


@uk.hookimpl
def register_methods(register):
    register(EUk)
