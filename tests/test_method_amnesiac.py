"""Amnesiac (plugins/methods/amnesiac.py) beyond the conformance contract: the relabelled targets are
always wrong and cover every wrong class, D_r keeps its labels, the labels are drawn once and D_f and
D_r share one loader, SSD's defaults, and the control: the same fine-tuning with the true labels
does not forget."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from unlearnkit.api.types import Setting
from unlearnkit.loops.training import accuracy
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods import amnesiac as module
from unlearnkit_plugins.methods.amnesiac import Amnesiac, amnesiac_set


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def test_relabelled_targets_are_never_true_and_cover_every_wrong_class(tiny):
    forget, retain = tiny.splits["forget"], tiny.splits["retain"]
    k, n = tiny.num_classes, len(forget)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([amnesiac_set(forget, retain, k, gen)[0].y[:n] for _ in range(300)])  # (300, |D_f|)
    assert not (draws == forget.y).any()  # never the true label, in 300 x 32 draws
    for i in range(n):  # every sample gets each of its K-1 wrong classes, about equally often
        counts = torch.bincount(draws[:, i], minlength=k)
        assert counts[forget.y[i]] == 0 and (counts[torch.arange(k) != forget.y[i]] > 60).all()
    # ten classes: each true class is sent to all nine others
    y = torch.arange(10).repeat(200)
    many = module.random_wrong_labels(y, 10, gen)
    for c in range(10):
        assert set(many[y == c].tolist()) == set(range(10)) - {c}


def test_retain_labels_and_every_image_are_untouched(tiny):
    forget, retain = tiny.splits["forget"], tiny.splits["retain"]
    mixed, flags = amnesiac_set(forget, retain, tiny.num_classes, torch.Generator().manual_seed(1))
    n = len(forget)
    assert len(mixed) == n + len(retain) and flags.tolist() == [1.0] * n + [0.0] * len(retain)
    assert torch.equal(mixed.y[n:], retain.y)  # D_r's labels as they were
    assert torch.equal(mixed.x[:n], forget.x) and torch.equal(mixed.x[n:], retain.x)


def test_labels_are_drawn_once_and_both_sets_share_one_loader(tiny, monkeypatch):
    seen = []
    real = module.ce_epoch

    def recording(model, split, *args, **kwargs):
        seen.append((split.name, len(split), split.y.clone()))
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(module, "ce_epoch", recording)
    ctx = tiny.context("amnesiac")
    opts = Amnesiac.parse_options({**Amnesiac.conformance.options, "epochs": 3})
    out = Amnesiac(opts).unlearn(copy.deepcopy(tiny.original).train(), tiny.data(Amnesiac), ctx)
    n_f, n_r = len(tiny.splits["forget"]), len(tiny.splits["retain"])
    assert [(name, size) for name, size, _ in seen] == [("amnesiac", n_f + n_r)] * 3  # one mixed pass per epoch
    assert all(torch.equal(y, seen[0][2]) for _, _, y in seen)  # the same wrong labels every epoch
    assert not (seen[0][2][:n_f] == tiny.splits["forget"].y).any()
    assert not out.model.training  # eval mode, as SSD's code leaves it
    points = [(s, v) for name, v, s in ctx.series if name == "amnesiac_loss"]
    assert [s for s, _ in points] == [0, 1, 2] and all(math.isfinite(v) for _, v in points)


def test_forgets_while_the_same_training_on_true_labels_does_not(tiny, monkeypatch):
    f, r = tiny.splits["forget"], tiny.splits["retain"]
    model, data = run_method(Amnesiac, tiny)
    assert data.touched == {"forget", "retain"}
    assert accuracy(model, f) < accuracy(tiny.original, f) - 0.15
    assert accuracy(model, r) >= accuracy(tiny.original, r) - 0.02
    # control: the identical loop with the forget labels left true keeps what D_f taught
    monkeypatch.setattr(module, "random_wrong_labels", lambda y, k, gen: y.clone())
    control, _ = run_method(Amnesiac, tiny)
    assert accuracy(control, f) >= accuracy(tiny.original, f) - 0.04
    assert accuracy(model, f) < accuracy(control, f) - 0.15


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_defaults_are_ssds_for_every_family(family):
    # Spec lock: SSD src/forget_random_strategies.py and src/forget_full_class_strategies.py (amnesiac: 3
    # epochs, batch 128, fit_one_unlearning_cycle lr 1e-4), src/unlearn.py (Adam, no weight decay),
    # src/datasets.py (transform_unlearning: no augmentation); the same for ResNet18 and ViT
    o = Amnesiac.parse_options({}, defaults=Amnesiac.default_options(Setting("cifar10", family, "instance", 10)))
    assert (o.epochs, o.batch_size, o.lr, o.weight_decay, o.augment) == (3, 128, 1e-4, 0.0, False)
