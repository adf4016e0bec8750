"""The eight baseline methods: the conformance contract for each, and one test per method of the
behaviour that defines it (and that the public LoTUS code gets wrong where it deviates)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.api import DataAccess, Setting
from unlearnkit.data import concat
from unlearnkit.loops import mask_gradients_, per_class_subset, trainable
from unlearnkit.testing import forget_entropy, run_method, tiny_bench
from unlearnkit.training import accuracy, predict_logits
from unlearnkit_plugins.methods._loops import random_wrong_labels
from unlearnkit_plugins.methods.bad_teacher import BadTeacher, bad_teacher_targets, incompetent_teacher
from unlearnkit_plugins.methods.finetune import Finetune
from unlearnkit_plugins.methods.neggrad_plus import NegGradPlus, neggrad_plus_loss
from unlearnkit_plugins.methods.random_label import RandomLabel
from unlearnkit_plugins.methods.salun import SalUn, forget_gradient, saliency_mask
from unlearnkit_plugins.methods.scrub import Scrub, distill_kl
from unlearnkit_plugins.methods.ssd import SSD, ssd_importance
from unlearnkit_plugins.methods.unsir import Unsir, error_maximising_noise

BASELINES = [Finetune, NegGradPlus, RandomLabel, BadTeacher, Scrub, SSD, Unsir, SalUn]


@pytest.fixture(scope="module")
def tiny():
    """One trained tiny original/retrained pair for the whole module. Single-threaded: the tiny
    CNN gains nothing from threads, and an oversubscribed CPU makes them very slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tiny_bench()
    finally:
        torch.set_num_threads(threads)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def forget_ce(model: torch.nn.Module, split) -> float:
    return float(F.cross_entropy(predict_logits(model, split), split.y))


def kl_on(model: torch.nn.Module, reference: torch.nn.Module, split) -> float:
    """KL(softmax(reference) || softmax(model)) over ``split``, averaged over samples."""
    return float(distill_kl(predict_logits(model, split), predict_logits(reference, split), 1.0))


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_names_and_access(cls):
    expected = {
        "finetune": DataAccess.RETAIN,
        "neggrad_plus": DataAccess.BOTH,
        "random_label": DataAccess.BOTH,
        "bad_teacher": DataAccess.BOTH,
        "scrub": DataAccess.BOTH,
        "ssd": DataAccess.BOTH,
        "unsir": DataAccess.BOTH,
        "salun": DataAccess.BOTH,
    }
    assert cls.access == expected[cls.name]
    assert not cls.extra_splits and cls.role is None
    assert cls.paper and cls.__doc__ and "LoTUS code" in cls.__doc__  # each says how the LoTUS code differs
    for field in cls.Options.model_fields.values():
        assert field.description, f"{cls.name}: every option needs a description"


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "setting, epochs, batch",
    [
        (Setting("cifar10", "vit", "instance", 10), 3, 32),
        (Setting("cifar10", "resnet", "instance", 10), 10, 128),
        (Setting("cifar100", "resnet", "class", 100), 10, 128),
        (Setting("cifar10", "vit-scratch", "instance", 10), 10, 128),
    ],
)
def test_default_options_per_family(cls, setting, epochs, batch):
    defaults = cls.default_options(setting)
    opts = cls.parse_options({}, defaults=defaults)
    assert opts.batch_size == batch
    if cls is not SSD:  # SSD does not train: no epochs
        assert opts.epochs == epochs
    else:
        assert (opts.alpha, opts.dampening) == (10.0, 1.0)


def test_method_specific_defaults():
    c10, c100 = Setting("cifar10", "resnet", "instance", 10), Setting("cifar100", "resnet", "instance", 100)
    vit = Setting("cifar10", "vit", "instance", 10)
    scrub = lambda s: Scrub.parse_options({}, defaults=Scrub.default_options(s))  # noqa: E731
    assert (scrub(c10).weight_decay, scrub(c100).weight_decay) == (0.1, 5e-4)
    assert (scrub(c10).msteps, scrub(vit).msteps, scrub(c10).temperature, scrub(c10).lr) == (3, 2, 4.0, 5e-4)
    unsir = lambda s: Unsir.parse_options({}, defaults=Unsir.default_options(s))  # noqa: E731
    assert (unsir(c10).retain_per_class, unsir(c100).retain_per_class) == (1000, 100)
    assert (unsir(c10).lr, unsir(c10).noise_lr) == (1e-3, 0.01)
    assert SalUn.Options().mask_ratio == 0.5
    assert NegGradPlus.Options().beta == 0.999
    bt = BadTeacher.Options()
    assert (bt.lr, bt.weight_decay, bt.temperature, bt.retain_fraction) == (1e-4, 0.0, 1.0, 0.3)


