"""Training recipes and the compact loops every part of the toolkit shares.

The original model and the retrained gold standard are trained here; methods reuse
``fit``/``accuracy``/``predict_logits`` so every loop has the same device, autocast and
no-host-sync discipline: losses stay on the device, and finiteness is checked once per epoch.
Under torchrun ``fit`` trains data-parallel (:mod:`unlearnkit.ddp`): each rank takes its part of
every global batch, and the epoch's numbers and divergence flag are summed over the ranks.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol, TypeAlias, Unpack, runtime_checkable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from unlearnkit.api.context import TRAIN_STREAM, UnlearnContext
from unlearnkit.api.data import Augmentation, Split
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.parallel.torchrun import Part

Schedule = Literal["constant", "warmup_linear", "warmup_cosine", "cosine"]
Optimizer = Literal["sgd", "adamw", "adam"]
SCHEDULE_ALIASES = {"onecycle": "warmup_cosine"}  # the old name of warmup + cosine (not torch's OneCycleLR)


class TrainRecipe(BaseModel):
    """How the original and retrained models are trained (one model family's table of a file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    optimizer: Optimizer = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(20, ge=0)
    schedule: Schedule = "warmup_cosine"
    warmup_epochs: int = Field(0, ge=0)

    def with_epochs(self, epochs: int | None) -> TrainRecipe:
        """Shorten (or lengthen) the recipe, scaling the warm-up with it. 0 epochs: no training at
        all (the pretrained or given weights are used as they are: the paper's ImageNet original)."""
        if epochs is None or epochs == self.epochs:
            return self
        if epochs < 0:
            raise ConfigError(f"Bad epochs {epochs}: expected 0 (use the weights as they are) or more.")
        warm = round(self.warmup_epochs * epochs / max(1, self.epochs))
        return self.model_copy(update={"epochs": epochs, "warmup_epochs": max(0, min(warm, epochs - 1))})

    def as_params(self) -> dict[str, object]:
        return {f"train.{k}": v for k, v in self.model_dump().items()}


def builtin_recipe_text(name: str) -> str:
    """The TOML of a training recipe shipped with unlearnkit (``loops/training_recipes/NAME.toml``)."""
    return resources.files("unlearnkit.loops").joinpath("training_recipes", f"{name}.toml").read_text()


def builtin_recipes() -> list[str]:
    folder = resources.files("unlearnkit.loops").joinpath("training_recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_train_recipe(name_or_path: str, family: str) -> TrainRecipe:
    """A built-in recipe by name (``paper``, ``fast``, ``quick``) or a TOML file, for one model family."""
    path = Path(name_or_path)
    if name_or_path in builtin_recipes():
        text = builtin_recipe_text(name_or_path)
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
    table = {**table, "schedule": SCHEDULE_ALIASES.get(table.get("schedule", ""), table.get("schedule", "constant"))}
    try:
        return TrainRecipe(name=label, **table)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(sorted(set(TrainRecipe.model_fields) - {"name"}))
            raise ConfigError(
                f"Unknown key '{key}' in training recipe '{name_or_path}'. Valid keys: {valid}."
            ) from None
        raise ConfigError(f"Bad value for '{key}' in training recipe '{name_or_path}': {first['msg']}.") from None


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
    raise ConfigError(f"Unknown optimizer '{name}'. Valid optimizers: sgd, adam, adamw.")


def lr_lambda(recipe: TrainRecipe, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at each optimisation step."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warm = recipe.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if recipe.schedule == "constant":
            return 1.0
        if recipe.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if step < warm:  # warmup_linear and warmup_cosine share a linear warm-up
            return (step + 1) / warm
        rest = max(1, total - warm)
        if recipe.schedule == "warmup_linear":
            return max(0.0, 1 - (step - warm) / rest)
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, rest) / rest))  # warmup_cosine

    return factor


@runtime_checkable
class Diverging(Protocol):
    """What an epoch loop returns that can say whether it diverged (``loops.helpers.EpochLoss``)."""

    def diverged(self) -> torch.Tensor:
        """A one-element bool tensor on the device: True if a step loss was NaN or infinite."""
        ...


DivergenceSignal: TypeAlias = torch.Tensor | bool | Diverging | Sequence[Diverging]


