"""The building blocks every training loop here shares, public for plugin authors.

Same discipline as ``unlearnkit.loops.training``: data and losses stay on the device, a divergence
flag is accumulated per step and checked once per epoch (``raise_if_diverged``), autocast wraps
every forward pass, and nothing loops over samples in Python.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import NotRequired, TypedDict, Unpack

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.data import Split
from unlearnkit.errors import DivergenceError
from unlearnkit.loops.training import cross_entropy
from unlearnkit.parallel.torchrun import Part


# ------------------------------------------------------------------------------- fresh weights
@torch.no_grad()
def reinitialise_(model: nn.Module) -> nn.Module:
    """Give every parameter a fresh random value, in place: ``reset_parameters()`` of each module
    that has one (convolutions, linear layers, norms; BatchNorm statistics too), and a truncated
    normal (std 0.02, as timm initialises them) for parameters no module resets (ViT class token
    and position embedding). Bad Teacher's incompetent teacher and a notebook's ``ctx.new_model()``
    are networks made this way."""
    covered: set[int] = set()
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in module.parameters(recurse=False))
    for p in model.parameters():
        if id(p) not in covered:
            nn.init.trunc_normal_(p, std=0.02)
    return model


# -------------------------------------------------------------------------------------- steps
def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer updates, in ``model.parameters()`` order (masks align with it)."""
    return [p for p in model.parameters() if p.requires_grad]


def no_divergence(ctx: UnlearnContext) -> torch.Tensor:
    """A device-side flag to OR ``~isfinite(loss)`` into; checked once per epoch."""
    return torch.zeros((), dtype=torch.bool, device=ctx.device)


def mask_gradients_(params: Sequence[nn.Parameter], masks: Sequence[torch.Tensor], weight_decay: float) -> None:
    """grad <- (grad + weight_decay * p) * mask, so masked-out weights get no update at all.

    Weight decay is folded in *before* the mask (the optimizer then runs without its own), else
    the optimizer would still shrink the weights the mask is meant to freeze.
    """
    for p, m in zip(params, masks):
        if p.grad is not None:
            if weight_decay:
                p.grad.add_(p.detach(), alpha=weight_decay)
            p.grad.mul_(m)


def step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    masks: Sequence[torch.Tensor] | None = None,
    params: Sequence[nn.Parameter] | None = None,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    """zero_grad, backward, (mask), step; returns ``~isfinite(loss)`` as a device tensor."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if masks is not None:
        assert params is not None, "masked steps need the parameter list the masks align with"
        mask_gradients_(params, masks, weight_decay)
    opt.step()
    return ~torch.isfinite(loss.detach())


class EpochLoss:
    """The step losses of one epoch (or phase), summed on the device: no host sync per step.

    ``log_losses`` reads them once per epoch, logs the means as per-epoch series and fails on a
    non-finite one (a NaN or inf step loss makes the sum non-finite: the divergence check).
    """

    def __init__(self, ctx: UnlearnContext) -> None:
        self.total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        self.steps = 0
        self.world = ctx.world

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().double()
        self.steps += 1

    def diverged(self) -> torch.Tensor:
        """True (a device flag) if any step loss on any rank was NaN or infinite: what
        ``raise_if_diverged`` reads."""
        return (self.world.sum((~torch.isfinite(self.total)).double().reshape(1)) > 0).reshape(())

    def __bool__(self) -> bool:
        """Refused: an object is always truthy, so ``if loss:`` would report a divergence every epoch."""
        raise TypeError(
            "An EpochLoss is not a divergence flag: pass it to uk.log_losses(ctx, epoch, what, name=loss), "
            "which logs its mean and checks it, or to uk.raise_if_diverged(loss, what)."
        )


def log_losses(ctx: UnlearnContext, epoch: int, what: str, **losses: EpochLoss) -> None:
    """``ctx.log(name, mean step loss, epoch)`` for every phase that ran (one host sync for all);
    raise ``DivergenceError`` if any loss was not finite.

    On several ranks (``ctx.world``) each ``EpochLoss`` holds what this rank back-propagated: the
    ranks' totals are summed first (one all-reduce), so every rank logs the global batches' mean
    losses and a NaN on any rank stops all of them."""
    if not all(isinstance(loss, EpochLoss) for loss in losses.values()):
        wrong = ", ".join(f"{k}={type(v).__name__}" for k, v in losses.items() if not isinstance(v, EpochLoss))
        raise TypeError(f"log_losses takes the EpochLoss values the epoch loops return, not {wrong}")
    ran = {name: loss for name, loss in losses.items() if loss.steps}
    if not ran:
        return
    if ctx.world.active:  # the same phases ran on every rank
        totals = ctx.world.sum(torch.stack([loss.total for loss in ran.values()])) / ctx.world.size
        for loss, total in zip(ran.values(), totals):
            loss.total = total
    means = torch.stack([loss.total / loss.steps for loss in ran.values()]).tolist()
    if not all(math.isfinite(m) for m in means):
        raise DivergenceError(f"{what} (epoch {epoch + 1}) diverged: the loss became NaN or infinite.")
    for name, mean in zip(ran, means):
        ctx.log(name, mean, epoch)


class EpochOptions(TypedDict):
    """The keywords of :func:`ce_epoch`, which :func:`relabel_epoch` hands to both of its passes."""

    batch_size: int
    generator: torch.Generator
    augment: bool
    masks: NotRequired[Sequence[torch.Tensor] | None]
    weight_decay: NotRequired[float]


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
    """One shuffled cross-entropy pass over ``split`` in train mode; returns its summed losses
    (``log_losses`` logs them and checks them for divergence, once per epoch).

    With ``masks`` (aligned with ``trainable(model)``) the gradients, weight decay included, are
    masked before each step (SalUn); the optimizer must then have no weight decay of its own.
    When ``ctx.world`` has several ranks, each trains on its part of every global batch (the same
    draws on every rank) through ``ctx.parallel(model)``.
    """
    model.train()
    params = trainable(model)
    losses = EpochLoss(ctx)
    if not ctx.world.active:
        for x, y in split.batches(batch_size, shuffle=True, augment=augment, generator=generator):
            with ctx.autocast():
                loss = F.cross_entropy(model(x).float(), y)
            step(opt, loss, masks, params, weight_decay)
            losses.add(loss)
        return losses
    forward = ctx.parallel(model)
    for x, y, _, part in split.sharded_batches(
        batch_size, ctx.world, shuffle=True, augment=augment, generator=generator
    ):
        with ctx.autocast():
            loss = cross_entropy(forward(x).float(), y, part)
        step(opt, loss, masks, params, weight_decay)
        losses.add(loss)
    return losses


def endless(
    split: Split, batch_size: int, generator: torch.Generator, augment: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches for ever, re-shuffled on every pass (to cycle the smaller of two splits)."""
    if len(split) == 0:
        raise ValueError(f"cannot draw batches from the empty split '{split.name}'")
    while True:
        yield from split.batches(batch_size, shuffle=True, augment=augment, generator=generator)


