"""Boundary Shrink and Boundary Expanding (plugins/methods/boundary_shrink.py, boundary_expand.py)
beyond the conformance contract: the FGSM neighbour by hand on a toy linear model; every forget
sample trained towards exactly the class its neighbour under the *original* model lands in
(recomputed here from the raw pixels), the true class where the probe does not cross; the widened
head pruned back to the original's keys and shapes with its trained rows kept; the classifier
found (or refused) on any model; both refused in one line for instance forgetting and left out of
``--method all``; the authors' defaults; and controls that do not forget."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.data import Preprocess, Split
from unlearnkit.api.types import Augment, Setting
from unlearnkit.engine.config import expand_methods
from unlearnkit.loops.training import accuracy
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods import boundary_expand as expand_module
from unlearnkit_plugins.methods import boundary_shrink as shrink_module
from unlearnkit_plugins.methods.boundary_expand import BoundaryExpand, classifier_head, prune, widen
from unlearnkit_plugins.methods.boundary_shrink import BoundaryShrink, fgsm_neighbour_labels, frozen_copy

METHODS = (BoundaryShrink, BoundaryExpand)


TINY_FORGET = "class:0"  # the class-only methods get a class bench


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def cpu_context(num_classes: int, forget_class: int | None = 0) -> UnlearnContext:
    return UnlearnContext(
        device=torch.device("cpu"),
        seed=0,
        setting=Setting("toy", "tiny", "class", num_classes),
        num_classes=num_classes,
        model_factory=lambda: nn.Identity(),
        forget_class=forget_class,
        method="boundary",
    )


# ------------------------------------------------------------------------- the FGSM neighbour
def test_fgsm_neighbour_by_hand_on_a_linear_model():
    """z = W x + b with W = [[1, 0], [0, 1], [0, 0]], b = (0.5, 0, 0) on two-pixel images (mean 0,
    std 1: normalised = pixels). For y = 0 the CE gradient is ((p0 - 1), p1) -> signs (-1, +1); for
    y = 1 it is (p0, p1 - 1) -> (+1, -1). Step 0.2 = 51 grey levels exactly:
      (100, 200)/255, y=0 -> (49, 251):  z = (0.692, 0.984, 0) -> 1 (crossed)
      (250, 10)/255,  y=0 -> (199, 61):  z = (1.280, 0.239, 0) -> 0 (did not cross: own class)
      (20, 240)/255,  y=0 -> (0, 255) clamped: z = (0.5, 1.0, 0) -> 1
      (20, 240)/255,  y=1 -> (71, 189):  z = (0.778, 0.741, 0) -> 0 (the step follows the true label)
    """
    pre = Preprocess.create((0.0,), (1.0,), (1, 2), Augment(), torch.device("cpu"))
    x = torch.tensor([[100, 200], [250, 10], [20, 240], [20, 240]], dtype=torch.uint8).view(4, 1, 1, 2)
    y = torch.tensor([0, 0, 0, 1])
    split = Split("forget", x, y, pre)
    linear = nn.Linear(2, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        linear.bias.copy_(torch.tensor([0.5, 0.0, 0.0]))
    probe = frozen_copy(nn.Sequential(nn.Flatten(), linear))
    labels = fgsm_neighbour_labels(probe, pre(x), y, split, 0.2, cpu_context(3))
    assert labels.tolist() == [1, 0, 1, 0]
    # a step below half a grey level rounds back to the image itself: the label is the clean prediction
    assert fgsm_neighbour_labels(probe, pre(x), y, split, 1e-3, cpu_context(3)).tolist() == [0, 0, 1, 1]


def independent_neighbours(original: nn.Module, split: Split, pos: torch.Tensor, bound: float) -> torch.Tensor:
    """The FGSM neighbour's class, recomputed from the uint8 pixels: one sign step of the CE gradient
    (summed per sample), clamped to [0, 1], rounded to 1/255, classified by the original in eval mode."""
    model = copy.deepcopy(original).eval()
    mean, std = 0.5, 0.3  # the tiny dataset's statistics (unlearnkit.testing.TinyDataset)
    pixels = split.x[pos].double() / 255.0
    x = ((pixels - mean) / std).float().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), split.y[pos], reduction="sum"), x)
    adv = torch.round(torch.clamp(pixels + bound * grad.double().sign(), 0.0, 1.0) * 255.0) / 255.0
    with torch.no_grad():
        return model(((adv - mean) / std).float()).argmax(1)


def test_every_forget_sample_goes_to_the_class_its_neighbour_lands_in_under_the_original(tiny, monkeypatch):
    seen: list[torch.Tensor] = []
    real = shrink_module.cross_entropy

    def recording(logits, target, part=None):
        seen.append(target.clone())
        return real(logits, target, part)

    monkeypatch.setattr(shrink_module, "cross_entropy", recording)
    o = {"epochs": 3, "batch_size": 8, "lr": 0.003}
    ctx = tiny.context("boundary_shrink")
    opts = BoundaryShrink.parse_options(o)
    out = BoundaryShrink(opts).unlearn(copy.deepcopy(tiny.original).train(), tiny.data(BoundaryShrink), ctx)
    forget = tiny.splits["forget"]
    # the same batches, drawn again from the run's generator (no augmentation: the order is its only draw)
    gen = ctx.generator()
    expected = [
        independent_neighbours(tiny.original, forget, pos, opts.bound)
        for _ in range(o["epochs"])
        for _, _, pos in forget.indexed_batches(o["batch_size"], shuffle=True, generator=gen)
    ]
    assert len(seen) == len(expected) == o["epochs"] * math.ceil(len(forget) / o["batch_size"])
    for got, want in zip(seen, expected):
        assert torch.equal(got, want)  # every epoch: the original's neighbours, not the current model's
    targets, truth = torch.cat(seen), forget.y.repeat(o["epochs"])
    crossed = (targets != truth).double().mean().item()
    assert crossed > 0.5  # most neighbours lie in another class; the rest keep their own (the reference rule)
    assert out.info["boundary_shrink_crossed"] == pytest.approx(crossed)
    assert out.model.training  # train mode, as both reference codes leave it
    points = [(s, v) for name, v, s in ctx.series if name == "boundary_shrink_loss"]
    assert [s for s, _ in points] == [0, 1, 2] and all(math.isfinite(v) for _, v in points)


def test_shrink_forgets_while_a_probe_that_cannot_cross_does_not(tiny):
    f, r = tiny.splits["forget"], tiny.splits["retain"]
    model, data = run_method(BoundaryShrink, tiny)
    assert data.touched == {"forget"}
    assert accuracy(model, f) < accuracy(tiny.original, f) - 0.5
    assert accuracy(model, r) >= accuracy(tiny.original, r) - 0.1
    # control: a step below half a grey level finds no neighbour, every sample keeps the class it has
    control, _ = run_method(BoundaryShrink, tiny, {**BoundaryShrink.conformance.options, "bound": 1e-3})
    assert accuracy(control, f) >= accuracy(tiny.original, f) - 0.05


# ----------------------------------------------------------------------------- the shadow class
def test_classifier_head_is_the_last_linear_with_one_output_per_class():
    first, head, other = nn.Linear(4, 3), nn.Linear(3, 3), nn.Linear(3, 5)
    model = nn.Sequential(first, nn.ReLU(), head, nn.Sequential(other))
    assert classifier_head(model, 3) is head  # a later Linear with another width is not the classifier
    assert classifier_head(model, 5) is other
    with pytest.raises(ValueError) as err:
        classifier_head(model, 10)
    assert "\n" not in str(err.value) and "Sequential" in str(err.value) and "10 outputs" in str(err.value)
    with pytest.raises(ValueError, match="model Flatten has none"):
        BoundaryExpand(BoundaryExpand.Options()).unlearn(nn.Flatten(), None, cpu_context(3))  # type: ignore[arg-type]


def test_widen_adds_a_fresh_shadow_row_and_prune_puts_the_trained_rows_back():
    torch.manual_seed(0)
    head = nn.Linear(64, 10)
    weight, bias = head.weight, head.bias
    original = (weight.detach().clone(), bias.detach().clone())
    draws = []
    for seed in range(50):
        widened = widen(head, torch.Generator().manual_seed(seed))
        assert head.weight.shape == (11, 64) and head.bias.shape == (11,) and head.out_features == 11
        assert torch.equal(head.weight[:10], original[0]) and torch.equal(head.bias[:10], original[1])
        assert head.bias[10] == 0  # the authors' init_params: zero bias
        draws.append(head.weight[10].detach().clone())
        with torch.no_grad():
            head.weight.add_(1.0)  # "training"
        prune(widened)
        assert head.weight is weight and head.bias is bias and head.out_features == 10
        assert torch.equal(head.weight, original[0] + 1.0)  # the trained rows, not the original ones
        with torch.no_grad():
            head.weight.copy_(original[0])
    std = torch.stack(draws).std().item()
    assert std == pytest.approx(math.sqrt(2 / (64 + 11)), rel=0.05)  # Xavier-normal over the (11, 64) matrix


def test_expand_returns_the_original_architecture_with_its_trained_head_and_forgets(tiny, monkeypatch):
    before: list[torch.Tensor] = []
    real = expand_module.prune

    def recording(widened):
        before.append(widened.head.weight.detach().clone())
        return real(widened)

    monkeypatch.setattr(expand_module, "prune", recording)
    f, r, k = tiny.splits["forget"], tiny.splits["retain"], tiny.num_classes
    model, data = run_method(BoundaryExpand, tiny)
    assert data.touched == {"forget"}
    own, got = tiny.original.state_dict(), model.state_dict()
    assert list(got) == list(own) and all(got[key].shape == own[key].shape for key in own)
    fresh = tiny.context().model_factory()
    fresh.load_state_dict(got, strict=True)  # what the runner saves loads into the original architecture
    head = classifier_head(model, k)
    assert head.out_features == k and model(tiny.splits["test"].pre(f.x[:2])).shape == (2, k)
    assert len(before) == 1 and before[0].shape[0] == k + 1
    assert torch.equal(head.weight, before[0][:k])  # the kept rows are the trained ones
    assert not torch.allclose(head.weight, classifier_head(tiny.original, k).weight)  # trained, not reset
    assert accuracy(model, f) < accuracy(tiny.original, f) - 0.5
    assert accuracy(model, r) >= accuracy(tiny.original, r) - 0.1


def test_expand_control_training_to_the_true_class_does_not_forget(tiny, monkeypatch):
    monkeypatch.setattr(expand_module, "shadow_labels", lambda y, k: y.clone())
    control, _ = run_method(BoundaryExpand, tiny)
    assert accuracy(control, tiny.splits["forget"]) >= accuracy(tiny.original, tiny.splits["forget"]) - 0.05


def test_expand_logs_and_ends_in_train_mode(tiny):
    ctx = tiny.context("boundary_expand")
    opts = BoundaryExpand.parse_options(BoundaryExpand.conformance.options)
    out = BoundaryExpand(opts).unlearn(copy.deepcopy(tiny.original).train(), tiny.data(BoundaryExpand), ctx)
    assert out.model.training
    assert 0.5 < out.info["boundary_expand_shadow"] <= 1.0  # D_f sits in the shadow class before the pruning
    points = [s for name, _, s in ctx.series if name == "boundary_expand_loss"]
    assert points == list(range(opts.epochs))


# ------------------------------------------------------------------------- scenarios, defaults
@pytest.mark.parametrize("name", [m.name for m in METHODS])
def test_instance_forgetting_is_refused_in_one_line(cli, name):
    code, out, err = cli("run", "--method", name, "--model", "cnn", "--dataset", "digits", "--forget", "0.1")
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"'{name}'" in lines[0] and "'instance'" in lines[0] and "decision region" in lines[0]


def test_all_leaves_them_out_for_instance_forgetting(host):
    regs = host.registries
    names = {m.name for m in METHODS}
    assert not names & set(expand_methods(["all"], regs, "instance"))
    assert names <= set(expand_methods(["all"], regs, "class"))
    for cls in METHODS:
        assert cls.scenario_rules == frozenset({"class"}) and cls.distributed


@pytest.mark.parametrize("family", ["resnet", "vit"])
@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_defaults_are_the_authors(cls, family):
    # Spec lock: TY-LEE-KR/Boundary-Unlearning-Code boundary_unlearning.py (SGD lr 1e-5, momentum 0.9, no
    # weight decay, 10 epochs over D_f, FGSM bound 0.1), main.py (batch 64), utils.py (no augmentation)
    o = cls.parse_options({}, defaults=cls.default_options(Setting("cifar10", family, "class", 10)))
    assert (o.epochs, o.batch_size, o.lr, o.momentum, o.weight_decay, o.augment) == (10, 64, 1e-5, 0.9, 0.0, False)
    if cls is BoundaryShrink:
        assert o.bound == 0.1
