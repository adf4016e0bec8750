"""The speedrun model and recipe, and what `fit` gained for them: pinned identities of the shipped
recipes, the whitening worked out by hand, test-time flipping, the frozen BatchNorm scale, the
Lookahead arithmetic, label smoothing and Nesterov reaching the loss and the optimiser (and staying
out while off), the data-dependent initialisation, and a run through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from tests.invoke import invoke
from unlearnkit.api.data import Preprocess, Split
from unlearnkit.api.types import Augment, ImageSpec, Setting
from unlearnkit.errors import ConfigError
from unlearnkit.loops import training
from unlearnkit.loops.threads import pinned_threads
from unlearnkit.loops.training import Lookahead, TrainRecipe, fit, init_from_data, load_train_recipe
from unlearnkit_plugins.models.catalog import Speedrun
from unlearnkit_plugins.models.speedrun import BN_EPS, BN_MOMENTUM, WHITEN_EPS, SpeedrunNet, Whitening


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with pinned_threads(1):
        yield


# ------------------------------------------------------------------ the shipped recipes, pinned
# Computed from the code before the optional fields existed: these dicts enter the identities of
# every stored reference model, so they must never change.
FAST_DEFAULT = {
    "train.name": "fast",
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.batch_size": 128,
    "train.epochs": 20,
    "train.schedule": "warmup_cosine",
    "train.warmup_epochs": 3,
}
QUICK_DEFAULT = {
    "train.name": "quick",
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.batch_size": 64,
    "train.epochs": 8,
    "train.schedule": "warmup_cosine",
    "train.warmup_epochs": 1,
}
PAPER_DEFAULT = {
    "train.name": "paper",
    "train.optimizer": "sgd",
    "train.lr": 0.1,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.batch_size": 512,
    "train.epochs": 150,
    "train.schedule": "warmup_linear",
    "train.warmup_epochs": 30,
}
PINNED = {
    ("fast", "resnet"): FAST_DEFAULT,
    ("fast", "cnn"): FAST_DEFAULT,
    ("fast", "vit"): {
        "train.name": "fast",
        "train.optimizer": "sgd",
        "train.lr": 0.0001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.0005,
        "train.batch_size": 64,
        "train.epochs": 3,
        "train.schedule": "constant",
        "train.warmup_epochs": 0,
    },
    ("fast", "vit-scratch"): {
        "train.name": "fast",
        "train.optimizer": "adamw",
        "train.lr": 0.001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.05,
        "train.batch_size": 128,
        "train.epochs": 30,
        "train.schedule": "warmup_cosine",
        "train.warmup_epochs": 3,
    },
    ("quick", "resnet"): QUICK_DEFAULT,
    ("quick", "cnn"): QUICK_DEFAULT,
    ("quick", "vit"): {
        "train.name": "quick",
        "train.optimizer": "sgd",
        "train.lr": 0.0001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.0005,
        "train.batch_size": 32,
        "train.epochs": 1,
        "train.schedule": "constant",
        "train.warmup_epochs": 0,
    },
    ("quick", "vit-scratch"): {
        "train.name": "quick",
        "train.optimizer": "adamw",
        "train.lr": 0.003,
        "train.momentum": 0.9,
        "train.weight_decay": 0.05,
        "train.batch_size": 32,
        "train.epochs": 40,
        "train.schedule": "warmup_cosine",
        "train.warmup_epochs": 3,
    },
    ("paper", "resnet"): PAPER_DEFAULT,
    ("paper", "cnn"): PAPER_DEFAULT,
    ("paper", "vit"): {
        "train.name": "paper",
        "train.optimizer": "sgd",
        "train.lr": 0.0001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.0005,
        "train.batch_size": 64,
        "train.epochs": 30,
        "train.schedule": "constant",
        "train.warmup_epochs": 0,
    },
    ("paper", "vit-scratch"): {
        "train.name": "paper",
        "train.optimizer": "adamw",
        "train.lr": 0.001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.05,
        "train.batch_size": 256,
        "train.epochs": 150,
        "train.schedule": "warmup_linear",
        "train.warmup_epochs": 15,
    },
}


@pytest.mark.parametrize(("name", "family"), sorted(PINNED))
def test_shipped_recipes_give_the_params_they_always_gave(name, family):
    params = load_train_recipe(name, family).as_params()
    assert params == PINNED[(name, family)]
    assert list(params) == list(PINNED[(name, family)])  # the order too


def test_a_user_recipe_without_the_new_keys_gives_the_old_params(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[default]\noptimizer = "adam"\nlr = 0.001\nepochs = 4\nschedule = "constant"\n')
    assert load_train_recipe(str(path), "resnet").as_params() == {
        "train.name": "mine",
        "train.optimizer": "adam",
        "train.lr": 0.001,
        "train.momentum": 0.9,
        "train.weight_decay": 0.0005,
        "train.batch_size": 128,
        "train.epochs": 4,
        "train.schedule": "constant",
        "train.warmup_epochs": 0,
    }


def test_an_optional_field_enters_the_params_only_when_on():
    base = TrainRecipe(name="x").as_params()
    assert not any(k.removeprefix("train.") in training.OPTIONAL_FIELDS for k in base)
    on = TrainRecipe(name="x", nesterov=True, label_smoothing=0.1).as_params()
    assert on == {**base, "train.nesterov": True, "train.label_smoothing": 0.1}
    turned_off_again = TrainRecipe(name="x", label_smoothing=0.0).as_params()
    assert turned_off_again == base


def test_the_speedrun_recipe_is_the_speedrun_models_familys():
    recipe = load_train_recipe("speedrun", Speedrun.family)
    assert recipe.name == "speedrun" and recipe.optimizer == "sgd" and recipe.nesterov
    assert recipe.label_smoothing == 0.2
    assert recipe.lookahead_every > 0 and 0 < recipe.lookahead_decay < 1
    assert recipe.schedule == "warmup_linear" and 0 < recipe.warmup_epochs < recipe.epochs
    params = recipe.as_params()
    assert params["train.nesterov"] is True and params["train.label_smoothing"] == 0.2
    with pytest.raises(ConfigError, match=r"^Training recipe 'speedrun' has no \[resnet\] or \[default\] table\.$"):
        load_train_recipe("speedrun", "resnet")
    # --epochs scales the warm-up and the Lookahead's start with it
    short = recipe.with_epochs(recipe.epochs // 2)
    assert short.lookahead_start_epochs == round(recipe.lookahead_start_epochs / 2)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('optimizer = "adamw"\nnesterov = true', "nesterov = true needs optimizer = 'sgd' and a momentum above 0"),
        ("lookahead_every = 5", "lookahead_every and lookahead_decay go together: set both above 0, or neither"),
        (
            "lookahead_power = 3.0",
            "lookahead_power and lookahead_start_epochs need lookahead_every and lookahead_decay",
        ),
    ],
)
def test_options_that_need_another_are_refused_in_one_line(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"[default]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load_train_recipe(str(path), "cnn")
    assert str(err.value) == f"Bad training recipe '{path}': {message}."


# ------------------------------------------------------------------------------- the whitening
def test_whitening_by_hand_on_four_axis_patches():
    """One 2x2 patch per image (a 1x2x2 image is one patch): +-s_i along axis i, s = 4, 2, 1, 1/2.
    The mean is 0 and the covariance diag(2 s_i^2 / 8) = diag(4, 1, 1/4, 1/16), so the filters are
    +-e_i / sqrt(var_i + eps), largest variance first, and the bias is 0."""
    s = [4.0, 2.0, 1.0, 0.5]
    images = torch.zeros(8, 1, 2, 2)
    for i, si in enumerate(s):
        images[2 * i].view(-1)[i] = si
        images[2 * i + 1].view(-1)[i] = -si
    layer = Whitening(1)
    layer.fit_patches(images)
    var = torch.tensor([4.0, 1.0, 0.25, 0.0625])
    expected = torch.diag(1 / (var + WHITEN_EPS).sqrt())
    assert torch.allclose(layer.weight[:4].reshape(4, 4), expected, atol=1e-6)
    assert torch.allclose(layer.weight[4:].reshape(4, 4), -expected, atol=1e-6)
    assert torch.allclose(layer.bias, torch.zeros(8), atol=1e-7)
    z = F.conv2d(images, layer.weight, layer.bias).flatten(1)  # pre-activation, (8 images, 8 channels)
    assert z[0, 0].item() == pytest.approx(4 / (4 + WHITEN_EPS) ** 0.5, rel=1e-6)  # image +4 e_0
    assert z[7, 3].item() == pytest.approx(-0.5 / (0.0625 + WHITEN_EPS) ** 0.5, rel=1e-6)  # image -1/2 e_3
    assert bool(layer.fitted)


def patches_by_hand(images: np.ndarray) -> np.ndarray:
    """Every 2x2 patch at stride 1, flattened in (channel, row, column) order: explicit loops."""
    n, c, h, w = images.shape
    rows = []
    for k in range(n):
        for i in range(h - 1):
            for j in range(w - 1):
                rows.append(images[k, :, i : i + 2, j : j + 2].reshape(-1))
    return np.array(rows)


def test_whitened_patches_have_identity_covariance_up_to_eps():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, 3, 6, 6, generator=g, dtype=torch.float64)
    images = (base + 0.8 * base.roll(1, dims=1) + 0.5 * base.roll(1, dims=3) + 0.3).float()  # correlated, off-centre
    layer = Whitening(3)
    layer.fit_patches(images, chunk=7)  # chunks must not matter
    patches = patches_by_hand(images.double().numpy())
    cov = np.cov(patches, rowvar=False, bias=True)
    values = np.sort(np.linalg.eigvalsh(cov))[::-1]
    with torch.no_grad():
        z = F.conv2d(images.double(), layer.weight.double(), layer.bias.double())  # (40, 24, 5, 5) pre-activation
    flat = z.permute(0, 2, 3, 1).reshape(-1, 24).numpy()
    assert np.allclose(flat.mean(0), 0, atol=1e-5)
    out_cov = np.cov(flat[:, :12], rowvar=False, bias=True)
    assert np.allclose(out_cov, np.diag(values / (values + WHITEN_EPS)), atol=1e-4)
    assert np.allclose(np.diag(out_cov), 1, atol=WHITEN_EPS / values.min() + 1e-4)  # the identity, up to eps
    assert np.allclose(flat[:, 12:], -flat[:, :12], atol=1e-5)  # the other sign of each coordinate
    # a second call changes nothing on a network whose filters came from data (trained weights kept)
    net = SpeedrunNet(3, 10, width=4)
    net.init_from_data(images)
    kept = net.whiten.weight.clone()
    net.init_from_data(torch.randn(40, 3, 6, 6, generator=g))
    assert torch.equal(net.whiten.weight, kept)


def test_the_whitening_is_a_buffer_no_optimiser_sees():
    net = SpeedrunNet(3, 10, width=4)
    names = {n for n, _ in net.named_parameters()}
    assert "whiten.weight" not in names and "whiten.bias" in names
    assert "whiten.weight" in net.state_dict() and "whiten.fitted" in net.state_dict()


# ------------------------------------------------------------------------- test-time flipping
def test_eval_forward_is_the_mean_of_the_image_and_its_mirror_and_training_forward_is_not():
    torch.manual_seed(0)
    net = SpeedrunNet(3, 5, width=4)
    x = torch.randn(6, 3, 16, 20)
    with torch.no_grad():
        net.train()
        trained = net(x)
        assert torch.allclose(trained, net.logits(x))  # the image alone, batch statistics and all
        assert not torch.allclose(trained, net(x.flip(3)), atol=1e-4)
        net.eval()
        both = (net.logits(x) + net.logits(x.flip(3))) / 2
        assert torch.allclose(net(x), both, atol=1e-6)
        assert torch.allclose(net(x), net(x.flip(3)), atol=1e-6)  # so it is mirror-invariant


def test_flips_are_the_models_own_augmentation_unless_turned_off():
    cifar = Augment(crop_padding=4, flip=False)  # the dataset's: translations only
    assert Speedrun().augmentation(cifar) == Augment(crop_padding=4, flip=True)
    off = Speedrun(Speedrun.parse_options({"flip": "false"}))
    assert off.augmentation(cifar) == cifar
    net = off.build(ImageSpec(3, 16, 16, 4)).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), net.logits(x))  # no test-time flip either


def test_small_images_are_refused_by_the_network_and_resized_by_the_model():
    net = SpeedrunNet(1, 10, width=4)
    with pytest.raises(ConfigError, match=r"^The speedrun network needs images of at least 16x16 px, got 8x8"):
        net(torch.randn(2, 1, 8, 8))
    assert Speedrun().input_size(ImageSpec(1, 8, 8, 10)) == (16, 16)
    assert Speedrun().input_size(ImageSpec(3, 28, 28, 10)) == (28, 28)


# ----------------------------------------------------------------------------- the BatchNorms
def test_batchnorm_scales_are_frozen_at_one_and_shifts_learnt(tiny_split):
    torch.manual_seed(0)
    net = SpeedrunNet(3, 4, width=4)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6
    assert all(m.momentum == BN_MOMENTUM == 0.4 and m.eps == BN_EPS == 1e-12 for m in norms)
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    fit(net, tiny_split, recipe(epochs=2), context())
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert any(m.bias.abs().sum() > 0 for m in norms)


# -------------------------------------------------------------------------------- Lookahead
def test_lookahead_arithmetic_by_hand():
    """every 2 steps, decay 0.5, power 1, 4 steps in all: at step 2 the average starts as a copy;
    at step 4 rho = 0.5^2 * (4/4)^1 = 0.25, avg = 0.25 * 1 + 0.75 * 3 = 2.5, and the weight is set
    to it; the epoch's end puts the weight back on the average."""
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    w, bn = model[0].weight, model[1]
    r = TrainRecipe(name="t", epochs=1, lookahead_every=2, lookahead_decay=0.5, lookahead_power=1.0)
    la = Lookahead(model, r, steps_per_epoch=4)
    with torch.no_grad():
        w.fill_(1.0)
        bn.running_mean.fill_(10.0)
        la.after_step(1, 0)  # not a multiple of 2: nothing
        assert la.average is None
        la.after_step(2, 0)  # the first: a copy
        w.fill_(3.0)
        bn.running_mean.fill_(20.0)
        bn.num_batches_tracked.fill_(7)
        la.after_step(3, 0)
        assert w.item() == 3.0
        la.after_step(4, 0)
        assert w.item() == pytest.approx(2.5)
        assert bn.running_mean.item() == pytest.approx(0.25 * 10 + 0.75 * 20)  # buffers too
        assert bn.num_batches_tracked.item() == 7  # integers are counts, not averaged
        w.fill_(7.0)
        la.end_epoch()
        assert w.item() == pytest.approx(2.5)