# --------------------------------------------------------------------------------- finetune
def test_finetune_never_reads_the_forget_set_and_keeps_retain_accuracy(tiny):
    model, data = run_method(Finetune, tiny, dict(Finetune.conformance.options))
    assert data.touched == {"retain"}
    r = tiny.splits["retain"]
    assert accuracy(model, r) >= accuracy(tiny.original, r)
    assert not states_equal(model, tiny.original)


# ----------------------------------------------------------------------------- neggrad_plus
def test_neggrad_plus_loss_ascends_the_forget_term():
    logits_r, logits_f = torch.randn(4, 3), torch.randn(5, 3, requires_grad=True)
    y_r, y_f = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2, 2])
    neggrad_plus_loss(logits_r, y_r, logits_f, y_f, beta=0.9).backward()
    ce_grad = torch.autograd.grad(F.cross_entropy(logits_f, y_f), logits_f)[0]
    assert torch.allclose(logits_f.grad, -0.1 * ce_grad)  # the sign reaches the gradient


def test_neggrad_plus_with_beta_one_is_exactly_finetuning(tiny):
    opts = {k: v for k, v in dict(NegGradPlus.conformance.options).items() if k != "beta"}
    plain, data = run_method(NegGradPlus, tiny, {**opts, "beta": 1.0})
    finetuned, _ = run_method(Finetune, tiny, opts)
    assert states_equal(plain, finetuned)
    assert data.touched == {"retain"}


def test_neggrad_plus_ascent_forgets_more_than_finetuning(tiny):
    f = tiny.splits["forget"]
    opts = dict(NegGradPlus.conformance.options)
    ascent, _ = run_method(NegGradPlus, tiny, opts)
    plain, _ = run_method(NegGradPlus, tiny, {**opts, "beta": 1.0})
    assert forget_ce(ascent, f) > forget_ce(plain, f) + 0.2
    assert accuracy(ascent, f) < accuracy(plain, f)
    # pure ascent (beta = 0) for one short epoch: the forget loss goes up, never down
    pure, _ = run_method(NegGradPlus, tiny, {"epochs": 1, "batch_size": 32, "lr": 0.01, "beta": 0.0})
    assert forget_ce(pure, f) > forget_ce(tiny.original, f) * 2


# ----------------------------------------------------------------------------- random_label
def test_random_labels_are_never_the_true_label_and_cover_every_wrong_class():
    k = 10
    y = torch.arange(k).repeat(500)
    gen = torch.Generator().manual_seed(0)
    first, second = random_wrong_labels(y, k, gen), random_wrong_labels(y, k, gen)
    for draw in (first, second):
        assert draw.dtype == y.dtype and draw.device == y.device
        assert not (draw == y).any()
        assert draw.min() == 0 and draw.max() == k - 1
        counts = torch.bincount(draw[y == 3], minlength=k)  # uniform over the 9 wrong classes
        assert counts[3] == 0 and counts.min() == 0 and (counts[torch.arange(k) != 3] > 30).all()
    assert not torch.equal(first, second)  # re-drawn every epoch
    again = random_wrong_labels(y, k, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)  # seeded
    assert not (random_wrong_labels(torch.tensor([0, 1] * 50), 2, gen) == torch.tensor([0, 1] * 50)).any()


def test_random_label_leaves_forget_predictions_confused(tiny):
    model, _ = run_method(RandomLabel, tiny, dict(RandomLabel.conformance.options))
    f = tiny.splits["forget"]
    assert forget_entropy(model, f) > 1.5 * forget_entropy(tiny.original, f)


# ------------------------------------------------------------------------------ bad_teacher
def test_bad_teacher_targets_pick_the_teacher_by_flag():
    good, bad = torch.tensor([[4.0, 0.0, 0.0]] * 2), torch.tensor([[0.0, 0.0, 3.0]] * 2)
    t = bad_teacher_targets(good, bad, torch.tensor([1, 0]), temperature=2.0)
    assert torch.allclose(t[0], torch.softmax(bad[0] / 2, 0)) and torch.allclose(t[1], torch.softmax(good[1] / 2, 0))


