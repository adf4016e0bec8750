"""ToW and relearn time pinned on hand-computed cases; relearn time moves with how much of D_f the
model still holds, while a control that holds all of it stays at 0 (docs/metrics.md)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from unlearnkit import Augment, Evaluation, Split
from unlearnkit.api.data import Preprocess
from unlearnkit.testing import check_metric, tiny_bench
from unlearnkit_plugins.metrics.forgetting import (
    RelearnOptions,
    RelearnTime,
    TugOfWar,
    relearn_steps,
    tug_of_war,
)


def test_tow_is_the_product_of_one_minus_each_accuracy_gap():
    unlearned = {"forget": 0.5, "retain": 1.0, "test": 0.75}
    retrained = {"forget": 1.0, "retain": 1.0, "test": 0.5}
    assert tug_of_war(unlearned, retrained) == pytest.approx(0.5 * 1.0 * 0.75, abs=1e-15)
    assert tug_of_war(retrained, retrained) == 1.0


class _LogitsEval:
    def __init__(self, logits: dict, labels: dict) -> None:
        self._logits, self._labels = logits, labels

    def logits(self, role, split, pass_="eval"):
        return torch.tensor(self._logits[(role, split)], dtype=torch.float32)

    def labels(self, split):
        return torch.tensor(self._labels[split])


def test_tow_metric_reads_argmax_accuracy_of_both_models_on_three_splits():
    right, wrong = [2.0, 0.0], [0.0, 2.0]  # label 0 for every row below
    ev = _LogitsEval(
        {
            ("unlearned", "forget"): [right, wrong],  # 0.5
            ("unlearned", "retain"): [right, right],  # 1.0
            ("unlearned", "test"): [right, right, right, wrong],  # 0.75
            ("retrained", "forget"): [wrong, wrong],  # 0.0
            ("retrained", "retain"): [right, right],  # 1.0
            ("retrained", "test"): [right, wrong, wrong, wrong],  # 0.25
        },
        {"forget": [0, 0], "retain": [0, 0], "test": [0, 0, 0, 0]},
    )
    assert TugOfWar().compute(ev) == pytest.approx((1 - 0.5) * 1.0 * (1 - 0.5), abs=1e-12)


def _point_split(n: int, label: int) -> Split:
    """n identical all-zero 1x1 images of one label: the model's output is its bias alone."""
    pre = Preprocess.create((0.0,), (1.0,), (1, 1), Augment(), torch.device("cpu"))
    return Split("forget", torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.full((n,), label), pre)


def _bias_model(bias: list[float]) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor(bias))
    return model


def test_relearn_steps_by_hand_on_a_bias_only_model():
    # Output = bias b = (1, 0), label 1: p = softmax(b) = (0.7311, 0.2689); dCE/db = p - e_1.
    # lr 1: b' = (1 - 0.7311, 0.7311) -> class 1 after ONE step.
    # lr 0.5: b' = (0.6345, 0.3655) still class 0; p' = (0.5666, 0.4334); b'' = (0.3512, 0.6488): TWO steps.
    forget = _point_split(4, 1)
    gen = torch.Generator().manual_seed(0)
    one = relearn_steps(_bias_model([1.0, 0.0]), forget, 1.0, RelearnOptions(lr=1.0, momentum=0.0), gen)
    two = relearn_steps(_bias_model([1.0, 0.0]), forget, 1.0, RelearnOptions(lr=0.5, momentum=0.0), gen)
    assert (one, two) == (1, 2)
    assert relearn_steps(_bias_model([0.0, 1.0]), forget, 1.0, RelearnOptions(), gen) == 0  # already back
    never = RelearnOptions(lr=1e-9, momentum=0.0, max_steps=7)
    assert relearn_steps(_bias_model([1.0, 0.0]), forget, 1.0, never, gen) == 7  # censored at the budget


@pytest.fixture(scope="module")
def bench():
    return tiny_bench(seed=0)


def _relearn(bench, unlearned: nn.Module, **options) -> float:
    ctx = bench.context("probe")
    models = {"unlearned": unlearned, "original": bench.original, "retrained": bench.retrained}
    ev = Evaluation(models, bench.splits, ctx)
    return RelearnTime(RelearnOptions(**options)).compute(ev)


def test_relearn_time_is_zero_for_the_original_and_positive_for_the_retrained_model(bench):
    before = copy.deepcopy(bench.retrained.state_dict())
    original = _relearn(bench, copy.deepcopy(bench.original))
    retrained = _relearn(bench, bench.retrained)
    assert original == 0.0  # the control: it never forgot
    assert retrained >= 2.0  # it never learned D_f: relearning takes training
    assert all(torch.equal(v, bench.retrained.state_dict()[k]) for k, v in before.items())  # probed on a copy


def test_relearn_time_is_short_when_forgetting_is_only_hidden(bench):
    """A bias shift towards class 0 lowers forget accuracy on the surface while the weights still
    hold D_f: one step undoes it, where the retrained model (which never learned D_f) needs many."""
    hidden = copy.deepcopy(bench.original)
    last = [m for m in hidden.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias[0] += 2.0
    forget = bench.splits["forget"]

    def acc(model: nn.Module) -> float:
        return float((model.eval()(forget.pre(forget.x)).argmax(1) == forget.y).double().mean())

    assert acc(hidden) < acc(bench.original)  # looks (partly) forgotten
    hidden_steps, retrained_steps = _relearn(bench, hidden), _relearn(bench, bench.retrained)
    assert 0 < hidden_steps <= 2 < 10 <= retrained_steps


def test_relearn_time_is_deterministic_and_conforms(bench):
    assert check_metric(RelearnTime, bench) == 0.0  # the conformance kit's unlearned model is the original
    a = _relearn(bench, bench.retrained)
    assert a == _relearn(bench, bench.retrained)
    assert math.isfinite(a)
