"""Model plugins: every registered architecture builds, trains and is seeded; weights load or fail clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.api.contracts import Model
from unlearnkit.api.types import ImageSpec
from unlearnkit.errors import ConfigError
from unlearnkit.loops.threads import pinned_threads
from unlearnkit_plugins.models import register_models


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy CPU spinning OpenMP threads cost 5x."""
    with pinned_threads(1):
        yield


def registered() -> list[type[Model]]:
    found: list[type[Model]] = []
    register_models(found.append)
    return found


MODELS = {cls.name: cls for cls in registered()}
SPECS = [ImageSpec(1, 8, 8, 10), ImageSpec(3, 32, 32, 10), ImageSpec(1, 28, 28, 10)]
# A model that needs a variant cannot be built bare (documented); timm is exercised as timm/resnet18.
EXAMPLE_VARIANTS = {"timm": "resnet18"}
CASES = [
    pytest.param(cls, EXAMPLE_VARIANTS.get(name) if cls.accepts_variant else None, id=name)
    for name, cls in MODELS.items()
]


def make(cls: type[Model], variant: str | None, **kwargs) -> Model:
    if cls.accepts_variant and variant is None:
        pytest.skip(f"{cls.name} needs a variant and has no example in EXAMPLE_VARIANTS")
    return cls(variant=variant, **kwargs)


def seeded_build(model: Model, spec: ImageSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return model.build(spec)


def same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: set[str] = frozenset()) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


