"""SFR-on (plugins/methods/sfron.py) beyond the conformance contract: the iteration rule computed by
hand on a tiny linear model (forget step every T_f iterations, masked, clipped, alpha and lr
cosine-annealed, retain step every iteration, the slow-weight average), its pieces (adaptive
weights, the balanced saliency mask, the Fisher), the published defaults, and two controls: alpha = 0
never reads D_f and forgets less, and the mask is what keeps retain accuracy."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.data import Preprocess, Split, UnlearnData
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.api.types import Augment, Setting
from unlearnkit.loops.training import accuracy
from unlearnkit.parallel.torchrun import Part
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods.sfron import (
    TRANSFORMER,
    Sfron,
    adaptive_cross_entropy,
    balanced_saliency_mask,
    fisher_diagonal,
    reference_steps,
)


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


# ----------------------------------------------------------------------------- a toy problem
PRE = Preprocess.create((0.5,), (0.25,), (2, 2), Augment(), torch.device("cpu"))


def toy_split(name: str, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, size=(n, 1, 2, 2), dtype=np.uint8))
    return Split(name, x, torch.from_numpy(rng.integers(0, 3, size=n)), PRE)


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def toy_context() -> UnlearnContext:
    return UnlearnContext(
        device=torch.device("cpu"),
        seed=0,
        setting=Setting("toy", "tiny", "instance", 3),
        num_classes=3,
        model_factory=toy_model,
        method="sfron",
    )


def clean(split: Split) -> torch.Tensor:
    return PRE(split.x)


def grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


# ------------------------------------------------------------------------------- the pieces
def test_adaptive_weights_by_hand():
    """w_i = CE_i^-lambda / sum_j CE_j^-lambda: CE = (1, 4), lambda = 1/2 gives w = (2/3, 1/3) and a
    loss of 2/3 + 4/3 = 2 (the plain mean would be 2.5); the weights carry no gradient."""
    # two-class logits (0, z), label 0: CE = log(1 + e^z): pick z for CE 1 and 4
    z = torch.tensor([math.log(math.e**1 - 1), math.log(math.e**4 - 1)])
    logits = torch.stack([torch.zeros(2), z], 1).requires_grad_(True)
    y = torch.zeros(2, dtype=torch.long)
    assert torch.allclose(F.cross_entropy(logits, y, reduction="none"), torch.tensor([1.0, 4.0]))
    loss = adaptive_cross_entropy(logits, y, 0.5)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    per_sample = [torch.autograd.grad(F.cross_entropy(logits[i : i + 1], y[i : i + 1]), logits)[0] for i in range(2)]
    assert torch.allclose(logits.grad, 2 / 3 * per_sample[0] + 1 / 3 * per_sample[1])
    assert adaptive_cross_entropy(logits, y, 0.0).item() == pytest.approx(2.5)  # lambda = 0: the mean


def test_adaptive_weights_are_normalised_over_the_global_batch():
    """Two ranks' parts, each scaled by the world size and normalised by the *global* sum of
    weights, average (as DDP averages gradients) to the single-process loss."""
    torch.manual_seed(1)
    logits, y = torch.randn(7, 3), torch.randint(0, 3, (7,))
    ce = F.cross_entropy(logits, y, reduction="none")
    coef = ce.pow(-0.5)

    class TwoRanks:  # what the all-reduce returns: this rank's sum plus the other's
        def __init__(self, other: torch.Tensor) -> None:
            self.other = other

        def sum(self, t: torch.Tensor) -> torch.Tensor:
            return t + self.other

    parts = [Part(0, 4, 7, 2), Part(4, 7, 7, 2)]
    losses = [
        adaptive_cross_entropy(
            logits[p.lo : p.hi], y[p.lo : p.hi], 0.5, p, TwoRanks(coef.sum() - coef[p.lo : p.hi].sum())
        )
        for p in parts
    ]
    assert (sum(losses) / 2).item() == pytest.approx(adaptive_cross_entropy(logits, y, 0.5).item(), rel=1e-6)


def test_balanced_saliency_mask_by_hand():
    f_forget = [torch.tensor([4.0, 1.0, 0.0, 2.0])]
    f_retain = [torch.tensor([1.0, 4.0, 0.0, 2.0])]
    assert balanced_saliency_mask(f_forget, f_retain, 1.0)[0].tolist() == [1.0, 0.0, 1.0, 1.0]  # ratio >= 1
    assert balanced_saliency_mask(f_forget, f_retain, 2.0)[0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_fisher_is_the_batch_size_weighted_mean_of_squared_batch_gradients():
    model, split = toy_model(), toy_split("s", 5, 3)
    x, y = clean(split), split.y
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for lo, hi in ((0, 2), (2, 4), (4, 5)):  # batches of 2, 2, 1
        for e, g in zip(expected, grads(model, F.cross_entropy(model(x[lo:hi]), y[lo:hi]))):
            e += (hi - lo) / 5 * g.square()
    got = fisher_diagonal(model, split, 2, toy_context())
    assert all(torch.allclose(g, e, atol=1e-7) for g, e in zip(got, expected))


# ------------------------------------------------------------------------ the rule by hand
def hand_sfron(model: nn.Module, forget: Split, retain: Split, o: dict) -> nn.Module:
    """SFR-on's iterations with full batches (every batch is the whole split, so shuffling does not
    matter), SGD without momentum or weight decay: the rule written out step by step."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    xf, yf, xr, yr = clean(forget), forget.y, clean(retain), retain.y
    fisher_f = [g.square() for g in grads(model, F.cross_entropy(model(xf), yf))]  # one batch each: weight 1
    fisher_r = [g.square() for g in grads(model, F.cross_entropy(model(xr), yr))]
    mask = [((a + 1e-15) / (b + 1e-15) >= o["threshold"]).float() for a, b in zip(fisher_f, fisher_r)]
    steps, beta = o["steps"], o["ema_beta"]
    for t in range(steps):
        cos = (1 + math.cos(math.pi * t / steps)) / 2
        lr, alpha = o["lr"] * cos, o["alpha"] * cos
        slow = [p.detach().clone() for p in params]
        if t % o["forget_every"] == 0:
            ce = F.cross_entropy(model(xf), yf, reduction="none")
            w = ce.detach().pow(-o["lambd"])
            g = [gi * m for gi, m in zip(grads(model, -alpha * (w * ce).sum() / w.sum()), mask)]
            norm = torch.sqrt(sum(gi.square().sum() for gi in g))
            scale = min(1.0, o["max_norm"] / (float(norm) + 1e-6))
            with torch.no_grad():
                for p, gi in zip(params, g):
                    p -= lr * scale * gi
        g = grads(model, F.cross_entropy(model(xr), yr))
        with torch.no_grad():
            for p, gi in zip(params, g):
                p -= lr * gi
            for p, s in zip(params, slow):  # the slow weights trail: beta * new + (1 - beta) * before
                p.copy_(beta * p + (1 - beta) * s)
    return model


