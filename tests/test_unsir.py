"""UNSIR's noise schedule: one error-maximising noise batch per class of D_f, optimised once and
reused by every impair step of every epoch (Tarun et al. learn one noise matrix per forgotten
class before impairing), and what the method still does to the forget set with it."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import unlearnkit_plugins.methods.unsir as unsir
from unlearnkit.loops.threads import pinned_threads
from unlearnkit.loops.training import accuracy
from unlearnkit.testing import run_method, tiny_bench
from unlearnkit_plugins.methods.unsir import Unsir

FAST = {"epochs": 2, "batch_size": 8, "lr": 0.002, "noise_steps": 3}


@pytest.fixture
def one_thread():
    with pinned_threads(1):
        yield


@pytest.fixture
def optimised(monkeypatch):
    """Every noise tensor UNSIR optimises (its labels) and every optimiser step taken, by type."""
    labels: list[torch.Tensor] = []
    steps: Counter[str] = Counter()
    real = unsir.error_maximising_noise

    def recording(model, y, like, ctx, **budget):
        labels.append(y.clone())
        return real(model, y, like, ctx, **budget)

    monkeypatch.setattr(unsir, "error_maximising_noise", recording)
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.update([type(opt).__name__]))
    yield labels, steps
    hook.remove()


@pytest.mark.parametrize("forget", ["random:0.2", "class:1"])
def test_the_noise_is_optimised_once_per_class_of_the_forget_set(forget, optimised, one_thread):
    labels, steps = optimised
    bench = tiny_bench(forget=forget)
    steps.clear()  # training the original and retrained models stepped optimisers too
    f = bench.splits["forget"]
    classes, counts = torch.unique(f.y, return_counts=True)
    run_method(Unsir, bench, FAST)

    # one batch per class present in D_f, min(n_c, batch) big, each sample optimised once for all epochs
    bank = torch.repeat_interleave(classes, counts.clamp(max=FAST["batch_size"]))
    assert torch.equal(torch.cat(labels), bank)
    assert all(len(y) <= FAST["batch_size"] for y in labels)  # side by side, in chunks of a batch
    if forget.startswith("class"):
        assert classes.tolist() == [1]
    # every Adam step is the noise's, taken once: not a noise per impair step or per epoch
    assert (
        steps["Adam"] == len(labels) * FAST["noise_steps"] == -(-len(bank) // FAST["batch_size"]) * FAST["noise_steps"]
    )
    retain_sub = len(bench.splits["retain"])  # all of it: tiny has far fewer than 1000 per class
    impair_steps = max(-(-len(f) // FAST["batch_size"]), -(-retain_sub // FAST["batch_size"]))
    repair_steps = -(-retain_sub // FAST["batch_size"])
    assert impair_steps > len(labels)  # a noise per impair step would count more
    assert steps["SGD"] == FAST["epochs"] * (impair_steps + repair_steps)  # all of them reuse it


def test_classes_optimised_side_by_side_get_the_noise_each_would_get_alone(bench, one_thread):
    """class_noise optimises the classes' batches together, in chunks: each class's samples must
    end (up to Adam's epsilon and rounding) where its own run would take them."""
    ctx = bench.context("unsir")
    x, y = next(bench.splits["forget"].batches(64))
    a, b = x[y == 0][:5], x[y == 1][:3]
    labels = torch.tensor([0] * 5 + [1] * 3)
    assert torch.equal(  # same seed: the chunk's first five samples start where class 0's alone do
        torch.empty(8, *a.shape[1:]).normal_(generator=torch.Generator().manual_seed(7))[:5],
        torch.empty(a.shape).normal_(generator=torch.Generator().manual_seed(7)),
    )
    budget = {"steps": 40, "lr": 0.1, "l2": 0.1}
    together, _ = unsir.error_maximising_noise(
        bench.original, labels, torch.cat([a, b]), ctx, generator=torch.Generator().manual_seed(7), **budget
    )
    alone, _ = unsir.error_maximising_noise(
        bench.original, labels[:5], a, ctx, generator=torch.Generator().manual_seed(7), **budget
    )
    start = torch.empty(a.shape).normal_(generator=torch.Generator().manual_seed(7))
    assert (alone - start).abs().max() > 1  # the noise moved far from its start ...
    assert torch.allclose(together[:5], alone, atol=1e-4)  # ... and alike in both runs


def test_unsir_still_lowers_forget_accuracy_and_leaves_the_test_split_standing(bench, one_thread):
    model, _ = run_method(Unsir, bench)  # the conformance budget on tiny data
    f, t = bench.splits["forget"], bench.splits["test"]
    before_f, after_f = accuracy(bench.original, f), accuracy(model, f)
    before_t, after_t = accuracy(bench.original, t), accuracy(model, t)
    assert after_f < before_f  # the forget set moves toward the retrained model's (never trained on it)
    assert after_t >= before_t - 0.1  # the control split does not collapse