def test_bad_teacher_moves_forget_outputs_to_the_random_teacher(tiny):
    ctx = tiny.context("bad_teacher")
    bad = incompetent_teacher(ctx)
    assert states_equal(bad, incompetent_teacher(ctx))  # seeded, whatever ran before
    assert not any(p.requires_grad for p in bad.parameters()) and not bad.training
    f, r = tiny.splits["forget"], tiny.splits["retain"]
    student, _ = run_method(BadTeacher, tiny, dict(BadTeacher.conformance.options))
    before, after = kl_on(tiny.original, bad, f), kl_on(student, bad, f)
    assert after < 0.2 * before  # forget outputs now look like the incompetent teacher's
    assert kl_on(student, tiny.original, r) < kl_on(student, tiny.original, f)  # retain stays with the original


def test_incompetent_teacher_is_random_even_if_the_factory_loads_weights(tiny):
    """The runner's factory builds a pretrained ViT-B/16 backbone (or loads --weights): the bad
    teacher must still be random, not a competent network (the LoTUS-code deviation)."""
    ctx = tiny.context("bad_teacher")
    ctx.model_factory = lambda: copy.deepcopy(tiny.original)
    bad = incompetent_teacher(ctx)
    for (name, p), q in zip(bad.named_parameters(), tiny.original.parameters()):
        assert not torch.equal(p, q), f"{name} kept the factory's weights"
    f = tiny.splits["forget"]
    assert accuracy(bad, f) < 0.6 < accuracy(tiny.original, f)


