"""Training recipes and the compact loops every part of the toolkit shares.

The original model and the retrained gold standard are trained here; methods reuse
``fit``/``accuracy``/``predict_logits`` so every loop has the same device, autocast and
no-host-sync discipline: losses stay on the device, and finiteness is checked once per epoch.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.context import UnlearnContext
from unlearnkit.data import Split
from unlearnkit.errors import ConfigError, DivergenceError

SCHEDULES = ("constant", "warmup_linear", "onecycle", "cosine")
OPTIMIZERS = ("sgd", "adamw", "adam")


@dataclass(frozen=True)
class TrainRecipe:
    """How the original and retrained models are trained (one model family's table of a file)."""

    name: str
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 20
    schedule: str = "onecycle"
    warmup_epochs: int = 0

    def with_epochs(self, epochs: int | None) -> TrainRecipe:
        """Shorten (or lengthen) the recipe, scaling the warm-up with it."""
        if epochs is None or epochs == self.epochs:
            return self
        if epochs < 1:
            raise ConfigError(f"Bad epochs {epochs}: expected a positive integer.")
        warm = round(self.warmup_epochs * epochs / self.epochs)
        return replace(self, epochs=epochs, warmup_epochs=min(warm, epochs - 1))

    def as_params(self) -> dict[str, object]:
        return {f"train.{k}": v for k, v in asdict(self).items()}


def builtin_recipes() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("unlearnkit.train_recipes").iterdir() if p.name.endswith(".toml")
    )


def load_train_recipe(name_or_path: str, family: str) -> TrainRecipe:
    """A built-in recipe by name (``paper``, ``fast``) or a TOML file, for one model family."""
    path = Path(name_or_path)
    if name_or_path in builtin_recipes():
        text = resources.files("unlearnkit.train_recipes").joinpath(f"{name_or_path}.toml").read_text()
        label = name_or_path
    elif path.suffix == ".toml" and path.is_file():
        text, label = path.read_text(), path.stem
    else:
        raise ConfigError(
            f"Unknown training recipe '{name_or_path}'. Valid recipes: {', '.join(builtin_recipes())}, or a .toml file."
        )
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Training recipe '{name_or_path}' is not valid TOML: {err}.") from None
    table = doc.get(family) or doc.get("default")
    if not isinstance(table, dict):
        raise ConfigError(f"Training recipe '{name_or_path}' has no [{family}] or [default] table.")
    allowed = set(TrainRecipe.__dataclass_fields__) - {"name"}
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(
            f"Unknown key '{sorted(unknown)[0]}' in training recipe '{name_or_path}'. Valid keys: {', '.join(sorted(allowed))}."
        )
    recipe = TrainRecipe(name=label, **table)
    if recipe.schedule not in SCHEDULES:
        raise ConfigError(f"Bad schedule '{recipe.schedule}' in '{name_or_path}'. Valid: {', '.join(SCHEDULES)}.")
    if recipe.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Bad optimizer '{recipe.optimizer}' in '{name_or_path}'. Valid: {', '.join(OPTIMIZERS)}.")
    return recipe


def make_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW with the fastest implementation the device offers (foreach on CPU, fused on CUDA)."""
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and params[0].is_cuda
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused or None)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    raise ConfigError(f"Unknown optimizer '{name}'. Valid optimizers: {', '.join(OPTIMIZERS)}.")


def lr_lambda(recipe: TrainRecipe, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at each optimisation step."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warm = recipe.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if recipe.schedule == "constant":
            return 1.0
        if recipe.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if step < warm:  # warmup_linear and onecycle share a linear warm-up
            return (step + 1) / warm
        rest = max(1, total - warm)
        if recipe.schedule == "warmup_linear":
            return max(0.0, 1 - (step - warm) / rest)
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, rest) / rest))  # onecycle: cosine annealing

    return factor


def raise_if_diverged(flag: torch.Tensor, what: str) -> None:
    """One host sync per epoch: fail clearly instead of training on NaNs."""
    if bool(flag):
        raise DivergenceError(f"{what} diverged: the loss became NaN or infinite.")


def fit(
    model: nn.Module,
    split: Split,
    recipe: TrainRecipe,
    ctx: UnlearnContext,
    description: str = "train",
) -> nn.Module:
    """Supervised training with cross-entropy under ``recipe`` (original and retrained models)."""
    model.train()
    opt = make_optimizer(
        model.parameters(), recipe.optimizer, recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    steps = split.num_batches(recipe.batch_size, drop_last=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe, steps))
    gen = ctx.generator(offset=17)
    forward = ctx.compiled(model)
    for epoch in ctx.track(range(recipe.epochs), total=recipe.epochs, description=description):
        diverged = torch.zeros((), dtype=torch.bool, device=ctx.device)
        for x, y in split.batches(recipe.batch_size, shuffle=True, augment=True, generator=gen, drop_last=True):
            with ctx.autocast():
                loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            diverged |= ~torch.isfinite(loss.detach())
        raise_if_diverged(diverged, f"{description} (epoch {epoch + 1})")
    model.eval()
    return model


@torch.inference_mode()
def predict_logits(
    model: nn.Module, split: Split, ctx: UnlearnContext | None = None, batch_size: int = 1024
) -> torch.Tensor:
    """Float32 logits of ``model`` (eval mode) over ``split``, in split order."""
    was_training = model.training
    model.eval()
    outs = []
    autocast = ctx.autocast() if ctx is not None else torch.autocast("cuda", dtype=torch.bfloat16, enabled=False)
    with autocast:
        for x, _ in split.batches(batch_size):
            outs.append(model(x).float())
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0, device=split.device)
    return torch.cat(outs)


def accuracy(model: nn.Module, split: Split, ctx: UnlearnContext | None = None, batch_size: int = 1024) -> float:
    """Top-1 accuracy in eval mode (one host sync)."""
    if len(split) == 0:
        return float("nan")
    logits = predict_logits(model, split, ctx, batch_size)
    return float((logits.argmax(1) == split.y).float().mean())


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(z)_k (targets are distributions)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
