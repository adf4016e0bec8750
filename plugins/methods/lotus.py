"""LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty (Spartalis et al., CVPR 2025,
arXiv 2503.18314), as specified in spec/lotus.md."""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.api import Conformance, DataAccess, Method, Options, Setting, UnlearnOutcome
from unlearnkit.context import UnlearnContext
from unlearnkit.data import Split, UnlearnData, concat
from unlearnkit.hookspecs import hookimpl
from unlearnkit.training import accuracy, make_optimizer, raise_if_diverged, soft_cross_entropy


class LotusOptions(Options):
    alpha: float = Field(2.0, gt=0, description="Temperature scale: tau = exp(alpha * (acc_f - acc_u)).")
    epochs: int = Field(10, ge=1, description="Maximum epochs; LoTUS stops earlier once acc_f < acc_u.")
    batch_size: int = Field(128, ge=1, description="Mini-batch size over D_f ∪ subset(D_r).")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (no schedule).")
    weight_decay: float = Field(5e-4, ge=0, description="AdamW weight decay.")
    retain_fraction: float = Field(0.3, gt=0, le=1, description="Share of D_r drawn once (seeded) for training.")
    target: Literal["gumbel", "softmax"] = Field(
        "gumbel", description="Forget targets: Gumbel-softmax (paper) or plain temperature softmax (ablation)."
    )
    augment: bool = Field(True, description="Apply the dataset's training augmentation to D_f and D_r batches.")


def gumbel(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Independent Gumbel(0, 1) draws: -log(-log U)."""
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def lotus_targets(
    teacher_logits: torch.Tensor,
    is_forget: torch.Tensor,
    tau: float,
    generator: torch.Generator,
    target: str = "gumbel",
) -> torch.Tensor:
    """t = l * softmax((z + G2) / tau) + (1 - l) * one_hot(argmax(z + G1)), G1, G2 ~ Gumbel(0, 1)."""
    z = teacher_logits.float()
    g1 = gumbel(z.shape, generator, z.device)
    g2 = gumbel(z.shape, generator, z.device) if target == "gumbel" else torch.zeros_like(z)
    hard = F.one_hot((z + g1).argmax(1), z.shape[1]).to(z.dtype)
    soft = torch.softmax((z + g2) / tau, dim=1)
    flag = is_forget.to(z.dtype).view(-1, 1)
    return flag * soft + (1 - flag) * hard


def hundredths(value: float) -> int:
    """The paper rounds accuracies to 0.01 before comparing; integers avoid float-equality traps."""
    return int(round(value * 100))


class Lotus(Method):
    """LoTUS smooths the forget-set predictions up to an information-theoretic bound.

    A frozen copy of the original is the teacher; the student (the original, all parameters
    trained) learns from Gumbel-max samples of the teacher on a 30 % subset of D_r and from
    Gumbel-softmax samples at temperature tau = exp(alpha (acc_f - acc_u)) on D_f, where acc_u is the
    teacher's accuracy on the unseen split. Before each epoch, acc_f is re-measured and training
    stops once it falls below acc_u (both rounded to 0.01): D_f should look unseen, not *less*
    certain than unseen (the "Streisand effect"). Labels are never used. Class unlearning uses
    acc_u = 0. Paper defaults per setting come from ``default_options``.
    """

    name = "lotus"
    default = True  # what `unlearnkit run` uses when none is named
    algorithm_version = 1
    summary = "LoTUS (CVPR 2025): Gumbel-softmax smoothing of D_f predictions up to the unseen-data bound."
    paper = "Spartalis et al., LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty, CVPR 2025"
    access = DataAccess.BOTH
    extra_splits = frozenset({"unseen"})
    conformance = Conformance(claim="entropy_forget_up", options={"alpha": 8.0, "lr": 1e-3, "batch_size": 16})
    Options = LotusOptions

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        if setting.model_family == "vit":
            batch = 256 if setting.dataset.startswith("imagenet") else 32
            return {"epochs": 3, "batch_size": batch, "lr": 1e-6, "alpha": 2.0}
        if setting.scenario_rule == "class":
            return {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 32.0}
        return {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 8.0 if setting.dataset == "cifar10" else 2.0}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        opt_ = self.options
        gen = ctx.generator()
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        student = model  # the runner's private copy: trained in place
        forget, retain = data.forget, data.retain
        n_sub = max(1, round(len(retain) * opt_.retain_fraction))
        retain_sub = retain.subset(torch.randperm(len(retain), generator=gen, device=retain.device)[:n_sub])
        acc_u = 0.0 if ctx.forget_class is not None else accuracy(teacher, data.unseen, ctx)
        union, flags = concat(forget, retain_sub, "forget+retain_subset")
        union = Split(union.name, union.x, flags.long(), union.pre)  # the flag rides in place of the label
        opt = make_optimizer(student.parameters(), "adamw", opt_.lr, weight_decay=opt_.weight_decay)
        tau, epochs_run = 1.0, 0
        for _epoch in ctx.track(range(opt_.epochs), total=opt_.epochs, description="epochs"):
            gap = hundredths(accuracy(student, forget, ctx)) - hundredths(acc_u)
            if gap <= -1:
                break  # the bound is reached: D_f is now as uncertain as unseen data
            tau = math.exp(opt_.alpha * gap / 100)
            student.train()
            diverged = torch.zeros((), dtype=torch.bool, device=ctx.device)
            for x, is_forget in union.batches(opt_.batch_size, shuffle=True, augment=opt_.augment, generator=gen):
                with torch.no_grad(), ctx.autocast():
                    z_t = teacher(x)
                t = lotus_targets(z_t, is_forget, tau, gen, opt_.target)
                with ctx.autocast():
                    loss = soft_cross_entropy(student(x), t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                diverged |= ~torch.isfinite(loss.detach())
            raise_if_diverged(diverged, "LoTUS")
            epochs_run += 1
        student.eval()
        return UnlearnOutcome(student, info={"lotus_epochs": epochs_run, "lotus_tau": tau, "lotus_acc_unseen": acc_u})


@hookimpl
def register_methods(register):
    register(Lotus)