def endless_parts(
    split: Split, batch_size: int, generator: torch.Generator, augment: bool, ctx: UnlearnContext
) -> Iterator[tuple[torch.Tensor, torch.Tensor, Part]]:
    """:func:`endless` with each batch's :class:`Part`: on several ranks this rank's part of every
    global batch (the same draws on every rank); in one process the whole batch."""
    if len(split) == 0:
        raise ValueError(f"cannot draw batches from the empty split '{split.name}'")
    while True:
        for x, y, _, part in split.sharded_batches(
            batch_size, ctx.world, shuffle=True, augment=augment, generator=generator
        ):
            yield x, y, part


# ------------------------------------------------------------------------------- relabelling
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
    **epoch: Unpack[EpochOptions],
) -> tuple[EpochLoss, EpochLoss]:
    """One Random Labeling epoch (SalUn passes its saliency ``masks``).

    Every forget sample gets a new label drawn uniformly from its K-1 wrong classes (on the device,
    from the seeded generator), one CE pass over the relabelled D_f follows, then one CE pass over
    D_r, both :func:`ce_epoch` with the same ``epoch`` options. With ``masks`` both passes update
    only the masked-in weights. Returns the two passes' losses.
    """
    wrong = replace(forget, y=random_wrong_labels(forget.y, num_classes, epoch["generator"]))
    return ce_epoch(model, wrong, opt, ctx, **epoch), ce_epoch(model, retain, opt, ctx, **epoch)


def kl_to_target(student_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(target || softmax(student / T)), summed over classes, averaged over the batch."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, target.float(), reduction="batchmean")


# ---------------------------------------------------------------------------------- subsets
def random_fraction(split: Split, fraction: float, generator: torch.Generator, name: str | None = None) -> Split:
    """A seeded random ``fraction`` of ``split`` (at least one sample)."""
    n = max(1, round(len(split) * fraction))
    return split.subset(torch.randperm(len(split), generator=generator, device=split.device)[:n], name)


def per_class_subset(split: Split, per_class: int, generator: torch.Generator, name: str | None = None) -> Split:
    """Up to ``per_class`` random samples of every class (seeded), vectorised: shuffle, stable-sort
    by label, keep each sample whose rank within its class is below ``per_class``."""
    n = len(split)
    perm = torch.randperm(n, generator=generator, device=split.device)
    labels, order = torch.sort(split.y[perm], stable=True)
    first = torch.searchsorted(labels, labels)  # index of the first sample of each sample's class
    rank = torch.arange(n, device=split.device) - first
    keep = perm[order[rank < per_class]]
    return split.subset(keep.sort().values, name)


# -------------------------------------------------------------------------------- gradients
def batch_gradients(
    model: nn.Module,
    split: Split,
    batch_size: int,
    ctx: UnlearnContext,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    autocast: bool = True,
) -> Iterator[list[torch.Tensor]]:
    """For each batch of ``split`` in order (no shuffle, no augmentation, eval mode), the gradients
    of ``loss_fn(logits, y)`` (default: mean cross-entropy) w.r.t. the trainable parameters, in
    ``trainable(model)`` order. Nothing is written to ``.grad`` and BatchNorm statistics stay.
    ``autocast=False`` keeps the forwards in full precision on CUDA too (a gradient that feeds a
    solve rather than a training step)."""
    loss_fn = loss_fn or (lambda z, y: F.cross_entropy(z.float(), y))
    params = trainable(model)
    was_training = model.training
    model.eval()
    try:
        for x, y in split.batches(batch_size):
            with ctx.autocast() if autocast else contextlib.nullcontext():
                logits = model(x)
            grads = torch.autograd.grad(loss_fn(logits, y), params, allow_unused=True)
            yield [torch.zeros_like(p) if g is None else g.float() for p, g in zip(params, grads)]
    finally:
        model.train(was_training)
