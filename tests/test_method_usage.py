"""What `unlearnkit show method NAME` tells a researcher about an option is what the method does
with it: each test pins one description that used to say otherwise, next to the behaviour it now
describes (no number changed)."""

from __future__ import annotations

import torch

from unlearnkit import Setting


def method(name: str):
    from unlearnkit.discovery.host import registries

    return registries().methods.get(name).cls


def description(name: str, key: str) -> str:
    return method(name).Options.model_fields[key].description or ""


def test_l1_sparse_no_l1_epochs_past_the_epochs_keeps_the_penalty_and_says_so():
    from unlearnkit_plugins.methods.l1_sparse import penalty_weights

    cls = method("l1_sparse")
    for k in (3, 5):  # k = epochs and k > epochs: alpha in every epoch (not "without the penalty")
        o = cls.parse_options({"schedule": "per_epoch", "epochs": 3, "no_l1_epochs": k, "alpha": 0.5})
        assert penalty_weights(o, 2) == [0.5] * 6
    o = cls.parse_options({"schedule": "per_epoch", "epochs": 3, "no_l1_epochs": 1, "alpha": 0.5})
    assert penalty_weights(o, 1) == [0.5, 0.25, 0.0]  # the last epoch without the penalty, as before
    assert ">= epochs: the penalty stays at alpha in every epoch" in description("l1_sparse", "no_l1_epochs")


def test_unsir_epochs_help_names_the_one_epoch_every_setting_runs():
    cls = method("unsir")
    for setting in (Setting("digits", "cnn", "instance", 10), Setting("cifar10", "vit", "instance", 10)):
        assert cls.parse_options({}, defaults=cls.default_options(setting)).epochs == 1
    assert cls.Options.model_fields["epochs"].default == 10  # create_method("unsir") with no setting, as before
    assert "Every setting's default: 1" in description("unsir", "epochs")


def test_fisher_std_cap_help_says_the_head_gets_head_scale_times_the_cap():
    from unlearnkit_plugins.methods.fisher import noise_std

    fisher = torch.zeros(4)  # an unconstrained weight: the cap
    std = noise_std(fisher, 0.2, 1e-3, torch.tensor([1.0, 1.0, 10.0, 10.0]))
    assert torch.allclose(std, torch.tensor([1e-3, 1e-3, 1e-2, 1e-2]))  # the head's std is 10 x the cap
    assert "times head_scale on the head" in description("fisher", "std_cap")


VIT_IMAGENET = Setting("imagenet", "vit", "instance", 1000)
VIT_CIFAR = Setting("cifar10", "vit", "instance", 10)


def short(value: float) -> str:
    """1e-3 as the docstrings write it."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def builtin_methods() -> list[str]:
    from unlearnkit.discovery.host import registries

    methods = registries().methods
    return sorted(n for n in methods.names() if methods.get(n).cls.__module__.startswith("unlearnkit_plugins."))


def test_every_builtin_docstring_names_its_vit_batch_and_lr():
    """`show method` points to the docstring for the per-setting defaults: a ViT's batch (its
    ImageNet-1k batch) and lr there are the ones the method runs with."""
    missing = []
    for name in builtin_methods():
        cls = method(name)
        doc = " ".join((cls.__doc__ or "").split())
        vit = cls.default_options(VIT_IMAGENET)
        other = cls.default_options(VIT_CIFAR).get("batch_size")
        if "batch_size" in vit and vit["batch_size"] != other and "ImageNet-1k" not in doc:
            missing.append(f"{name}: batch {vit['batch_size']} on ImageNet-1k")
        if other is not None and f"{other}" not in doc:
            missing.append(f"{name}: ViT batch {other}")
        if "lr" in vit and short(vit["lr"]) not in doc:
            missing.append(f"{name}: ViT lr {short(vit['lr'])}")
    assert not missing, missing


def test_every_final_value_a_builtin_logs_is_in_its_docstring_and_in_docs(tiny_bench_one_thread):
    """A run's final values (``UnlearnOutcome.info``) are named where `show method` and
    docs/methods.md say what a method logs (``ga_lr`` and ``sfron_steps`` were missing)."""
    import copy
    from pathlib import Path

    bench = tiny_bench_one_thread
    docs = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    missing = []
    for name in builtin_methods():
        cls = method(name)
        if name in ("original", "retrain") or name.startswith("boundary_"):  # no run; class forgetting only
            continue
        fields = cls.Options.model_fields
        short_run = {k: v for k, v in (("epochs", 1), ("steps", 4)) if k in fields}
        ctx = bench.context(name)
        opts = cls.parse_options({**cls.conformance.options, **short_run}, defaults=cls.default_options(ctx.setting))
        torch.manual_seed(bench.seed)
        out = cls(opts).unlearn(copy.deepcopy(bench.original).train(), bench.data(cls), ctx)
        doc = cls.__doc__ or ""
        missing += [f"{name}: {key}" for key in out.info if key not in doc or f"`{key}`" not in docs]
    assert not missing, missing


def test_sfron_a_large_lambda_weights_the_forget_batch_instead_of_nan():
    """c_i = 1 / (CE_i^lambda + 1e-15): with every CE_i^lambda past float32 (lambda 50 on CEs of 10)
    each c_i was 0 and the loss 0/0, a NaN step; now softmax(-lambda log CE), their limit. Where the
    sum is positive, the loss and its gradient are bit for bit the ones before."""
    import torch.nn.functional as F

    from unlearnkit_plugins.methods.sfron import adaptive_cross_entropy

    y = torch.tensor([1, 1])
    z = torch.tensor([[10.0, 0.0], [12.0, 0.0]], requires_grad=True)
    for lambd in (50.0, 1000.0, 1e300):
        loss = adaptive_cross_entropy(z, y, lambd)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), lambd
        assert abs(float(loss.detach()) - 10.0) < 1e-3  # the sample the model fits best (CE 10) takes the weight
    gen = torch.Generator().manual_seed(0)
    for lambd in (0.0, 0.5, 0.6, 5.0):
        logits = (3 * torch.randn(16, 10, generator=gen)).requires_grad_(True)
        labels = torch.randint(0, 10, (16,), generator=gen)
        ce = F.cross_entropy(logits, labels, reduction="none")
        coef = 1.0 / (ce.detach().pow(lambd) + 1e-15)
        before = (coef * ce).sum() / coef.sum()
        after = adaptive_cross_entropy(logits, labels, lambd)
        assert torch.equal(after, before), lambd
        assert torch.equal(torch.autograd.grad(after, logits)[0], torch.autograd.grad(before, logits)[0]), lambd