RULE = {
    "steps": 5,
    "batch_size": 16,
    "augment": False,
    "lr": 0.3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "forget_every": 2,
    "alpha": 3.0,
    "lambd": 0.5,
    "max_norm": 0.5,  # small enough that the forget steps are clipped
    "threshold": 1.0,
    "ema_beta": 0.6,
}


def run_toy(options: dict) -> tuple[nn.Module, dict, UnlearnData, UnlearnContext]:
    forget, retain = toy_split("forget", 3, 1), toy_split("retain", 6, 2)
    data = UnlearnData({"forget": forget, "retain": retain}, Sfron.splits(), "sfron")
    ctx = toy_context()
    out = Sfron(Sfron.parse_options(options)).unlearn(toy_model(), data, ctx)
    return out.model, out.info, data, ctx


def test_the_iteration_rule_by_hand():
    """Iterations 0, 2, 4 take a masked, clipped adaptive ascent step on D_f, every iteration a D_r
    step, lr and alpha cosine-annealed, and after each the weights are pulled back to
    beta * new + (1 - beta) * before (the slow weights trailing the fast ones)."""
    forget, retain = toy_split("forget", 3, 1), toy_split("retain", 6, 2)
    model, info, data, _ = run_toy(RULE)
    expected = hand_sfron(toy_model(), forget, retain, RULE)
    for got, want in zip(model.parameters(), expected.parameters()):
        assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert info["sfron_forget_steps"] == 3.0 and 0 < info["sfron_mask_fraction"] < 1
    assert data.touched == {"forget", "retain"}
    assert not model.training  # eval mode, as the reference's final validation pass leaves it
    # each ingredient matters: without the average, with beta = 1, the result is another one
    no_average = hand_sfron(toy_model(), forget, retain, {**RULE, "ema_beta": 1.0})
    plain, _, _, _ = run_toy({**RULE, "ema_beta": 1.0})
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain.parameters(), no_average.parameters()))
    assert not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(plain.parameters(), model.parameters()))