def test_lookahead_waits_for_its_start_epoch():
    model = nn.Linear(1, 1, bias=False)
    r = TrainRecipe(name="t", epochs=3, lookahead_every=1, lookahead_decay=0.5, lookahead_start_epochs=2)
    la = Lookahead(model, r, steps_per_epoch=2)
    for step, epoch in ((1, 0), (2, 0), (3, 1), (4, 1)):
        la.after_step(step, epoch)
        assert la.average is None
    la.after_step(5, 2)
    assert la.average is not None


def test_lookahead_in_fit_changes_the_weights_only_when_it_fires(tiny_split):
    def trained(**kw) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        net = small_net()
        fit(net, tiny_split, recipe(epochs=2, **kw), context())
        return net.state_dict()

    off = trained()
    never = trained(lookahead_every=10_000, lookahead_decay=0.9)  # never reaches a multiple: no sync
    on = trained(lookahead_every=2, lookahead_decay=0.9)
    assert all(torch.equal(off[k], never[k]) for k in off)
    assert any(not torch.equal(off[k], on[k]) for k in off)


# ----------------------------------------------------------- label smoothing, Nesterov, the loss
def test_label_smoothing_is_torchs_definition():
    g = torch.Generator().manual_seed(0)
    logits, y, s = torch.randn(5, 4, generator=g), torch.tensor([0, 1, 2, 3, 0]), 0.2
    logp = F.log_softmax(logits, 1)
    by_hand = -((1 - s) * logp[torch.arange(5), y] + s / 4 * logp.sum(1)).mean()
    assert training.cross_entropy(logits, y, label_smoothing=s).item() == pytest.approx(by_hand.item(), rel=1e-6)
    part = uk.whole(5)
    assert torch.equal(training.cross_entropy(logits, y, part), F.cross_entropy(logits, y))