# ------------------------------------------------------------------------------------ scrub
def test_distill_kl_is_temperature_scaled_kl():
    t, s = torch.randn(6, 5), torch.randn(6, 5)
    pt, ps = torch.softmax(t / 4, 1), torch.softmax(s / 4, 1)
    manual = 16 * (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(distill_kl(s, t, 4.0), manual, atol=1e-6)
    assert float(distill_kl(t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_scrub_returns_the_trained_student(tiny):
    student, _ = run_method(Scrub, tiny, dict(Scrub.conformance.options))
    assert not states_equal(student, tiny.original)  # the LoTUS code returned the original here
    f = tiny.splits["forget"]
    assert accuracy(student, f) < accuracy(tiny.original, f)


def test_scrub_max_steps_ascend_the_kl_on_the_forget_set(tiny):
    """With the min-step loss switched off, only the max-steps move the student: away from the
    teacher (KL grows by orders of magnitude); without max-steps it stays put."""
    f = tiny.splits["forget"]
    off = {"epochs": 2, "batch_size": 16, "lr": 2e-3, "ce_weight": 0.0, "kl_weight": 0.0, "weight_decay": 0.0}
    ascended, _ = run_method(Scrub, tiny, {**off, "msteps": 2})
    idle, _ = run_method(Scrub, tiny, {**off, "msteps": 0})
    assert kl_on(ascended, tiny.original, f) > 1.0
    assert kl_on(idle, tiny.original, f) < 0.01


# -------------------------------------------------------------------------------------- ssd
def test_ssd_dampens_exactly_the_selected_weights_once(tiny):
    o = SSD.parse_options(dict(SSD.conformance.options), defaults=SSD.default_options(tiny.context().setting))
    ctx = tiny.context("ssd")
    reference = copy.deepcopy(tiny.original).eval()
    f, r = tiny.splits["forget"], tiny.splits["retain"]
    train, _ = concat(f, r, "train")  # D_f then D_r, as SSD reads it
    imp_f = ssd_importance(reference, f, o.batch_size, ctx)
    imp_t = ssd_importance(reference, train, o.batch_size, ctx)
    model, _ = run_method(SSD, tiny, dict(SSD.conformance.options))
    selected = 0
    for before, after, i_f, i_t in zip(trainable(reference), trainable(model), imp_f, imp_t):
        sel = i_f > o.alpha * i_t
        selected += int(sel.sum())
        assert torch.equal(after[~sel], before[~sel])  # bit-identical
        factor = torch.clamp(o.dampening * i_t[sel] / i_f[sel], max=1.0)
        assert torch.equal(after[sel], before[sel] * factor)
        assert (factor < 1 / o.alpha + 1e-7).all()  # alpha > 1: every selected weight shrinks
    assert selected > 0  # not vacuous
    for name, buf in tiny.original.named_buffers():  # BatchNorm statistics untouched
        assert torch.equal(dict(model.named_buffers())[name], buf)


# ------------------------------------------------------------------------------------ unsir
def test_unsir_noise_maximises_the_error_on_the_device(tiny):
    ctx = tiny.context("unsir")
    x, y = next(tiny.splits["forget"].batches(16))
    model = copy.deepcopy(tiny.original).train()
    kw = dict(steps=10, lr=0.01, generator=ctx.generator(3))
    noise, trace = error_maximising_noise(model, y, x, ctx, l2=0.1, **kw)
    assert noise.shape == x.shape and noise.device == x.device and trace.device == x.device
    assert not noise.requires_grad and trace.shape == (10,)
    assert (trace.diff() > 0).all()  # CE - lambda ||noise||^2 climbs at every step
    _, error = error_maximising_noise(model, y, x, ctx, l2=0.0, **kw)
    assert (error.diff() > 0).all() and error[-1] > error[0] + 0.5  # the classification error itself
    assert model.training and states_equal(model, tiny.original)  # only the noise was optimised
    with torch.no_grad():
        assert F.cross_entropy(tiny.original(noise), y) > F.cross_entropy(tiny.original(x), y)  # gets it wrong


def test_unsir_retain_subset_is_per_class_and_seeded(tiny):
    r = tiny.splits["retain"]
    sub = per_class_subset(r, 20, torch.Generator().manual_seed(1))
    counts = torch.bincount(sub.y, minlength=tiny.num_classes)
    full = torch.bincount(r.y, minlength=tiny.num_classes)
    assert torch.equal(counts, full.clamp(max=20))
    again = per_class_subset(r, 20, torch.Generator().manual_seed(1))
    assert torch.equal(sub.x, again.x)
    assert torch.equal(per_class_subset(r, 10_000, torch.Generator()).y, r.y)  # all of it, in order


# ------------------------------------------------------------------------------------ salun
def test_saliency_mask_has_exactly_the_requested_ratio_with_one_global_threshold():
    grads = [torch.tensor([[0.5, -3.0], [2.0, 0.0]]), torch.tensor([1.0, 1.0, 1.0, -1.0, 0.1, 0.2])]
    for ratio, expected in ((0.5, 5), (0.3, 3), (0.1, 1), (1.0, 10)):
        masks = saliency_mask(grads, ratio)
        assert [m.shape for m in masks] == [g.shape for g in grads]
        assert int(sum(m.sum() for m in masks)) == expected
    masks = saliency_mask(grads, 0.3)  # |g|: 3, 2, then four tied 1s: exactly one of them
    assert masks[0].tolist() == [[0.0, 1.0], [1.0, 0.0]] and int(masks[1].sum()) == 1


def test_masked_gradients_fold_weight_decay_in_before_the_mask():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    p.grad = torch.tensor([0.5, 0.5, 0.5])
    mask_gradients_([p], [torch.tensor([1.0, 0.0, 1.0])], weight_decay=0.1)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.0, 0.8]))


def test_salun_updates_only_the_salient_weights(tiny):
    o = SalUn.parse_options(dict(SalUn.conformance.options), defaults=SalUn.default_options(tiny.context().setting))
    ctx = tiny.context("salun")
    grads = forget_gradient(copy.deepcopy(tiny.original), tiny.splits["forget"], o.batch_size, ctx)
    masks = saliency_mask(grads, o.mask_ratio)
    total = sum(m.numel() for m in masks)
    assert int(sum(m.sum() for m in masks)) == round(o.mask_ratio * total)
    inside = torch.cat([g.abs()[m.bool()] for g, m in zip(grads, masks)])
    outside = torch.cat([g.abs()[~m.bool()] for g, m in zip(grads, masks)])
    assert inside.min() >= outside.max()  # global: the largest |grad| anywhere
    model, _ = run_method(SalUn, tiny, dict(SalUn.conformance.options))
    changed = 0
    for before, after, m in zip(trainable(tiny.original), trainable(model), masks):
        assert torch.equal(after[~m.bool()], before[~m.bool()])  # frozen, weight decay included
        changed += int((after[m.bool()] != before[m.bool()]).sum())
    assert changed > 0.9 * round(o.mask_ratio * total)
