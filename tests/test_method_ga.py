"""Gradient ascent (plugins/methods/ga.py) beyond the conformance contract: the forget loss rises
epoch by epoch while D_r is never read, one step moves the loss by its first-order prediction, and
the control: the same run with a vanishing learning rate leaves the weights where they were (the
BatchNorm statistics aside, which the train-mode forwards still update)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.data import Split
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods.ga import GA, SETTINGS, forget_scale


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def forget_ce(model: nn.Module, split: Split) -> float:
    return float(F.cross_entropy(predict_logits(model, split), split.y))


def test_the_forget_loss_rises_every_epoch_and_the_retain_set_is_never_read(tiny):
    ctx = tiny.context("ga")
    opts = GA.parse_options({**GA.conformance.options, "epochs": 4, "augment": False})
    data = tiny.data(GA)
    torch.manual_seed(tiny.seed)
    out = GA(opts).unlearn(copy.deepcopy(tiny.original).train(), data, ctx)
    assert data.touched == {"forget"}
    logged = [v for name, v, _ in ctx.series if name == "ga_forget_loss"]
    assert len(logged) == 4 and all(b > a for a, b in zip(logged, logged[1:])), logged
    assert forget_ce(out.model.eval(), tiny.splits["forget"]) > forget_ce(tiny.original, tiny.splits["forget"]) + 0.5


def test_one_step_raises_the_loss_by_the_first_order_amount():
    """On a linear model, one plain SGD step of lr on -CE changes CE by about +lr * ||grad||^2."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    ce = F.cross_entropy(model(x), y)
    g_w, g_b = torch.autograd.grad(ce, [model.weight, model.bias])
    ce = ce.detach()
    lr = 1e-3
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    (-F.cross_entropy(model(x), y)).backward()
    opt.step()
    after = F.cross_entropy(model(x), y).detach()
    predicted = lr * (g_w.pow(2).sum() + g_b.pow(2).sum())
    assert float(after - ce) == pytest.approx(float(predicted), rel=1e-2)
    assert float(after) > float(ce)


def test_control_without_a_learning_step_leaves_the_weights_and_forget_accuracy(tiny):
    model, _ = run_method(GA, tiny, {**GA.conformance.options, "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0})
    for a, b in zip(model.parameters(), tiny.original.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


def test_defaults_are_optmls_ga():
    o = GA.parse_options({})
    assert (o.epochs, o.momentum, o.weight_decay) == (5, 0.9, 5e-4)
    assert SETTINGS == {"large": (1e-4, 256), "small": (3e-3, 32)}
    assert forget_scale("auto", 500) == "small" and forget_scale("auto", 501) == "large"
    assert forget_scale("large", 10) == "large"
