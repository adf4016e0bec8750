"""SalUn (Fan et al., ICLR 2024): Random Labeling restricted to the weights most salient for D_f."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import SGD_LR, SGD_LR_MAX, SGDOptions, family_defaults
from unlearnkit_plugins.methods.random_label import random_label_epochs


class SalUnOptions(SGDOptions):
    lr: float = Field(0.013, gt=0, le=SGD_LR_MAX, description="SGD learning rate (no schedule).")
    mask_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of all weights updated: the top fraction by |grad CE on D_f| (global)."
    )


def forget_gradient(model: nn.Module, forget: uk.Split, batch_size: int, ctx: uk.UnlearnContext) -> list[torch.Tensor]:
    """grad_theta of the mean cross-entropy over all of D_f (eval mode, no augmentation), in
    batches: each batch contributes the gradient of its *summed* CE divided by |D_f|."""
    n = len(forget)
    total: list[torch.Tensor] | None = None
    loss_fn = lambda z, y: F.cross_entropy(z.float(), y, reduction="sum") / n  # noqa: E731
    batches = ctx.track(
        uk.batch_gradients(model, forget, batch_size, ctx, loss_fn),
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


class SalUn(uk.Method):
    """SalUn: weight saliency, then Random Labeling on the salient weights only.

    Saliency: g = grad_theta CE(theta_o; D_f), the gradient of the mean cross-entropy over the whole
    forget set at the original weights (eval mode, no augmentation, accumulated over batches). The
    mask m_S is 1 for the ``mask_ratio`` fraction of *all* weights with the largest |g| (one global
    threshold across layers) and 0 elsewhere. Unlearning is then Random Labeling (per epoch: CE on
    D_f with fresh random wrong labels, then a CE pass over D_r) in which *every* update is
    multiplied by m_S, theta_u = theta_o + m_S * delta: the gradients of both passes are masked, and
    so is the weight decay (folded into the gradient before the mask), so masked-out weights stay
    bit-identical. (BatchNorm running statistics are buffers, not weights: they still update.)

    Logged per epoch: ``salun_forget_loss``, ``salun_retain_loss``. Returned in train mode, as
    the LoTUS code returns it (``src/unlearning_methods/salun_class.py``, ``salun_with_relabel``).

    Hyperparameters, SalUn's own for Random Labeling with mask ratio 0.5 on CIFAR-10
    (``OPTML-Group/Unlearn-Saliency``, ``Classification/README.md``: ``--unlearn_lr 0.013``,
    ``mask/with_0.5.pt``; ``arg_parser.py``: momentum 0.9, weight decay 5e-4): mask ratio 0.5,
    SGD lr 0.013, momentum 0.9, weight decay 5e-4, no schedule. A fine-tuned ViT keeps the LoTUS
    runs' lr 1e-3 (SalUn publishes no ViT classification setting). Epochs and batch are the
    LoTUS runs' (``reproduce_results.sh``): ResNet 10 of batch 128, ViT 3 of batch 32 (256 on
    ImageNet-1k).

    Deliberate deviations:

    * from the LoTUS code (``salun_class.py``): its retain (repair) step is unmasked, so it updates
      all weights; its mask ratio is 0.1 and its lr 1e-3; its saliency gradient reads D_f through
      the training transform (crops for ResNet), ours clean images;
    * from SalUn's code (``Classification/unlearn/RL.py``, ``generate_mask.py``): labels are drawn
      from the K-1 wrong classes (SalUn: any of the K, possibly the true one); D_f and D_r are
      always two sequential passes (SalUn: one shuffled loader over both for CIFAR-100 and
      Tiny-ImageNet); masked-out weights never move because weight decay is folded into the masked
      gradient (SalUn restores them to their original values and zeroes their momentum after every
      step: the same weights result); batch 128 (SalUn 256); ``round(ratio n)`` weights selected;
    * bf16 autocast for the forwards on CUDA.
    """

    name = "salun"
    algorithm_version = 2
    summary = "SalUn (Fan et al. 2024): Random Labeling restricted to the weights most salient for D_f."
    paper = (
        "Fan, Liu, Zhang, Wei, Wong, Liu, SalUn: Empowering Machine Unlearning via Gradient-based Weight "
        "Saliency in Both Image Classification and Generation, ICLR 2024"
    )
    access = uk.DataAccess.BOTH
    # Tiny data: small batches and a larger lr (seeds 0-4: forget accuracy -0.09 to -0.28, retain <= -0.08).
    conformance = uk.Conformance(options={"epochs": 5, "batch_size": 16, "lr": 0.005})
    Options = SalUnOptions
    # lr: the LoTUS runs' 1e-3 to SalUn's 0.013 (Unlearn-Saliency README), a decade either side; mask_ratio:
    # the 0.1 to 0.9 of SalUn's released masks (mask/with_0.1.pt ... with_0.9.pt)
    search_space = {"lr": SGD_LR, "mask_ratio": uk.Uniform(0.1, 0.9)}

    @classmethod
    def default_options(cls, setting: uk.Setting) -> dict[str, Any]:
        # SalUn publishes no ViT classification setting: a fine-tuned ViT keeps the LoTUS runs' lr
        return {**family_defaults(setting), **({"lr": 1e-3} if setting.model_family == "vit" else {})}

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: SalUnOptions = self.options  # type: ignore[assignment]
        masks = saliency_mask(forget_gradient(model, data.forget, o.batch_size, ctx), o.mask_ratio)
        # weight decay lives in the masked gradient, not in the optimizer (else it would move frozen weights)
        opt = uk.make_optimizer(model.parameters(), "sgd", o.lr, momentum=o.momentum, weight_decay=0.0)
        random_label_epochs(model, data, opt, ctx, o, "salun", masks=masks, weight_decay=o.weight_decay)
        return uk.UnlearnOutcome(model)  # train mode, as the LoTUS code returns it


@uk.hookimpl
def register_methods(register):
    register(SalUn)