def batch(model: Model, spec: ImageSpec, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    h, w = model.input_size(spec)
    return torch.randn(n, spec.channels, h, w, generator=g), torch.arange(n) % spec.num_classes


# ------------------------------------------------------------------------------------- every model
def test_registration_lists_every_model_once_with_metadata():
    classes = registered()
    assert len({c.name for c in classes}) == len(classes)
    assert {"resnet18", "resnet18_lotus", "resnet20", "cnn", "vit", "vit_tiny", "vit_small", "timm"} <= set(MODELS)
    for cls in classes:
        assert cls.summary and "\n" not in cls.summary and len(cls.summary) <= 120, cls.name
        assert cls.family in ("resnet", "vit", "cnn"), cls.name


def test_registration_imports_neither_torch_nor_timm():
    code = (
        "import sys; from unlearnkit_plugins.models import register_models; found = []; "
        "register_models(found.append); assert found; "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.channels}x{s.height}x{s.width}")
@pytest.mark.parametrize(("cls", "variant"), CASES)
def test_builds_and_maps_images_to_logits(cls, variant, spec):
    model = make(cls, variant)
    net = seeded_build(model, spec)
    x, _ = batch(model, spec, n=2)
    with torch.no_grad():
        logits = net.eval()(x)
    assert logits.shape == (2, spec.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("cls", "variant"), CASES)
def test_seeded_init_and_a_few_sgd_steps_reduce_the_loss(cls, variant):
    spec = SPECS[0]
    model = make(cls, variant)
    net = seeded_build(model, spec)
    assert same_weights(net, seeded_build(model, spec)), "same seed must give identical initial weights"
    assert not same_weights(net, seeded_build(model, spec, seed=1)), "the seed must matter"
    x, y = batch(model, spec)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with torch.no_grad():
        before = F.cross_entropy(net(x), y)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        after = F.cross_entropy(net(x), y)
    assert after < before, f"{cls.name}: loss {before.item():.4f} -> {after.item():.4f}"


def test_models_needing_a_variant_say_so():
    for cls in MODELS.values():
        if cls.accepts_variant:
            with pytest.raises(ConfigError, match="needs a timm model name"):
                cls()


@pytest.mark.parametrize(
    ("name", "variant", "flag"),
    [("resnet18", None, True), ("resnet20", None, True), ("cnn", None, True), ("vit", None, False)]
    + [("vit_tiny", None, False), ("timm", "resnet18", True), ("timm", "vit_tiny_patch16_224", False)],
)
def test_channels_last_only_for_convnets(name, variant, flag):
    assert MODELS[name](variant=variant).channels_last is flag


# ------------------------------------------------------------------------------------ architectures
def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_resnet18_is_the_literatures_cifar_resnet18():
    net = MODELS["resnet18"]().build(ImageSpec(3, 32, 32, 10))
    assert n_params(net) == 11_173_962
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert MODELS["resnet18"]().model_family() == "resnet"


def test_resnet18_lotus_matches_the_lotus_code():
    net = MODELS["resnet18_lotus"]().build(ImageSpec(3, 32, 32, 10))
    assert n_params(net) == 11_524_426
    assert (net.maxpool.kernel_size, net.maxpool.stride, net.maxpool.padding) == (3, 2, 1)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    assert len(blocks) == 8 and all(b.identity_conv.kernel_size == (1, 1) for b in blocks)


def test_resnet20_and_cnn_sizes():
    spec = ImageSpec(3, 32, 32, 10)
    assert n_params(MODELS["resnet20"]().build(spec)) == 272_474
    assert n_params(MODELS["cnn"]().build(spec)) == 94_762
    wide = MODELS["cnn"](MODELS["cnn"].parse_options({"width": 8})).build(spec)
    assert n_params(wide) < 10_000


@pytest.mark.parametrize(("size", "grid", "width"), [(8, 2, 96), (16, 4, 96), (28, 7, 192), (32, 8, 192)])
def test_vit_is_sized_to_the_images(size, grid, width):
    """Up to 16 px a narrow 3-block ViT on 4 px patches (it memorises digits in a CPU minute); above,
    ViT-Tiny's width on patches from the patch rule."""
    model = MODELS["vit"]()
    spec = ImageSpec(3, size, size, 10)
    net = model.build(spec)
    assert tuple(net.patch_embed.grid_size) == (grid, grid) and net.embed_dim == width
    assert len(net.blocks) == (3 if size <= 16 else 6)
    assert model.input_size(spec) == (size, size)
    assert model.model_family() == "vit-scratch"


def test_patch_rule():
    from unlearnkit_plugins.models.vit import patch_size_for

    assert {s: patch_size_for(s, s) for s in (8, 16, 28, 32, 64, 128, 224)} == {
        8: 2,
        16: 2,
        28: 4,
        32: 4,
        64: 8,
        128: 16,
        224: 16,
    }


def test_vit_options():
    vit = MODELS["vit"]
    net = vit(vit.parse_options({"patch_size": 8, "embed_dim": 64, "depth": 2, "heads": 4})).build(
        ImageSpec(3, 32, 32, 10)
    )
    assert tuple(net.patch_embed.grid_size) == (4, 4) and len(net.blocks) == 2 and net.embed_dim == 64
    with pytest.raises(ConfigError, match="not divisible"):
        vit.parse_options({"embed_dim": 100, "heads": 3})
    with pytest.raises(ConfigError, match="larger than the 8x8 images"):
        vit(vit.parse_options({"patch_size": 16})).build(ImageSpec(1, 8, 8, 10))
    with pytest.raises(ConfigError, match="ViT-B/16"):
        vit(vit.parse_options({"depth": 2}), pretrained=True)


def test_vit_family_and_size_follow_pretrained(tmp_path):
    spec = ImageSpec(3, 32, 32, 10)
    for model in (MODELS["vit"](pretrained=True), MODELS["vit"](weights=tmp_path / "b16.pt")):
        assert model.model_family() == "vit" and model.input_size(spec) == (224, 224)
    assert MODELS["vit_small"]().model_family() == "vit-scratch"


def test_timm_names_sizes_and_families():
    timm_cls = MODELS["timm"]
    spec = ImageSpec(3, 32, 32, 10)
    assert timm_cls(variant="resnet18").input_size(spec) == (32, 32)  # convnets take any size
    vit = timm_cls(variant="vit_tiny_patch16_224")
    assert vit.input_size(spec) == (224, 224)  # fixed-size models keep theirs
    assert vit.model_family() == "vit-scratch" and timm_cls(variant="resnet18").model_family() == "cnn"
    with pytest.raises(ConfigError, match="Unknown timm model 'resnt18'. Did you mean 'resnet18'"):
        timm_cls(variant="resnt18")
    with pytest.raises(ConfigError, match="no pretrained tag 'nope'"):
        timm_cls(variant="resnet18.nope")


def test_no_pretrained_weights_for_our_own_architectures():
    for name in ("resnet18", "resnet18_lotus", "resnet20", "cnn", "vit_tiny", "vit_small"):
        with pytest.raises(ConfigError, match=f"Model '{name}' has no pretrained weights"):
            MODELS[name](pretrained=True)


# ---------------------------------------------------------------------------------------- weights
WEIGHT_CASES = [c for c in CASES if c.id != "vit"]  # vit + weights means ViT-B/16: see the slow test


@pytest.mark.parametrize(("cls", "variant"), WEIGHT_CASES)
def test_weights_round_trip_and_new_head(cls, variant, tmp_path):
    spec = ImageSpec(1, 8, 8, 10)
    source = seeded_build(make(cls, variant), spec, seed=3)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)

    loaded = seeded_build(make(cls, variant, weights=path), spec)
    assert same_weights(loaded, source)

    other = ImageSpec(1, 8, 8, 4)
    fresh = seeded_build(make(cls, variant), other, seed=5)
    adapted = seeded_build(make(cls, variant, weights=path), other, seed=5)
    head = {k for k, v in fresh.state_dict().items() if v.shape != source.state_dict()[k].shape}
    assert head, "some head tensor must change shape with the number of classes"
    assert same_weights(adapted, source, skip=head), "the backbone must come from the file"
    assert all(torch.equal(adapted.state_dict()[k], fresh.state_dict()[k]) for k in head), "head must be fresh"


