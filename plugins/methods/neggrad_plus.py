"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descent on D_r and ascent on D_f in one loss."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import SGD_LR, LotusBudgetMethod, Preset, SGDOptions, data_scale, sgd

# beta as SCRUB's authors ran NegGrad+ (meghdadk/SCRUB): 0.95 in small_scale_unlearning.ipynb
# (500-image subsets), 0.9999 in large_scale_ictest.ipynb and MIA_experiments.ipynb (full CIFAR-10).
BETA = {"small": 0.95, "large": 0.9999}


class NegGradPlusOptions(SGDOptions):
    beta: float | None = Field(
        None,
        ge=0,
        le=1,
        description="beta in beta * CE(D_r batch) - (1 - beta) * CE(D_f batch); 1 = no ascent. "
        "Unset: SCRUB's value for the data size (0.95 small, 0.9999 large).",
    )
    preset: Preset = Field(
        "auto",
        description="Which SCRUB setting gives an unset beta: 'small', 'large', or 'auto' "
        "(small up to 5,000 training images).",
    )


def neggrad_plus_loss(
    logits_r: torch.Tensor,
    y_r: torch.Tensor,
    logits_f: torch.Tensor,
    y_f: torch.Tensor,
    beta: float,
    part_r: uk.Part | None = None,
    part_f: uk.Part | None = None,
) -> torch.Tensor:
    """beta * CE(D_r batch) - (1 - beta) * CE(D_f batch): the sign is part of the loss that is
    back-propagated, so the optimizer *ascends* the forget loss. With parts (one rank's share of
    two global batches), each term is scaled for its own global batch."""
    ce_r, ce_f = uk.cross_entropy(logits_r.float(), y_r, part_r), uk.cross_entropy(logits_f.float(), y_f, part_f)
    return beta * ce_r - (1 - beta) * ce_f


class NegGradPlus(LotusBudgetMethod):
    """NegGrad+: minimise beta * CE(D_r batch) - (1 - beta) * CE(D_f batch).

    Kurmanji et al. (2023) strengthen plain negative gradient (ascent on D_f alone, which wrecks
    the model) with a retain term. Each step draws one D_r batch and one D_f batch; an epoch is one
    shuffled pass over D_r, and D_f (usually much smaller) is cycled, re-shuffled on every pass.
    Both forwards run in train mode with the training augmentation. With beta = 1 the forget term
    vanishes and D_f is not read at all: the run is then step for step the ``finetune`` method.
    ``neggrad_plus_loss`` is logged per epoch and the beta used as ``neggrad_plus_beta``.
    Returned in train mode, as the LoTUS code returns its NegGrad (``naive_unlearning_class.py``,
    ``neggrad``).

    Defaults: beta as SCRUB's authors ran NegGrad+, by data size (``_loops.data_scale``): 0.95 for
    small data (``meghdadk/SCRUB``, ``small_scale_unlearning.ipynb``), 0.9999 for full-size data
    (``large_scale_ictest.ipynb``, ``MIA_experiments.ipynb``). The optimiser and budget are the
    LoTUS runs' (``naive_unlearning_class.py``, ``reproduce_results.sh``): SGD lr 1e-3, momentum
    0.9, weight decay 5e-4, no schedule; ResNet 10 epochs of batch 128, ViT 3 of batch 32 (256 on
    ImageNet-1k). The LoTUS runs have no beta: their NegGrad is not NegGrad+ (below).

    Deliberate deviations:

    * from the LoTUS code (``naive_unlearning_class.py``, ``neggrad``): it flips the sign of the
      freshly zeroed gradients *before* ``backward``, so its "ascent" on D_f is plain descent, and
      it runs a full D_f pass then a full D_r pass. Here the NegGrad+ loss is back-propagated;
    * from SCRUB's ``run_neggrad_epoch`` (``small_scale_unlearning.ipynb``): SGD lr 0.01 without
      momentum, an L2 pull towards the original weights on the retain term, the model in eval
      mode; here the LoTUS runs' SGD, weight decay and train mode;
    * bf16 autocast for the forwards on CUDA.
    """

    name = "neggrad_plus"
    algorithm_version = 2
    distributed = True  # data-parallel under torchrun: both batches are sharded, each term scaled for its own
    summary = "NegGrad+ (Kurmanji et al. 2023): beta*CE(D_r) - (1-beta)*CE(D_f) per step."
    paper = (
        "Kurmanji, Triantafillou, Hayes, Triantafillou, Towards Unbounded Machine Unlearning, NeurIPS 2023 (NegGrad+)"
    )
    access = uk.DataAccess.BOTH
    # Tiny data (128 retain, 32 forget images): a memorised D_f has near-zero CE and gradient, so a
    # large lr shows in 80 steps what 10 CIFAR-scale epochs show; beta is the small-data default
    # (0.95: beta = 1, plain fine-tuning, forgets about half as much there).
    conformance = uk.Conformance(options={"epochs": 20, "batch_size": 32, "lr": 0.05})
    Options = NegGradPlusOptions
    # lr: the LoTUS runs' 1e-3 to SCRUB's 0.01, a decade either side; beta: below SCRUB's 0.95 (small) and
    # 0.9999 (large) down to an even split of descent and ascent (meghdadk/SCRUB notebooks)
    search_space = {"lr": SGD_LR, "beta": uk.Uniform(0.5, 1.0)}

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: NegGradPlusOptions = self.options  # type: ignore[assignment]
        retain = data.retain
        beta = o.beta if o.beta is not None else BETA[data_scale(o.preset, len(data.forget) + len(retain))]
        gen = ctx.generator()
        # beta = 1 has no forget term: D_f is not even read (it is plain fine-tuning)
        forget_batches = uk.endless_parts(data.forget, o.batch_size, gen, o.augment, ctx) if beta < 1 else None
        opt = sgd(model, o)
        model.train()
        forward = ctx.parallel(model)  # the model itself in one process
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            losses = uk.EpochLoss(ctx)
            for x_r, y_r, _, part_r in retain.sharded_batches(
                o.batch_size, ctx.world, shuffle=True, augment=o.augment, generator=gen
            ):
                if forget_batches is None:
                    with ctx.autocast():
                        loss = uk.cross_entropy(forward(x_r).float(), y_r, part_r)
                else:
                    x_f, y_f, part_f = next(forget_batches)
                    with ctx.autocast():
                        logits_r, logits_f = forward(x_r), forward(x_f)
                    loss = neggrad_plus_loss(logits_r, y_r, logits_f, y_f, beta, part_r, part_f)
                uk.step(opt, loss)
                losses.add(loss)
            uk.log_losses(ctx, epoch, "neggrad_plus", neggrad_plus_loss=losses)
        return uk.UnlearnOutcome(model, info={"neggrad_plus_beta": beta})  # train mode, as the LoTUS code


@uk.hookimpl
def register_methods(register):
    register(NegGradPlus)
