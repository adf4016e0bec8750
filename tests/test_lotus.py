"""LoTUS as docs/methods.md defines it: targets, temperature and stopping rule, the per-epoch check
under each evaluation protocol, what it logs, its per-setting defaults, and that labels are never read."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.api.protocols import CLEAN, PAPER
from unlearnkit.api.types import Augment, Setting
from unlearnkit.discovery.host import PluginHost
from unlearnkit.loops.training import accuracy
from unlearnkit.testing import run_method, tiny_bench
from unlearnkit_plugins.methods.lotus import CHECK_STREAM, Lotus, gap, hundredths, lotus_targets, temperature


@pytest.fixture(scope="module")
def bench():
    """One trained tiny original/retrained pair for the whole module, single-threaded (threads only
    slow the tiny CNN down, badly so on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tiny_bench()
    finally:
        torch.set_num_threads(threads)


def unlearn(bench, protocol=CLEAN, **options):
    """``Lotus.unlearn`` as the runner calls it, on a context with ``protocol``; returns the outcome
    and the context (its per-epoch series)."""
    ctx = bench.context("lotus")
    ctx.protocol = protocol
    opts = Lotus.parse_options({**Lotus.conformance.options, **options}, defaults=Lotus.default_options(ctx.setting))
    torch.manual_seed(bench.seed)
    return Lotus(opts).unlearn(copy.deepcopy(bench.original).train(), bench.data(Lotus), ctx), ctx


def series(ctx, name):
    return [(step, value) for n, value, step in ctx.series if n == name]


# ------------------------------------------------------------------------------------ targets
def test_targets_are_hard_gumbel_max_on_retain_and_gumbel_softmax_on_forget():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.4, 0.3]])
    flags = torch.tensor([0, 1])
    gen = torch.Generator().manual_seed(0)
    t = lotus_targets(z, flags, tau=2.0, generator=gen)
    # Replay the same draws by hand: G1 then G2, each -log(-log U).
    gen = torch.Generator().manual_seed(0)
    u1 = torch.rand(z.shape, generator=gen).clamp(1e-10, 1 - 1e-7)
    u2 = torch.rand(z.shape, generator=gen).clamp(1e-10, 1 - 1e-7)
    g1, g2 = -torch.log(-torch.log(u1)), -torch.log(-torch.log(u2))
    hard = torch.zeros(3)
    hard[(z[0] + g1[0]).argmax()] = 1
    soft = torch.softmax((z[1] + g2[1]) / 2.0, dim=0)
    assert torch.allclose(t[0], hard) and torch.allclose(t[1], soft)
    assert torch.allclose(t.sum(1), torch.ones(2))


def test_softmax_ablation_uses_plain_argmax_retain_targets_and_temperature_softmax():
    """The official ablation (``SoftmaxWithTemperature``, ``lotus_class.py``) has no noise at all:
    retain targets one_hot(argmax z), forget targets softmax(z / tau). Close logits make Gumbel-max
    pick another class in many rows, so a Gumbel draw left on the retain targets fails here."""
    z = torch.randn(512, 10, generator=torch.Generator().manual_seed(0)) * 0.5
    flags = torch.arange(512) % 2
    t = lotus_targets(z, flags, tau=3.0, generator=torch.Generator().manual_seed(1), target="softmax")
    retain, forget = flags == 0, flags == 1
    assert torch.equal(t[retain], F.one_hot(z[retain].argmax(1), 10).float())
    assert torch.allclose(t[forget], torch.softmax(z[forget] / 3.0, 1))
    gumbel = lotus_targets(z, flags, tau=3.0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(gumbel[retain], t[retain])  # not vacuous: noise would move the argmax


# -------------------------------------------------------------------- temperature and stopping
def test_temperature_rounds_both_accuracies_and_stops_exactly_at_minus_one_hundredth():
    assert temperature(0.97, 0.90, alpha=8.0) == pytest.approx(math.exp(8 * 0.07))
    assert temperature(0.5, 0.5, alpha=8.0) == 1.0  # at the bound: no smoothing beyond the teacher's
    # rounding to 0.01 first: 0.296 -> 0.30 and 0.294 -> 0.29, a gap of +0.01, not +0.002
    assert temperature(0.296, 0.294, alpha=2.0) == pytest.approx(math.exp(2 * 0.01))
    assert temperature(0.294, 0.296, alpha=2.0) is None
    assert gap(0.296, 0.294) == 1
    # acc_f 0.56, acc_u 0.57 stops. The official float test trains on with tau = exp(-alpha/100) < 1:
    assert not (round(0.56, 2) - round(0.57, 2) <= -0.01)
    assert temperature(0.56, 0.57, alpha=8.0) is None
    # whenever LoTUS trains, it smooths (tau >= 1); it stops for every negative gap
    for a in range(101):
        for u in range(101):
            tau = temperature(a / 100, u / 100, alpha=8.0)
            assert (tau is None) == (a < u) and (tau is None or tau >= 1.0)


def test_each_epoch_logs_the_check_the_gap_and_the_temperature_it_trained_with(bench):
    out, ctx = unlearn(bench, epochs=6)
    acc_u, alpha = out.info["lotus_acc_unseen"], Lotus.conformance.options["alpha"]
    checks = series(ctx, "lotus_acc_forget")
    taus = [temperature(a, acc_u, alpha) for _, a in checks]
    trained = taus[: taus.index(None)] if None in taus else taus  # training stops at the first None
    assert len(checks) == len(trained) + (None in taus)  # ... and no check follows the stop
    assert series(ctx, "lotus_gap") == [(s, gap(a, acc_u) / 100) for s, a in checks]
    assert series(ctx, "lotus_tau") == list(enumerate(trained))
    losses = series(ctx, "lotus_loss")
    assert [s for s, _ in losses] == list(range(len(trained))) and all(math.isfinite(v) for _, v in losses)
    assert out.info["lotus_epochs"] == len(trained) >= 1 and out.info["lotus_tau"] == trained[-1]
    assert acc_u == accuracy(bench.original, bench.splits["unseen"])
    assert not out.model.training  # eval mode, as lotus_class.py returns it


def test_the_check_sees_augmented_forget_images_under_paper_and_clean_ones_under_clean(bench):
    """The official check reads D_f through the training loader (random crop for ResNet,
    ``lotus_class.py`` + ``helpers/data_utils.py``): the paper protocol does the same, from the
    check's own seeded stream; the clean protocol checks clean images."""
    pre = replace(bench.splits["forget"].pre, augment=Augment(crop_padding=1))
    cropped = replace(bench, splits={k: replace(s, pre=pre) for k, s in bench.splits.items()})
    f = cropped.splits["forget"]
    clean = accuracy(bench.original, f)
    crops = accuracy(bench.original, f, augment=True, generator=cropped.context().generator(CHECK_STREAM))
    assert crops < clean - 0.2  # crops of 8x8 images do move the accuracy: the test is not vacuous
    _, paper_ctx = unlearn(cropped, PAPER, epochs=1)
    _, clean_ctx = unlearn(cropped, CLEAN, epochs=1)
    assert series(paper_ctx, "lotus_acc_forget") == [(0, crops)]
    assert series(clean_ctx, "lotus_acc_forget") == [(0, clean)]


def test_lotus_stops_immediately_when_forget_accuracy_is_already_below_unseen(bench):
    # A retrained model's forget accuracy is below its unseen accuracy on the tiny data: LoTUS,
    # started from it, must stop before its first update and return it unchanged.
    f, u = bench.splits["forget"], bench.splits["unseen"]
    assert hundredths(accuracy(bench.retrained, f)) < hundredths(accuracy(bench.retrained, u))
    original = bench.original
    bench.original = bench.retrained
    try:
        model, _ = run_method(Lotus, bench, {"lr": 1e-2})
    finally:
        bench.original = original
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), bench.retrained.state_dict().values()))


