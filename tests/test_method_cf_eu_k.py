"""CF-k and EU-k (plugins/methods/cf_k.py, eu_k.py) beyond the conformance contract: the layer rule
on real architectures, every parameter and buffer below the last k layers bit-identical, the last k
changed, EU-k's reset equal to a fresh initialisation, and the control: no learning step leaves
CF-k's model bit-identical."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.api.types import ImageSpec
from unlearnkit.discovery.host import PluginHost
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods.cf_k import CFk, layers, split_last
from unlearnkit_plugins.methods.eu_k import EUk, reinitialise_last


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def build(name: str):
    entry, variant = PluginHost().registries.model(name)
    return entry.cls(entry.cls.parse_options({}), variant=variant, pretrained=False, weights=None).build(
        ImageSpec(3, 32, 32, 10)
    )


def test_layers_are_resnet_blocks_and_the_head():
    names = [n for n, _ in layers(build("resnet18_lotus"))]
    assert names[:2] == ["conv1", "bn1"] and names[-1] == "fc"
    assert names[-3:] == ["layer4.0", "layer4.1", "fc"]  # k = 3: the last stage and the classifier
    assert len(names) == 2 + 8 + 1


def state_of(modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


@pytest.mark.parametrize("cls", [CFk, EUk], ids=lambda c: c.name)
def test_every_parameter_and_buffer_below_the_last_k_is_bit_identical(cls, tiny):
    k = 2
    below, top = split_last(tiny.original, k)
    assert below and top
    model, _ = run_method(cls, tiny, {**cls.conformance.options, "k": k})
    new_below, new_top = split_last(model, k)
    for before, after in zip(state_of(below), state_of(new_below)):
        assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    changed = [not torch.equal(a, b) for ma, mb in zip(top, new_top) for a, b in zip(ma.parameters(), mb.parameters())]
    assert all(changed)
    assert all(p.requires_grad for p in model.parameters())  # handed back whole


def test_eu_k_starts_the_reset_layers_from_a_fresh_initialisation(tiny):
    model = copy.deepcopy(tiny.original)
    torch.manual_seed(5)
    fresh = tiny.context("eu_k").new_model()
    frozen, reset = reinitialise_last(model, fresh, 1)
    fresh_top = dict(layers(fresh))[layers(model)[-1][0]]
    for a, b in zip(reset[0].state_dict().values(), fresh_top.state_dict().values()):
        assert torch.equal(a, b)
    original_top = layers(tiny.original)[-1][1]
    assert not all(torch.equal(a, b) for a, b in zip(reset[0].parameters(), original_top.parameters()))
    for a, b in zip(frozen, [m for _, m in layers(tiny.original)][: len(frozen)]):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_k_beyond_the_layer_count_trains_everything(tiny):
    below, top = split_last(tiny.original, 99)
    assert below == [] and len(top) == len(layers(tiny.original))


def test_control_without_a_learning_step_cf_k_is_bit_identical(tiny):
    """lr -> 0 and no weight decay: CF-k moves nothing, its BatchNorm statistics included below k."""
    model, _ = run_method(CFk, tiny, {**CFk.conformance.options, "lr": 1e-30, "momentum": 0.0, "weight_decay": 0.0})
    below, _ = split_last(model, 1)
    for a, b in zip(model.parameters(), tiny.original.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-20)
    assert below


def test_eu_k_forgets_more_than_cf_k_on_the_same_budget(tiny):
    from unlearnkit.loops.training import accuracy

    f = tiny.splits["forget"]
    cf, _ = run_method(CFk, tiny)
    eu, _ = run_method(EUk, tiny)
    assert accuracy(eu, f) <= accuracy(cf, f)
