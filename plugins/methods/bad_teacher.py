"""Bad Teacher (Chundawat et al., AAAI 2023): distil D_r from the original, D_f from a random net."""

from __future__ import annotations

import copy

import torch
from pydantic import Field
from torch import nn

import unlearnkit as uk
from unlearnkit_plugins.methods.presets import ADAM_LR_MAX, WEIGHT_DECAY_MAX, LotusBudgetMethod, TrainOptions

INCOMPETENT_SEED_OFFSET = 7_919  # the incompetent teacher's init depends on the run seed only


class BadTeacherOptions(TrainOptions):
    lr: float = Field(1e-4, gt=0, le=ADAM_LR_MAX, description="Adam learning rate (no schedule).")
    weight_decay: float = Field(0.0, ge=0, le=WEIGHT_DECAY_MAX, description="Adam weight decay.")
    temperature: float = Field(1.0, gt=0, description="KL temperature T for both teachers and the student.")
    retain_fraction: float = Field(0.3, gt=0, le=1, description="Share of D_r drawn once (seeded) for training.")


def incompetent_teacher(ctx: uk.UnlearnContext) -> nn.Module:
    """A randomly initialised network of the original's architecture, frozen, in eval mode.

    ``ctx.model_factory()`` (what ``ctx.new_model()`` builds) gives the architecture; its
    parameters are then re-initialised, because the
    model factory builds a pretrained ViT-B/16 backbone (``--pretrained``) or loads ``--weights``,
    which would make the "incompetent" teacher competent (the LoTUS-code deviation). Everything
    runs under a private RNG seeded from the run seed, so it is the same network for the same seed
    whatever ran before, and the global RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # built and initialised on the CPU, then moved
        torch.manual_seed(ctx.seed * 1_000_003 + INCOMPETENT_SEED_OFFSET)
        bad = uk.reinitialise_(ctx.model_factory().cpu())
    return ctx.prepare(bad).eval().requires_grad_(False)


def bad_teacher_targets(
    good_logits: torch.Tensor, bad_logits: torch.Tensor, is_forget: torch.Tensor, temperature: float
) -> torch.Tensor:
    """softmax(bad / T) for forget rows, softmax(good / T) for retain rows."""
    flag = is_forget.to(torch.float32).view(-1, 1)
    good = torch.softmax(good_logits.float() / temperature, dim=1)
    bad = torch.softmax(bad_logits.float() / temperature, dim=1)
    return flag * bad + (1 - flag) * good


class BadTeacher(LotusBudgetMethod):
    """Bad Teacher: a student distils from a competent and an incompetent teacher.

    The student starts as the original model. The competent teacher is a frozen copy of the
    original; the incompetent teacher is a *randomly initialised* network of the same architecture
    (``ctx.model_factory()``, re-initialised so that it is random also for a pretrained ViT-B/16 or a
    ``--weights`` model: see ``incompetent_teacher``). Training data is the shuffled union
    of D_f and a seeded 30 % subset of D_r; each sample's target is softmax(bad(x) / T) if it is a
    forget sample and softmax(original(x) / T) otherwise, and the loss is
    KL(target || softmax(student(x) / T)) (summed over classes, averaged over the batch), T = 1.
    The student trains in train mode on augmented batches; the teachers run in eval mode.
    ``bad_teacher_loss`` is logged per epoch. Returned in train mode, as the LoTUS code returns it
    (``src/unlearning_methods/bad_teaching_class.py``, ``unlearn``).

    Hyperparameters, as the LoTUS runs (``bad_teaching_class.py``, ``reproduce_results.sh``):
    Adam lr 1e-4, weight decay 0, T = 1, 30 % of D_r, no schedule; ResNet 10 epochs of batch 128,
    ViT 3 epochs of batch 32 (256 on ImageNet-1k).

    Deliberate deviations:

    * from the LoTUS code (``bad_teaching_class.py``): its loader is not shuffled (all forget
      batches first, then all retain batches); its ViT incompetent teacher has a pretrained
      backbone (``ViT(num_classes)``, ``src/helpers/models.py``), so it is not incompetent; its
      retain subset is ``int(0.3 n)`` from Python's ``random`` (here ``round(0.3 n)``, seeded);
    * from both the LoTUS code and Bad Teacher's own (``vikram2000b/bad-teaching-unlearning``,
      ``unlearn.py``): ``F.kl_div`` with its default reduction, the mean over batch *and* classes,
      i.e. our batch mean divided by K (Adam nearly cancels a constant scale);
    * from Bad Teacher's own run (``CIFARSuper20_Rocket_Unlearn.ipynb``: Adam lr 1e-4, batch 256,
      one epoch): the LoTUS runs' batch and epochs;
    * bf16 autocast for the forwards on CUDA.
    """

    name = "bad_teacher"
    algorithm_version = 2
    summary = "Bad Teacher (Chundawat et al. 2023): distil D_r from the original and D_f from a random network."
    paper = (
        "Chundawat, Tarun, Mandal, Kankanhalli, Can Bad Teaching Induce Forgetting? Unlearning in Deep "
        "Networks Using an Incompetent Teacher, AAAI 2023"
    )
    access = uk.DataAccess.BOTH
    # Tiny data (32 forget + 38 retain images per epoch): more epochs, small batches, a larger lr
    # (seeds 0-4: forget accuracy -0.06 to -0.28, retain <= -0.07).
    conformance = uk.Conformance(options={"epochs": 20, "batch_size": 16, "lr": 5e-3})
    Options = BadTeacherOptions
    # lr: Bad Teacher's Adam 1e-4 (bad-teaching-unlearning, unlearn.py), a decade either side; temperature:
    # its KL_temperature 1 up to common distillation temperatures; retain_fraction: around its 30 % of D_r
    search_space = {
        "lr": uk.LogUniform(1e-5, 1e-3),
        "temperature": uk.LogUniform(0.5, 8.0),
        "retain_fraction": uk.Uniform(0.1, 0.6),
    }

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        o: BadTeacherOptions = self.options  # type: ignore[assignment]
        gen = ctx.generator()
        good = copy.deepcopy(model).eval().requires_grad_(False)
        bad = incompetent_teacher(ctx)
        student = model  # the runner's private copy: trained in place
        retain_sub = uk.random_fraction(data.retain, o.retain_fraction, gen, "retain_subset")
        union, is_forget = uk.concat(data.forget, retain_sub, "forget+retain_subset")
        opt = uk.make_optimizer(student.parameters(), "adam", o.lr, weight_decay=o.weight_decay)
        student.train()
        for epoch in ctx.track(range(o.epochs), total=o.epochs, description="epochs"):
            losses = uk.EpochLoss(ctx)
            for x, _, pos in union.indexed_batches(o.batch_size, shuffle=True, augment=o.augment, generator=gen):
                with torch.no_grad(), ctx.autocast():
                    z_good, z_bad = good(x), bad(x)
                target = bad_teacher_targets(z_good, z_bad, is_forget[pos], o.temperature)
                with ctx.autocast():
                    z = student(x)
                loss = uk.kl_to_target(z, target, o.temperature)
                uk.step(opt, loss)
                losses.add(loss)
            uk.log_losses(ctx, epoch, "bad_teacher", bad_teacher_loss=losses)
        return uk.UnlearnOutcome(student)  # train mode, as the LoTUS code returns it


@uk.hookimpl
def register_methods(register):
    register(BadTeacher)