def test_lotus_loss_never_reads_labels(bench):
    """Scrambling the retain labels changes nothing: the loss uses only the teacher's outputs.
    (Labels of D_f and D_u enter only through the accuracies acc_f and acc_u.)"""
    model_a, _ = run_method(Lotus, bench)
    saved = bench.splits["retain"]
    bench.splits["retain"] = replace(saved, y=(saved.y + 1) % bench.num_classes)
    try:
        model_b, _ = run_method(Lotus, bench)
    finally:
        bench.splits["retain"] = saved
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))


# ----------------------------------------------------------------------------------- defaults
# Spec lock: the LoTUS code's runs, src/bash_scripts/reproduce_results.sh (ResNet18 CIFAR-10:
# `--epochs 10 --alpha 8`; CIFAR-100, MUFAC, Tiny-ImageNet `--alpha 2`; ViT `--epochs 3
# --batch_size 32 --lr 1e-6 --alpha 2`; ImageNet-1k ViT `--batch_size 256`) and
# class_reproduce_results.sh (`--lr=1e-4 --alpha=32 --epochs=10`); batch 128, lr 1e-4 and
# subset 0.3 are the defaults of src/helpers/config.py.
@pytest.mark.parametrize(
    "setting, expected",
    [
        (Setting("cifar10", "resnet", "instance", 10), {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 8.0}),
        (Setting("cifar100", "resnet", "instance", 100), {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 2.0}),
        (Setting("mufac", "resnet", "instance", 8), {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 2.0}),
        (Setting("cifar10", "vit", "instance", 10), {"epochs": 3, "batch_size": 32, "lr": 1e-6, "alpha": 2.0}),
        (Setting("imagenet", "vit", "instance", 1000), {"epochs": 3, "batch_size": 256, "lr": 1e-6, "alpha": 2.0}),
        (Setting("cifar10", "resnet", "class", 10), {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 32.0}),
    ],
)
def test_paper_defaults_per_setting(setting, expected):
    assert Lotus.default_options(setting) == expected
    opts = Lotus.parse_options({"alpha": "4"}, defaults=Lotus.default_options(setting))
    assert opts.alpha == 4.0 and opts.retain_fraction == 0.3


def test_the_imagenet_batch_rule_keys_on_the_imagenet_dataset_plugin():
    """Batch 256 belongs to the `imagenet` dataset plugin's benchmark only, not to every dataset
    whose name starts with it (a prefix rule gave ImageNet's batch to `imagenette`)."""
    assert "imagenet" in PluginHost().registries.datasets.names()
    for other in ("imagenette", "imagenet_subset", "imagefolder", "tiny_imagenet"):
        assert Lotus.default_options(Setting(other, "vit", "instance", 10))["batch_size"] == 32