def divergence_flag(signal: DivergenceSignal, what: str) -> torch.Tensor | bool:
    """``signal`` as a flag, refusing what only looks like one: an ``EpochLoss`` or a loss tensor
    is always truthy, so testing it would report a divergence that never happened."""
    if isinstance(signal, bool):
        return signal
    if isinstance(signal, torch.Tensor) and signal.dtype == torch.bool and signal.numel() == 1:
        return signal
    if isinstance(signal, Diverging):
        return signal.diverged()
    if isinstance(signal, tuple | list) and signal and all(isinstance(s, Diverging) for s in signal):
        return torch.stack([s.diverged().reshape(()) for s in signal]).any()
    if isinstance(signal, torch.Tensor):
        given = f"a {str(signal.dtype).removeprefix('torch.')} tensor of shape {tuple(signal.shape)}"
    else:
        given = f"a {type(signal).__name__}"
    raise TypeError(
        f"raise_if_diverged({what!r}) takes the flag of uk.no_divergence/uk.step (a one-element bool tensor) "
        f"or what an epoch loop returns (an EpochLoss or a tuple of them), not {given}."
    )


def raise_if_diverged(flag: DivergenceSignal, what: str) -> None:
    """One host sync per epoch: fail clearly instead of training on NaNs.

    ``flag`` is the device flag that ``uk.no_divergence`` and ``uk.step`` accumulate, or what an
    epoch loop returns (``uk.ce_epoch``'s ``EpochLoss``, ``uk.relabel_epoch``'s pair of them).
    Anything else raises ``TypeError``. ``uk.log_losses`` also logs the losses' means."""
    if bool(divergence_flag(flag, what)):
        raise DivergenceError(f"{what} diverged: the loss became NaN or infinite.")


def fit(
    model: nn.Module,
    split: Split,
    recipe: TrainRecipe,
    ctx: UnlearnContext,
    description: str = "train",
) -> nn.Module:
    """Supervised training with cross-entropy under ``recipe`` (original and retrained models).

    Every sample is seen once per epoch, the last partial batch included, as the official LoTUS
    loaders do (only a last batch of a single image is dropped: BatchNorm cannot normalise it).
    Training loss and accuracy (on the augmented batches) are logged per epoch through ``ctx.log``.
    """
    model.train()
    opt = make_optimizer(
        model.parameters(), recipe.optimizer, recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    drop_single = len(split) % recipe.batch_size == 1 and len(split) > 1
    steps = split.num_batches(recipe.batch_size, drop_last=drop_single)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe, steps))
    gen = ctx.generator(offset=TRAIN_STREAM)
    forward = ctx.compiled(ctx.parallel(model))
    with ctx.steps(description, recipe.epochs * steps) as advance:
        for epoch in range(recipe.epochs):
            # [diverged, loss sum, correct]: accumulated on the device, read once per epoch
            tally = torch.zeros(3, dtype=torch.float64, device=ctx.device)
            seen = 0
            for x, y, _, part in split.sharded_batches(
                recipe.batch_size, ctx.world, shuffle=True, augment=True, generator=gen, drop_last=drop_single
            ):
                with ctx.autocast():
                    logits = forward(x)
                    loss = cross_entropy(logits, y, part)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                detached = loss.detach()
                tally += torch.stack(
                    [
                        (~torch.isfinite(detached)).double(),
                        part.loss_sum(detached.double()),
                        (logits.detach().argmax(1) == y).sum().double(),
                    ]
                )
                seen += part.total
                advance()
            diverged, loss_sum, correct = ctx.world.sum(tally).tolist()  # every rank stops alike
            raise_if_diverged(torch.tensor(diverged > 0), f"{description} (epoch {epoch + 1})")
            ctx.log("train_loss", loss_sum / max(seen, 1), epoch)
            ctx.log("train_acc", correct / max(seen, 1), epoch)
    ctx.release(model)
    model.eval()
    return model


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, part: Part | None = None) -> torch.Tensor:
    """Mean cross-entropy over the batch; for one rank's ``part`` of a global batch, its sum scaled
    by ``part.scale``, so that DDP's gradient average is the gradient of the global batch mean."""
    if part is None or part.whole:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits, y, reduction="sum") * part.scale


def accuracy(
    model: nn.Module,
    split: Split,
    ctx: UnlearnContext | None = None,
    batch_size: int = 1024,
    **augmentation: Unpack[Augmentation],
) -> float:
    """Top-1 accuracy in eval mode (one host sync) of :func:`predict_logits`'s pass."""
    if len(split) == 0:
        return float("nan")
    logits = predict_logits(model, split, ctx, batch_size, **augmentation)
    return float((logits.argmax(1) == split.y).float().mean())


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, part: Part | None = None) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(z)_k (targets are distributions); for one
    rank's ``part`` of a global batch, the scaled sum of :func:`cross_entropy`."""
    if part is None or part.whole:
        return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
    return -(target * F.log_softmax(logits.float(), dim=1)).sum() * part.scale
