"""Boundary Expanding (Chen et al., CVPR 2023): widen the classifier by one shadow class, train D_f
into it, then prune the shadow output again."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.batching import GlobalShare, forward_batches
from unlearnkit_plugins.methods.boundary_shrink import BOUNDARY_LR, BoundaryMethod, BoundaryOptions
from unlearnkit_plugins.methods.presets import sgd

SHADOW_STREAM = 1  # the shadow row's draw: a generator stream of its own, so the batch order is shrink's


class BoundaryExpandOptions(BoundaryOptions):
    """E epochs of SGD on D_f towards the shadow class K (lr 1e-5, momentum 0.9), then the shadow is pruned."""


def classifier_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """The classifier: the last ``nn.Linear`` (in ``model.modules()`` order) with ``num_classes``
    outputs; a one-line ``ValueError`` naming the model when it has none."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise ValueError(
            f"boundary_expand needs a final nn.Linear with {num_classes} outputs (one per class) to widen; "
            f"model {type(model).__name__} has none."
        )
    return heads[-1]


def shadow_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every forget sample's target: the shadow class, index ``num_classes`` (K) of the widened head."""
    return torch.full_like(y, num_classes)


@dataclass
class Widened:
    """A head widened in place by one shadow output, and its own parameters, to put back."""

    head: nn.Linear
    weight: nn.Parameter
    bias: nn.Parameter | None


def widen(head: nn.Linear, generator: torch.Generator) -> Widened:
    """Give ``head`` K + 1 outputs in place: rows 0..K-1 are its own weights and biases, row K (the
    shadow class) is drawn as the authors' ``init_params`` initialises a linear layer, Xavier-normal
    weights (std sqrt(2 / (in + K + 1))) and a zero bias. The module stays the same object, so every
    name in the model stays; only its parameters are replaced until :func:`prune`."""
    w = head.weight
    k, d = w.shape
    std = math.sqrt(2.0 / (d + k + 1))
    shadow = torch.randn(1, d, generator=generator, device=w.device, dtype=torch.float32).to(w.dtype) * std
    old = Widened(head, w, head.bias)
    head.weight = nn.Parameter(torch.cat([w.detach(), shadow]), requires_grad=w.requires_grad)
    if old.bias is not None:
        b = old.bias
        head.bias = nn.Parameter(torch.cat([b.detach(), b.new_zeros(1)]), requires_grad=b.requires_grad)
    head.out_features = k + 1
    return old


def prune(widened: Widened) -> None:
    """Drop the shadow output: the trained rows 0..K-1 are copied into the head's own parameters,
    which are put back (same objects, same names and shapes as before :func:`widen`)."""
    head = widened.head
    k = widened.weight.shape[0]
    with torch.no_grad():
        widened.weight.copy_(head.weight[:k])
        if widened.bias is not None:
            widened.bias.copy_(head.bias[:k])
    head.weight = widened.weight
    head.bias = widened.bias
    head.out_features = k


class BoundaryExpand(BoundaryMethod):
    """Boundary Expanding: train the forget class into an extra shadow class, then cut it off.

    The classifier, the last ``nn.Linear`` with ``ctx.num_classes`` outputs (``classifier_head``;
    a model without one is refused in one line), is widened in place by one output, the shadow
    class K: its rows 0..K-1 are the original's, the shadow row is freshly initialised
    (Xavier-normal weights, zero bias, as the authors' ``init_params``). The whole widened network
    is then fine-tuned (train mode, SGD) with cross-entropy towards label K on every forget
    sample, so D_f moves into the shadow's decision region; D_r is never read. Last, the shadow
    output is pruned: the trained rows 0..K-1 (not the original ones) are written back into the
    head's own parameters, so the returned network has the original architecture, class count,
    state-dict keys and shapes. Without the shadow, D_f falls to whichever real class is nearest.

    Logged per epoch: ``boundary_expand_loss``; reported: ``boundary_expand_shadow`` (the share of
    forget samples the widened model put in the shadow class in the last epoch's training
    forwards). Returned in train mode, as the authors' code leaves it.

    Defaults, the authors' code (``TY-LEE-KR/Boundary-Unlearning-Code``, ``boundary_unlearning.py``,
    ``boundary_expanding``; ``main.py``; ``trainer.py``, ``optimizer_picker``): SGD lr 1e-5,
    momentum 0.9, no weight decay, no schedule, 10 epochs over D_f in batches of 64, no
    augmentation, every parameter trained, the same for every model family.

    Deliberate deviations:

    * from the authors' code: it hard-codes AllCNN's head (``features``/``classifier``, 96 inputs,
      10 classes) and builds a new ``nn.Sequential``; here any model's last K-output linear layer
      is widened in place and pruned back, so the network keeps its class and names;
    * its first step runs before ``widen_model.train()`` (in the mode the original was left in);
      here every step is in train mode;
    * from ``OPTML-Group/Unlearn-Saliency`` (``Classification/unlearn/boundary_ex.py``): it keeps
      the K + 1 outputs (no pruning) and initialises the shadow row as ``nn.Linear`` does; here
      the authors' pruning and initialisation;
    * the shadow row is drawn from the run's generator; bf16 autocast for the forwards on CUDA.
    """

    name = "boundary_expand"
    algorithm_version = 1
    distributed = (
        True  # data-parallel under torchrun: the D_f batches are sharded, the head widened alike on every rank
    )
    summary = (
        "Boundary Expanding (Chen et al. 2023): widen the head by one shadow class, train D_f into it, "
        "then prune the shadow output."
    )
    Options = BoundaryExpandOptions
    search_space = {"lr": BOUNDARY_LR}  # the authors' 1e-5 (boundary_unlearning.py), a decade either side

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: BoundaryExpandOptions = self.options
        k = ctx.num_classes
        head = classifier_head(model, k)  # refused before any data is read
        forget = data.forget
        widened = widen(head, ctx.generator(SHADOW_STREAM))
        opt = sgd(model, o)
        gen = ctx.generator()
        model.train()
        forward = ctx.parallel(model)  # the widened model itself in one process
        shadow = GlobalShare(ctx)  # the forget samples put in the shadow class, in the last epoch
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            losses = uk.EpochLoss(ctx)
            shadow.reset()
            for logits, y, part in forward_batches(forward, forget, o.batch_size, o.augment, ctx, gen):
                loss = uk.cross_entropy(logits.float(), shadow_labels(y, k), part)
                uk.step(opt, loss)
                losses.add(loss)
                shadow.add(logits.detach().argmax(1) == k)
            uk.log_losses(ctx, epoch, "boundary_expand", boundary_expand_loss=losses)
        ctx.release(model)  # unwrapped (several ranks) before the head changes shape again
        prune(widened)
        return uk.UnlearnOutcome(model, info={"boundary_expand_shadow": shadow.share()})  # train mode


@uk.hookimpl
def register_methods(register):
    register(BoundaryExpand)