def test_beta_zero_slow_weights_never_move():
    model, _, _, _ = run_toy({**RULE, "ema_beta": 0.0})
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), toy_model().parameters()))


# ------------------------------------------------------------------------------- defaults
def test_defaults_are_the_published_settings():
    # Spec lock: Classification/unlearn/sfron.py (SFRon.__init__, "CIFAR10 10%"), batch 128 (scripts/unlearn.sh)
    o = Sfron.parse_options({}, defaults=Sfron.default_options(Setting("cifar10", "resnet", "instance", 10)))
    assert (o.optimizer, o.lr, o.momentum, o.weight_decay, o.steps, o.batch_size) == ("sgd", 0.01, 0.9, 5e-4, None, 128)
    assert reference_steps(45_000, 128, 5) == 1500 and reference_steps(1295, 128, 5) == 44
    assert reference_steps(10, 128, 5) == 5  # at least one forget step
    assert (o.forget_every, o.alpha, o.alpha_schedule, o.lambd, o.max_norm) == (5, 25.0, "cosine", 0.5, 7.0)
    assert (o.mask, o.threshold, o.ema_beta) == (True, 1.0, 1.0)
    # the commented-out "tinyimage 10%" block (pretrained Swin), for a fine-tuned ViT
    v = Sfron.parse_options({}, defaults=Sfron.default_options(Setting("cifar10", "vit", "instance", 10)))
    assert {k: getattr(v, k) for k in TRANSFORMER} == TRANSFORMER
    assert (v.optimizer, v.lr, v.steps, v.forget_every, v.alpha, v.lambd) == ("adamw", 2e-5, 500, 1, 500.0, 0.6)


def test_logs_both_losses_once_per_retain_pass(tiny):
    ctx = tiny.context("sfron")
    opts = Sfron.parse_options({**Sfron.conformance.options, "steps": 6})  # 4 iterations per D_r pass
    torch.manual_seed(0)
    Sfron(opts).unlearn(copy.deepcopy(tiny.original).train(), tiny.data(Sfron), ctx)
    for name in ("sfron_forget_loss", "sfron_retain_loss"):
        points = [(s, v) for n, v, s in ctx.series if n == name]
        assert [s for s, _ in points] == [0, 1] and all(math.isfinite(v) for _, v in points)


# ------------------------------------------------------------------------------- controls
def forget_ce(model: nn.Module, split: Split) -> float:
    return float(F.cross_entropy(predict_logits(model, split), split.y))


def test_alpha_zero_never_reads_forget_and_forgets_less(tiny):
    f = tiny.splits["forget"]
    sfron, _ = run_method(Sfron, tiny)
    control, data = run_method(Sfron, tiny, {**Sfron.conformance.options, "alpha": 0.0})
    assert data.touched == {"retain"}
    assert accuracy(sfron, f) < accuracy(control, f) - 0.1
    assert forget_ce(sfron, f) > forget_ce(control, f) + 0.2


def test_the_saliency_mask_keeps_retain_accuracy(tiny):
    r = tiny.splits["retain"]
    masked, _ = run_method(Sfron, tiny)
    unmasked, _ = run_method(Sfron, tiny, {**Sfron.conformance.options, "mask": False})
    assert accuracy(masked, r) >= accuracy(tiny.original, r) - 0.05
    assert accuracy(unmasked, r) < accuracy(masked, r) - 0.2
