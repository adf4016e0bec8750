"""UNSIR's noise schedule: each epoch learns one error-maximising noise batch per class of D_f
against the model as it stands and reuses it for every impair step (Tarun et al. learn one noise
matrix per forgotten class before impairing); the impair pass is one epoch over noise and retain
subset together; and what the method still does to the forget set with it."""

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
    """Every noise tensor UNSIR optimises (its labels, and the model's first weight at the time) and
    every optimiser step taken, by type."""
    labels: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    steps: Counter[str] = Counter()
    real = unsir.error_maximising_noise

    def recording(model, y, like, ctx, **budget):
        labels.append(y.clone())
        weights.append(next(model.parameters()).detach().clone())
        return real(model, y, like, ctx, **budget)

    monkeypatch.setattr(unsir, "error_maximising_noise", recording)
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.update([type(opt).__name__]))
    yield labels, weights, steps
    hook.remove()


@pytest.mark.parametrize("forget", ["random:0.2", "class:1"])
def test_the_noise_is_optimised_once_per_class_of_the_forget_set_per_epoch(forget, optimised, one_thread):
    labels, weights, steps = optimised
    bench = tiny_bench(forget=forget)
    steps.clear()  # training the original and retrained models stepped optimisers too
    f = bench.splits["forget"]
    classes, counts = torch.unique(f.y, return_counts=True)
    run_method(Unsir, bench, FAST)

    # one batch per class present in D_f, min(n_c, batch) big, each sample optimised once an epoch
    bank = torch.repeat_interleave(classes, counts.clamp(max=FAST["batch_size"]))
    chunks = -(-len(bank) // FAST["batch_size"])  # side by side, in chunks of a batch
    assert len(labels) == FAST["epochs"] * chunks and all(len(y) <= FAST["batch_size"] for y in labels)
    for epoch in range(FAST["epochs"]):
        assert torch.equal(torch.cat(labels[epoch * chunks : (epoch + 1) * chunks]), bank)
    if forget.startswith("class"):
        assert classes.tolist() == [1]
    # epoch 2's noise is learnt against the model epoch 1 left, not the original
    assert not torch.equal(weights[0], weights[chunks])
    # every Adam step is the noise's: noise_steps per chunk per epoch, not a noise per impair step
    assert steps["Adam"] == FAST["epochs"] * chunks * FAST["noise_steps"]
    retain_sub = len(bench.splits["retain"])  # all of it: tiny has far fewer than 1000 per class
    impair_steps = -(-(len(f) + retain_sub) // FAST["batch_size"])  # one pass: |D_f| noise draws + subset
    repair_steps = -(-retain_sub // FAST["batch_size"])
    assert impair_steps > chunks  # a noise per impair step would count more
    assert steps["SGD"] == FAST["epochs"] * (impair_steps + repair_steps)


def test_an_impair_pass_is_one_epoch_over_d_f_sized_noise_and_the_retain_subset_in_proportion():
    # |D_f| = 100, 900 retain at batch 128: ceil(1000 / 128) = 8 steps of ceil(100/8) = 13 noise and
    # ceil(900/8) = 113 retain samples (126 per step: the ceilings cover both sets in the 8 steps)
    assert unsir.impair_batches(100, 900, 128) == (8, 13, 113)
    assert unsir.impair_batches(4500, 10_000, 128) == (114, 40, 88)  # CIFAR-10 10 %: 14,500 / 128
    assert unsir.impair_batches(3, 5, 16) == (1, 3, 5)  # everything in one step
    for n, r, b in [(100, 900, 128), (4500, 10_000, 128), (7, 1, 4), (1, 1000, 64)]:
        steps, per_n, per_r = unsir.impair_batches(n, r, b)
        assert steps * per_n >= n and steps * per_r >= r  # every sample is seen in one pass
        assert per_n + per_r <= b + 1  # a step costs one batch (the two ceilings add at most one)


def test_noise_batches_are_full_and_draw_every_noise_sample_equally_often():
    noise, labels = torch.arange(5.0).unsqueeze(1), torch.arange(5)
    batches = unsir.noise_batches(noise, labels, 3, torch.Generator().manual_seed(0))
    drawn = [next(batches) for _ in range(5)]  # 15 draws of a 5-sample bank: three passes
    assert all(len(y) == 3 and torch.equal(x.squeeze(1).long(), y) for x, y in drawn)
    assert Counter(torch.cat([y for _, y in drawn]).tolist()) == dict.fromkeys(range(5), 3)


def test_noise_labels_keep_the_forget_sets_classes_capped_at_a_batch():
    y = torch.tensor([3, 1, 3, 3, 1, 0, 3, 3])
    assert unsir.noise_labels(y, 4).tolist() == [0, 1, 1, 3, 3, 3, 3]


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
