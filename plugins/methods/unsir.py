"""UNSIR (Tarun et al., IEEE TNNLS 2023): impair with error-maximising noise, then repair."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import (
    ADAM_LR_MAX,
    SGD_LR,
    WEIGHT_DECAY_MAX,
    SGDOptions,
    family_defaults,
    sgd,
)


class UnsirOptions(SGDOptions):
    epochs: int = Field(
        10,
        ge=1,
        description="Epochs of noise, impair and repair. Every setting's default: 1 (UNSIR's own); "
        "the paper-* recipes pin the LoTUS runs' 10 (ResNet) or 3 (ViT).",
    )
    weight_decay: float = Field(0.0, ge=0, le=WEIGHT_DECAY_MAX, description="SGD weight decay.")
    noise_steps: int = Field(
        40, ge=1, description="Adam steps that maximise the error of each noise batch (UNSIR: 5 x 8; LoTUS runs: 1)."
    )
    noise_lr: float = Field(
        0.1, gt=0, le=ADAM_LR_MAX, description="Adam learning rate of the noise (UNSIR: 0.1; LoTUS runs: 0.01)."
    )
    noise_l2: float = Field(
        0.1, ge=0, description="lambda of the noise regulariser: maximise CE - lambda * mean ||noise||^2."
    )
    retain_per_class: int = Field(
        1000, ge=1, description="Retain subset: at most this many samples per class (100 for >= 100 classes)."
    )


def error_maximising_noise(
    model: nn.Module,
    labels: torch.Tensor,
    like: torch.Tensor,
    ctx: uk.UnlearnContext,
    *,
    steps: int,
    lr: float,
    l2: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise shaped like ``like`` that maximises CE(model(noise), labels) - l2 * mean ||noise||^2.

    One noise sample per label, all optimised at once on the device: N(0, 1) initialisation from
    ``generator`` (in the model's normalised input space), then ``steps`` Adam steps. The model runs
    in eval mode (BatchNorm is not fed the noise) and only the noise receives gradients. Returns the
    detached noise and the objective before each step (a device tensor of length ``steps``).
    """
    was_training = model.training
    model.eval()
    noise = torch.empty(like.shape, dtype=torch.float32, device=like.device).normal_(generator=generator)
    noise.requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    trace = torch.empty(steps, device=like.device)
    for i in range(steps):
        with ctx.autocast():
            logits = model(noise)
        objective = F.cross_entropy(logits.float(), labels) - l2 * noise.square().flatten(1).sum(1).mean()
        (grad,) = torch.autograd.grad(-objective, noise)  # gradient *ascent* on the objective
        noise.grad = grad
        opt.step()
        trace[i] = objective.detach()
    model.train(was_training)
    return noise.detach(), trace