def test_checkpoint_wrappers_prefixes_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = MODELS["resnet20"]
    spec = ImageSpec(3, 16, 16, 10)
    source = seeded_build(model(), spec, seed=3)
    state = source.state_dict()
    torch.save({"epoch": 7, "state_dict": {f"module._orig_mod.{k}": v for k, v in state.items()}}, tmp_path / "c.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in ("c.pt", "w.safetensors"):
        assert same_weights(model(weights=tmp_path / name).build(spec), source), name


def test_weights_of_another_architecture_name_the_key_and_shapes(tmp_path):
    spec = ImageSpec(3, 32, 32, 10)
    path = tmp_path / "resnet20.pt"
    torch.save(MODELS["resnet20"]().build(spec).state_dict(), path)
    with pytest.raises(ConfigError) as err:
        MODELS["resnet18"](weights=path).build(spec)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "'resnet18'" in msg
    assert "'conv1.weight' is (16, 3, 3, 3) in the file but (64, 3, 3, 3) in the model" in msg
    with pytest.raises(ConfigError, match=r"'features.0.weight' is missing from the file .*'conv1.weight'"):
        MODELS["cnn"](weights=path).build(spec)


def test_missing_or_unreadable_weights_file(tmp_path):
    spec = ImageSpec(1, 8, 8, 10)
    missing = tmp_path / "nope.pt"
    with pytest.raises(ConfigError, match=f"Weights file '{missing}' does not exist"):
        MODELS["cnn"](weights=missing).build(spec)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=f"Weights file '{junk}' could not be read"):
        MODELS["cnn"](weights=junk).build(spec)
    torch.save({"lr": torch.tensor(0.1), "note": "hello"}, tmp_path / "odd.pt")
    with pytest.raises(ConfigError, match="does not hold a state dict"):
        MODELS["cnn"](weights=tmp_path / "odd.pt").build(spec)


# ---------------------------------------------------------------------------------- offline timm
@pytest.fixture
def offline(monkeypatch):
    """timm.create_model as it behaves when a download fails (the Hub answers the reachability probe:
    tests/test_loader_usage.py covers an unreachable one)."""
    import timm

    from unlearnkit_plugins.models import timm_models

    monkeypatch.setattr(timm_models, "hub_reachable", lambda timeout=0.0: True)
    calls = []
    real = timm.create_model

    def fake(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load this file.\nCheck your connection.")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake)
    return calls


def test_pretrained_vit_offline_is_a_config_error(offline):
    with pytest.raises(ConfigError) as err:
        MODELS["vit"](pretrained=True).build(ImageSpec(3, 32, 32, 10))
    msg = str(err.value)
    assert msg.startswith("Pretrained ViT-B/16 weights could not be loaded (OSError: We couldn't connect")
    assert "no internet?" in msg and "--weights FILE" in msg and "\n" not in msg
    assert offline == [("vit_base_patch16_224.orig_in21k_ft_in1k", True)]


def test_pretrained_timm_offline_is_a_config_error(offline):
    with pytest.raises(ConfigError, match="timm model 'resnet18' could not be loaded .*--weights FILE"):
        MODELS["timm"](variant="resnet18", pretrained=True).build(ImageSpec(3, 32, 32, 10))


@pytest.mark.slow
def test_vit_b16_from_weights_adapts_head_and_channels(tmp_path, offline):
    """A downloaded ImageNet ViT-B/16 state dict (3 channels, 1000 classes) on grey 10-class data."""
    import timm

    source = timm.create_model("vit_base_patch16_224", num_classes=1000)
    path = tmp_path / "vit_b16.pt"
    torch.save(source.state_dict(), path)
    offline.clear()
    model = MODELS["vit"](weights=path)
    spec = ImageSpec(1, 28, 28, 10)
    net = model.build(spec)
    assert offline == [("vit_base_patch16_224", False)]  # --weights never downloads
    assert model.input_size(spec) == (224, 224) and model.model_family() == "vit"
    assert n_params(net) == 85_806_346 - 2 * 768 * 16 * 16
    assert torch.equal(net.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)
    assert torch.allclose(net.patch_embed.proj.weight, source.patch_embed.proj.weight.sum(1, keepdim=True))
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 1, 224, 224)).shape == (2, 10)
