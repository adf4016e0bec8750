"""The paper recipes run the paper's setting: the LoTUS code's architectures, the paper protocol,
and for ImageNet the paper's own protocol (pretrained original, no retrained model, RF-JSD, LoTUS
at batch 256), shown end to end on a small class-folder tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.scale.sweep_recipes import expand, load_recipe

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "recipes").glob("paper-*.toml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_recipes_name_the_papers_architecture_and_protocol(path):
    recipe = load_recipe(path)
    assert recipe.protocol == "paper"
    assert set(recipe.models) <= {"resnet18_lotus", "vit"}, "the LoTUS code's ResNet-18 or the pretrained ViT-B/16"
    if "vit" in recipe.models:
        assert recipe.pretrained
    assert all(cell.request.protocol == "paper" for cell in expand(recipe))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_recipes_run_unsir_at_the_lotus_runs_budget(path):
    """UNSIR's own default is one impair and one repair epoch; the LoTUS tables ran it at the
    per-family budget every other baseline has (ResNet 10 epochs, ViT 3)."""
    from unlearnkit.api.types import Setting
    from unlearnkit_plugins.methods.presets import family_defaults

    recipe = load_recipe(path)
    (family,) = {"vit" if m == "vit" else "resnet" for m in recipe.models}
    lotus_runs = family_defaults(Setting("cifar10", family, "instance", 10))["epochs"]
    assert all(cell.request.options["unsir.epochs"] == lotus_runs for cell in expand(recipe))


def fake_imagenet(root: Path, wnids: tuple[str, ...] = ("n01440764", "n01443537"), train: int = 10, val: int = 6):
    """train/<wnid>/<wnid>_<i>.JPEG and val/<wnid>/ILSVRC2012_val_<n>.JPEG, odd sizes (resize + crop run)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    n = 0
    for c, wnid in enumerate(wnids):
        for split, count in (("train", train), ("val", val)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (rng.random((60 + 7 * c, 80, 3)) * 60 + 100 * c).astype(np.uint8)
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{n:08d}.JPEG"
                n += 1
                Image.fromarray(pixels).save(folder / name, quality=95)
    return root


def vit_b16_file(path: Path) -> Path:
    """A ViT-B/16 state dict standing in for the pretrained checkpoint (no download offline)."""
    import timm
    import torch

    torch.manual_seed(0)
    torch.save(timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=1000).state_dict(), path)
    return path


def test_imagenet_recipe_plans_the_papers_imagenet_protocol(host, tmp_path):
    """Fast: the recipe's plan (validated against a tiny ImageNet tree) is the paper's protocol."""
    from unlearnkit.api.types import Setting
    from unlearnkit.engine.config import validate

    (cell,) = expand(load_recipe(ROOT / "recipes" / "paper-imagenet-vit.toml"), {"data_dir": fake_imagenet(tmp_path)})
    plan = validate(cell.request, host.registries)
    assert plan.request.epochs == 0 and plan.request.no_retrain and plan.protocol.name == "paper"
    assert all(m.cls.role != "retrained" for m in plan.methods) and plan.methods[0].cls.role == "original"
    lotus = next(m for m in plan.methods if m.name == "lotus")
    assert plan.method_options(lotus, Setting("imagenet", "vit", "instance", 1000)).batch_size == 256
    assert plan.dataset_obj.options.train_per_class == 50 and plan.scenario.key == "instance:0.1"


@pytest.mark.slow
def test_imagenet_recipe_runs_the_papers_imagenet_protocol(host, tmp_path):
    """End to end with a ViT-B/16 on the CPU: minutes (several 344 MB checkpoints are written)."""
    from unlearnkit.board.leaderboard import leaderboard, metric_info
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.store.mlflow_store import Store

    doc = tomllib.loads((ROOT / "recipes" / "paper-imagenet-vit.toml").read_text())
    assert (doc["epochs"], doc["no_retrain"], doc["pretrained"], doc["protocol"]) == (0, True, True, "paper")
    # this machine has neither ImageNet nor the pretrained weights: a tiny tree and a stand-in
    # checkpoint replace them; one method and one seed keep it short. Everything else is the file's.
    recipe = tmp_path / "imagenet.toml"
    weights = vit_b16_file(tmp_path / "vit_b16.pt")
    body = (ROOT / "recipes" / "paper-imagenet-vit.toml").read_text()
    body = body.replace(
        'methods = ["lotus", "finetune", "neggrad_plus", "random_label", "bad_teacher", "scrub", '
        '"ssd", "unsir", "salun"]',
        'methods = ["lotus"]',
    )
    body = body.replace("seeds = [3407, 13, 12]", "seeds = [3407]")
    body = body.replace("pretrained = true ", f'weights = "{weights}"\npretrained = false ')
    body = body.replace("train_per_class = 50 ", "train_per_class = 10 ")
    recipe.write_text(body)
    store = Store()
    job = Sweep(recipe, host.registries, store, data_dir=fake_imagenet(tmp_path / "imagenet"), device="cpu")
    report = job.run()
    assert report.counts["finished"] == 2 and not report.failed  # original + lotus, no retrained row
    assert store.search({"run_type": "train", "role": "retrained"}, finished_only=False) == []
    (trained,) = store.search({"run_type": "train", "role": "original"})
    assert trained.params["train.epochs"] == "0"  # the "pretrained" weights are the original, unchanged
    (lotus,) = store.search({"run_type": "unlearn", "method": "lotus"})
    assert lotus.params["method.batch_size"] == "256" and lotus.tag("protocol") == "paper"
    assert "rf_jsd" in lotus.metrics and "jsd" not in lotus.metrics
    assert int(lotus.params["n_forget"]) == 2 and int(lotus.params["n_retain"]) == 18  # first 1 + next 9 per class
    (board,) = leaderboard(store, metric_info(host.registries))
    assert "protocol: paper" in board.title and [r.method for r in board.rows] == ["original", "lotus"]
