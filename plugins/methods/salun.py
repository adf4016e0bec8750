"""SalUn (Fan et al., ICLR 2024): Random Labeling restricted to the weights most salient for D_f."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.api import Conformance, DataAccess, Method, Setting, UnlearnOutcome
from unlearnkit.context import UnlearnContext
from unlearnkit.data import Split, UnlearnData
from unlearnkit.hookspecs import hookimpl
from unlearnkit.loops import batch_gradients
from unlearnkit.training import make_optimizer, raise_if_diverged
from unlearnkit_plugins.methods._loops import SGDOptions, family_defaults, relabel_epoch


class SalUnOptions(SGDOptions):
    mask_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of all weights updated: the top fraction by |grad CE on D_f| (global)."
    )


def forget_gradient(model: nn.Module, forget: Split, batch_size: int, ctx: UnlearnContext) -> list[torch.Tensor]:
    """grad_theta of the mean cross-entropy over all of D_f (eval mode, no augmentation), in
    batches: each batch contributes the gradient of its *summed* CE divided by |D_f|."""
    n = len(forget)
    total: list[torch.Tensor] | None = None
    loss_fn = lambda z, y: F.cross_entropy(z.float(), y, reduction="sum") / n  # noqa: E731
    batches = ctx.track(
        batch_gradients(model, forget, batch_size, ctx, loss_fn),
        total=forget.num_batches(batch_size),
        description="saliency on D_f",
    )
    for grads in batches:
        if total is None:
            total = grads
        else:
            for t, g in zip(total, grads):
                t.add_(g)
    if total is None:
        raise ValueError("SalUn needs a non-empty forget set")
    return total


def saliency_mask(gradients: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """1 for exactly round(ratio * N) weights with the largest |gradient| over *all* parameters (one
    global threshold), 0 elsewhere; ties at the threshold are broken by position, deterministically.

    The threshold is the k-th largest magnitude (``torch.kthvalue`` over the concatenated
    magnitudes), found on the device without a host sync.
    """
    mags = torch.cat([g.detach().abs().flatten().float() for g in gradients])
    n = mags.numel()
    k = round(ratio * n)
    if k >= n:
        flat = torch.ones_like(mags)
    elif k <= 0:
        flat = torch.zeros_like(mags)
    else:
        threshold = torch.kthvalue(mags, n - k + 1).values  # the k-th largest magnitude
        above = mags > threshold
        ties = mags == threshold
        missing = k - above.sum()  # how many tied weights still belong to the top k
        flat = (above | (ties & (ties.cumsum(0, dtype=torch.int32) <= missing))).float()
    return [m.view_as(g).to(g.dtype) for m, g in zip(flat.split([g.numel() for g in gradients]), gradients)]


class SalUn(Method):
    """SalUn: weight saliency, then Random Labeling on the salient weights only.

    Saliency: g = grad_theta CE(theta_o; D_f), the gradient of the mean cross-entropy over the whole
    forget set at the original weights (eval mode, no augmentation, accumulated over batches). The
    mask m_S is 1 for the ``mask_ratio`` fraction of *all* weights with the largest |g| (one global
    threshold across layers) and 0 elsewhere. Unlearning is then Random Labeling (per epoch: CE on
    D_f with fresh random wrong labels, then a CE pass over D_r) in which *every* update is
    multiplied by m_S, theta_u = theta_o + m_S * delta: the gradients of both passes are masked, and
    so is the weight decay (folded into the gradient before the mask), so masked-out weights stay
    bit-identical. (BatchNorm running statistics are buffers, not weights: they still update.)

    Hyperparameters: mask ratio 0.5 (the SalUn paper's choice; the LoTUS paper used 0.1), SGD
    lr 1e-3, momentum 0.9, weight decay 5e-4, no schedule; ResNet 10 epochs of batch 128, ViT 3
    epochs of batch 32.

    Deviation of the public LoTUS code we do not reproduce: its retain (repair) step is unmasked,
    so it updates all weights.
    """

    name = "salun"
    algorithm_version = 1
    summary = "SalUn (Fan et al. 2024): Random Labeling restricted to the weights most salient for D_f."
    paper = (
        "Fan, Liu, Zhang, Wei, Wong, Liu, SalUn: Empowering Machine Unlearning via Gradient-based Weight "
        "Saliency in Both Image Classification and Generation, ICLR 2024"
    )
    access = DataAccess.BOTH
    # Tiny data: small batches and a larger lr (seeds 0-4: forget accuracy -0.09 to -0.28, retain <= -0.08).
    conformance = Conformance(options={"epochs": 5, "batch_size": 16, "lr": 0.005})
    Options = SalUnOptions

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        return family_defaults(setting)

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        o: SalUnOptions = self.options  # type: ignore[assignment]
        forget, retain = data.forget, data.retain
        masks = saliency_mask(forget_gradient(model, forget, o.batch_size, ctx), o.mask_ratio)
        # weight decay lives in the masked gradient, not in the optimizer (else it would move frozen weights)
        opt = make_optimizer(model.parameters(), "sgd", o.lr, momentum=o.momentum, weight_decay=0.0)
        gen = ctx.generator()
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            diverged = relabel_epoch(
                model,
                forget,
                retain,
                opt,
                ctx,
                num_classes=ctx.num_classes,
                batch_size=o.batch_size,
                generator=gen,
                augment=o.augment,
                masks=masks,
                weight_decay=o.weight_decay,
            )
            raise_if_diverged(diverged, f"salun (epoch {epoch + 1})")
        return UnlearnOutcome(model.eval())


@hookimpl
def register_methods(register):
    register(SalUn)