def test_label_smoothing_and_nesterov_reach_the_loss_and_the_optimiser_only_when_on(tiny_split, monkeypatch):
    losses: list[dict] = []
    optimisers: list[dict] = []
    real_ce, real_sgd = F.cross_entropy, torch.optim.SGD

    def spy_ce(*args, **kwargs):
        losses.append({"args": len(args), **kwargs})
        return real_ce(*args, **kwargs)

    def spy_sgd(params, **kwargs):
        optimisers.append(kwargs)
        return real_sgd(params, **kwargs)

    monkeypatch.setattr(training.F, "cross_entropy", spy_ce)
    monkeypatch.setattr(training.torch.optim, "SGD", spy_sgd)
    fit(small_net(), tiny_split, recipe(epochs=1), context())
    assert losses and all(c == {"args": 2} for c in losses)  # F.cross_entropy(logits, y), as it always was
    assert optimisers == [{"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "fused": None}]
    losses.clear(), optimisers.clear()
    fit(small_net(), tiny_split, recipe(epochs=1, nesterov=True, label_smoothing=0.2), context())
    assert losses and all(c == {"args": 2, "label_smoothing": 0.2} for c in losses)
    assert optimisers == [{"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "fused": None}]


# ------------------------------------------------------------------ data-dependent initialisation
class Recording(nn.Module):
    """A tiny net that records what ``init_from_data`` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
        self.calls: list[torch.Tensor] = []

    def init_from_data(self, images: torch.Tensor) -> None:
        self.calls.append(images.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def test_fit_gives_the_first_images_in_split_order_unaugmented_once(tiny_split, monkeypatch):
    assert isinstance(Recording(), uk.InitialisesFromData)
    monkeypatch.setattr(training, "INIT_SAMPLE", 5)
    net = Recording()
    fit(net, tiny_split, recipe(epochs=2), context())
    assert len(net.calls) == 1
    assert torch.equal(net.calls[0], tiny_split.pre(tiny_split.x[:5]))  # train=False: no flip, no crop
    monkeypatch.setattr(training, "INIT_SAMPLE", 5000)
    net = Recording()
    init_from_data(net, tiny_split)
    assert net.calls[0].shape[0] == len(tiny_split)  # min(5000, len)


def test_a_model_without_init_from_data_is_untouched(tiny_split, monkeypatch):
    net = small_net()
    assert not isinstance(net, uk.InitialisesFromData)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    monkeypatch.setattr(Split, "subset", lambda *a, **k: pytest.fail("no sample is drawn for it"))
    init_from_data(net, tiny_split)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_fit_whitens_the_speedrun_network_from_its_split(tiny_split):
    torch.manual_seed(0)
    net = SpeedrunNet(3, 4, width=4)
    reference = Whitening(3)
    reference.fit_patches(tiny_split.pre(tiny_split.x))
    fit(net, tiny_split, recipe(epochs=1), context())
    assert bool(net.whiten.fitted)
    assert torch.equal(net.whiten.weight, reference.weight)  # and training never moved it


# ------------------------------------------------------------------------------ end to end
def test_the_speedrun_recipe_trains_an_original_through_the_cli(capsys):
    argv = [
        "run", "--method", "original", "--dataset", "synthetic", "--dataset-option", "size=16",
        "--dataset-option", "channels=3", "--dataset-option", "per_class_train=100", "--model", "speedrun",
        "--model-option", "width=8", "--train-recipe", "speedrun", "--epochs", "6", "--no-retrain", "--json",
    ]  # fmt: skip
    code, out, err = invoke(argv, capsys)
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["method"] == "original" and row["status"] == "finished"
    assert row["metrics"]["acc_retain"] > 0.6  # 4 classes: chance is 0.25
    from unlearnkit.store.mlflow_store import Store

    (train,) = [r for r in Store().search({"run_type": "train"}) if r.tag("role") == "original"]
    assert train.params["train.nesterov"] == "True" and train.params["train.label_smoothing"] == "0.2"


# ----------------------------------------------------------------------------- fixtures
def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 4))


def recipe(**kw) -> TrainRecipe:
    base = {"name": "t", "lr": 0.05, "batch_size": 16, "epochs": 1, "schedule": "constant"}
    return TrainRecipe(**{**base, **kw})


def context() -> uk.UnlearnContext:
    return uk.UnlearnContext(
        device=torch.device("cpu"),
        seed=0,
        setting=Setting("t", "cnn", "instance", 4),
        num_classes=4,
        model_factory=small_net,
    )


@pytest.fixture
def tiny_split() -> Split:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (40, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.arange(40) % 4
    pre = Preprocess.create((0.5,) * 3, (0.25,) * 3, (16, 16), Augment(crop_padding=2, flip=True), torch.device("cpu"))
    return Split("train", x, y, pre)