def noise_labels(forget_labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """The labels of UNSIR's noise: each class of D_f, min(its forget count, ``per_class``) times, sorted."""
    classes, counts = torch.unique(forget_labels, return_counts=True)
    return torch.repeat_interleave(classes, counts.clamp(max=per_class))


def class_noise(
    model: nn.Module, forget: uk.Split, ctx: uk.UnlearnContext, o: UnsirOptions, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """UNSIR's noise: one error-maximising batch per class present in D_f, ``(noise, labels)``.

    A class with n forget samples gets min(n, ``o.batch_size``) noise samples (UNSIR: one batch per
    forgotten class; the cap keeps D_f's class proportions for instance-wise forget sets), each
    optimised once. The classes' batches are optimised side by side, in chunks of at most
    ``o.batch_size`` samples, not in one short Adam run per class (a thousand of them on
    ImageNet-1k): in eval mode no sample changes another's output, and Adam's step does not depend
    on the scale of a sample's gradient (only through its epsilon), so each class's samples move as
    its own run would move them. Only D_f's labels and the shape of one preprocessed sample are
    read, never an image's content.
    """
    like, _ = next(forget.batches(1))
    labels = noise_labels(forget.y, o.batch_size)
    noises = []
    for y in labels.split(o.batch_size):
        noise, _ = error_maximising_noise(
            model,
            y,
            like.expand(len(y), *like.shape[1:]),
            ctx,
            steps=o.noise_steps,
            lr=o.noise_lr,
            l2=o.noise_l2,
            generator=generator,
        )
        noises.append(noise)
    return torch.cat(noises), labels


def noise_batches(
    noise: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The noise in batches of exactly ``batch_size`` for ever: each pass over it a fresh shuffle, a
    batch running on into the next pass, so every sample is drawn as often as any other."""
    pending = torch.empty(0, dtype=torch.long, device=labels.device)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(len(labels), generator=generator, device=labels.device)])
        sel, pending = pending[:batch_size], pending[batch_size:]
        yield noise[sel], labels[sel]


def impair_batches(n_forget: int, n_retain: int, batch_size: int) -> tuple[int, int, int]:
    """``(steps, noise per batch, retain per batch)`` of one impair pass.

    UNSIR's impair set is the noise standing in for D_f at D_f's size (its notebook repeats each
    forgotten class's 256-sample noise batch 20 times: 5,120 samples for a 5,000-image class) next to
    the retain subset, one epoch over both: ceil((n_forget + n_retain) / batch_size) steps, each batch
    holding the two in their overall proportion (the ceiling of each share), so a step costs one
    batch, not a noise batch plus a retain one.
    """
    steps = -(-(n_forget + n_retain) // batch_size)
    return steps, -(-n_forget // steps), -(-n_retain // steps)


class Unsir(uk.Method):
    """UNSIR: impair the model with error-maximising noise for D_f's labels, then repair on D_r.

    Retain subset: at most ``retain_per_class`` samples of every class of D_r (1000, or 100 for
    datasets with >= 100 classes), drawn once, seeded. Each epoch has three phases:

    * noise, against the model as it stands: for every class present in D_f (the forgotten class
      for class forgetting), one batch of min(n_c, ``batch_size``) noise samples labelled with that
      class (n_c: its forget samples), optimised to *maximise* the classification error,
      CE(model(noise), c) - lambda ||noise||^2 (``noise_steps`` Adam steps at ``noise_lr``, eval
      mode). Re-learnt each epoch: a noise the model has been trained on no longer impairs it;
    * impair: one pass over the noise standing in for D_f at D_f's size (|D_f| draws, every noise
      sample as often as any other) and the retain subset together, each SGD step of cross-entropy
      on a batch holding the two in proportion, which damages what ties those labels to D_f-like
      inputs. UNSIR's impair set is the same: each class's noise batch repeated (20 x 256, about a
      CIFAR-10 class) next to the retain samples;
    * repair: one cross-entropy pass over the retain subset.

    The forget images themselves are never fed to the model: only their labels and shapes. Logged
    per epoch: ``unsir_impair_loss``, ``unsir_repair_loss``; ``unsir_retain_subset`` (its size) as a
    final value. Returned in train mode, as the LoTUS code returns it (``src/unlearning_methods/unsir_class.py``, ``unlearn``).

    Defaults: the noise as UNSIR optimises it (``vikram2000b/Fast-Machine-Unlearning``,
    ``Machine Unlearning.ipynb``: Adam lr 0.1 for 5 x 8 = 40 steps, lambda = 0.1; also
    ``vikram2000b/bad-teaching-unlearning``, ``unlearn.py``, ``UNSIR_noise_train``), and UNSIR's
    budget: one impair and one repair epoch. The model's optimiser and batch are the LoTUS runs'
    (``unsir_class.py``, ``reproduce_results.sh``): SGD lr 1e-3, momentum 0.9, no weight decay, no
    schedule; batch 128 (MUFAC 64), ViT 16 (ImageNet-1k 64). The LoTUS runs trained UNSIR for the
    budget of every baseline (ResNet 10 epochs, ViT 3): the ``paper-*`` recipes pin it.

    Deliberate deviations:

    * from the LoTUS code (``unsir_class.py``): its 5-step noise loop only recomputes the loss,
      so the noise takes one Adam step at lr 0.01; it fits the noise to the forget logits (MSE),
      labels it with the retain batch's labels and clamps it to [0, 1] in normalised space; its
      impair phase stops at the shorter loader and skips partial batches; its retain subset is
      the first 1000 (100) per class in dataset order; it makes a new noise batch for every
      forget batch. Here the noise maximises the error of D_f's labels and carries them, and is
      learnt once per class per epoch, as in UNSIR;
    * from UNSIR's code: a class's noise batch has min(n_c, batch size) samples, not a fixed 256,
      and the impair set draws |D_f| of them, so an instance-wise forget set keeps its class
      proportions and size; the noise is optimised against the model in eval mode (the notebook's
      freshly loaded model is in train mode, so its BatchNorm statistics absorb the noise); the
      model trains with the LoTUS runs' SGD (UNSIR: Adam lr 0.02 impair, 0.01 repair); the retain
      subset is a seeded random draw, not the first samples of each class;
    * bf16 autocast for the forwards on CUDA.
    """

    name = "unsir"
    algorithm_version = 4
    summary = "UNSIR (Tarun et al. 2023): impair with error-maximising noise + retain subset, then repair."
    paper = (
        "Tarun, Chundawat, Mandal, Kankanhalli, Fast Yet Effective Machine Unlearning, IEEE Transactions "
        "on Neural Networks and Learning Systems, 2023 (UNSIR)"
    )
    access = uk.DataAccess.BOTH
    # Tiny data (32 forget images, a 128-image retain subset, so a fifth of each impair batch is noise): small
    # batches, 4 epochs at lr 0.005, UNSIR's 40 noise steps (tiny benches of seeds 0-4: forget accuracy -0.03
    # to -0.19, retain >= -0.07, test >= -0.07; at the default lr 1e-3 forget accuracy does not move on 3 of 5
    # seeds, at one epoch retain falls with it, by up to 0.21).
    conformance = uk.Conformance(options={"epochs": 4, "batch_size": 16, "lr": 0.005, "noise_steps": 40})
    Options = UnsirOptions
    # lr: the LoTUS runs' 1e-3 and UNSIR's 0.01-0.02, a decade either side; noise_steps: the LoTUS runs' 1 to
    # UNSIR's 5 x 8 = 40; noise_lr: the LoTUS runs' 0.01 to UNSIR's 0.1 (Fast-Machine-Unlearning notebook)
    search_space = {
        "lr": SGD_LR,
        "noise_steps": uk.IntRange(1, 40, log=True),
        "noise_lr": uk.LogUniform(1e-2, 1e-1),
    }

    @classmethod
    def default_options(cls, setting: uk.Setting) -> dict[str, Any]:
        # UNSIR's own schedule, one impair and one repair epoch; the LoTUS runs' (ResNet 10, ViT 3) is pinned
        # by the paper-* recipes' [options.unsir]
        defaults = {
            **family_defaults(setting),
            "epochs": 1,
            "retain_per_class": 100 if setting.num_classes >= 100 else 1000,
        }
        # the LoTUS runs' smaller UNSIR batches (reproduce_results.sh: ViT 16, ImageNet-1k 64, MUFAC 64)
        if setting.model_family == "vit":
            defaults["batch_size"] = 64 if setting.dataset == "imagenet" else 16
        elif setting.dataset == "mufac":
            defaults["batch_size"] = 64
        return defaults

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: UnsirOptions = self.options  # type: ignore[assignment]
        forget = data.forget
        gen = ctx.generator()
        retain_sub = uk.per_class_subset(data.retain, o.retain_per_class, gen, "retain_subset")
        opt = sgd(model, o)
        impair_steps, per_noise, per_retain = impair_batches(len(forget), len(retain_sub), o.batch_size)
        retain_batches = uk.endless(retain_sub, per_retain, gen, augment=o.augment)
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            # learnt once per epoch against the model as it stands, then reused by every impair step: a
            # noise the model has already been trained on no longer impairs it
            noise_bank = noise_batches(*class_noise(model, forget, ctx, o, gen), per_noise, gen)
            impair = uk.EpochLoss(ctx)
            for _ in range(impair_steps):
                noise, y_n = next(noise_bank)
                x_r, y_r = next(retain_batches)
                model.train()
                with ctx.autocast():
                    logits = model(torch.cat([noise.to(x_r.dtype), x_r]))
                loss = F.cross_entropy(logits.float(), torch.cat([y_n, y_r]))
                uk.step(opt, loss)
                impair.add(loss)
            repair = uk.ce_epoch(model, retain_sub, opt, ctx, batch_size=o.batch_size, generator=gen, augment=o.augment)
            uk.log_losses(ctx, epoch, "unsir", unsir_impair_loss=impair, unsir_repair_loss=repair)
        # train mode, as the LoTUS code returns it
        return uk.UnlearnOutcome(model, info={"unsir_retain_subset": float(len(retain_sub))})


@uk.hookimpl
def register_methods(register):
    register(Unsir)
