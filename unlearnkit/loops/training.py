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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from unlearnkit.api.context import TRAIN_STREAM, UnlearnContext
from unlearnkit.api.data import Augmentation, Split
from unlearnkit.api.data_init import INIT_SAMPLE, InitialisesFromData
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.errors import ConfigError, DivergenceError, PluginError
from unlearnkit.parallel.torchrun import Part

Schedule = Literal["constant", "warmup_linear", "warmup_cosine", "cosine"]
Optimizer = Literal["sgd", "adamw", "adam"]
SCHEDULE_ALIASES = {"onecycle": "warmup_cosine"}  # the old name of warmup + cosine (not torch's OneCycleLR)


class TrainRecipe(BaseModel):
    """How the original and retrained models are trained (one model family's table of a file).
    Every float must be finite: ``lr = inf`` would pass ``gt=0`` and train a model of NaNs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    optimizer: Optimizer = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(20, ge=0)
    schedule: Schedule = "warmup_cosine"
    warmup_epochs: int = Field(0, ge=0)
    # Off unless a recipe sets them, and left out of as_params() while they are off, so every
    # recipe written before they existed keeps its run identity (OPTIONAL_FIELDS).
    nesterov: bool = False  # SGD with Nesterov momentum
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)  # cross-entropy against (1 - s) one-hot + s / K
    # Lookahead to a moving average of the weights (class Lookahead): every `lookahead_every`
    # steps from epoch `lookahead_start_epochs` on, avg <- rho * avg + (1 - rho) * w and then
    # w <- avg, with rho = lookahead_decay ** lookahead_every * (step / total steps) ** lookahead_power;
    # w <- avg again at the end of every epoch. lookahead_every = 0: off.
    lookahead_every: int = Field(default=0, ge=0)
    lookahead_decay: float = Field(default=0.0, ge=0, lt=1)
    lookahead_power: float = Field(default=0.0, ge=0)
    lookahead_start_epochs: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _options_that_need_another(self) -> TrainRecipe:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov = true needs optimizer = 'sgd' and a momentum above 0")
        if (self.lookahead_every > 0) != (self.lookahead_decay > 0):
            raise ValueError("lookahead_every and lookahead_decay go together: set both above 0, or neither")
        if not self.lookahead_every and (self.lookahead_power or self.lookahead_start_epochs):
            raise ValueError("lookahead_power and lookahead_start_epochs need lookahead_every and lookahead_decay")
        return self

    def with_epochs(self, epochs: int | None) -> TrainRecipe:
        """Shorten (or lengthen) the recipe, scaling the warm-up with it. 0 epochs: no training at
        all (the pretrained or given weights are used as they are: the paper's ImageNet original)."""
        if epochs is None or epochs == self.epochs:
            return self
        if epochs < 0:
            raise ConfigError(f"Bad epochs {epochs}: expected 0 (use the weights as they are) or more.")
        warm = round(self.warmup_epochs * epochs / max(1, self.epochs))
        update: dict[str, int] = {"epochs": epochs, "warmup_epochs": max(0, min(warm, epochs - 1))}
        if self.lookahead_start_epochs:
            start = round(self.lookahead_start_epochs * epochs / max(1, self.epochs))
            update["lookahead_start_epochs"] = max(0, min(start, epochs - 1))
        return self.model_copy(update=update)

    def as_params(self) -> dict[str, object]:
        """The recipe as run parameters (they enter the reference models' identity). A field of
        OPTIONAL_FIELDS is left out while it has its default ("off"): the recipes written before
        it existed give the dict, and so the identities, they gave then."""
        return {
            f"train.{k}": v
            for k, v in self.model_dump().items()
            if k not in OPTIONAL_FIELDS or v != TrainRecipe.model_fields[k].default
        }


# Fields added after run identities were first recorded: each defaults to "off" and enters
# ``as_params`` only when a recipe turns it on.
OPTIONAL_FIELDS = frozenset(
    {
        "nesterov",
        "label_smoothing",
        "lookahead_every",
        "lookahead_decay",
        "lookahead_power",
        "lookahead_start_epochs",
    }
)


def builtin_recipe_text(name: str) -> str:
    """The TOML of a training recipe shipped with unlearnkit (``loops/training_recipes/NAME.toml``)."""
    return resources.files("unlearnkit.loops").joinpath("training_recipes", f"{name}.toml").read_text(encoding="utf-8")


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
        try:
            text, label = path.read_text(encoding="utf-8"), path.stem
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"Training recipe '{name_or_path}' is not UTF-8 text (byte {err.start}): save it as UTF-8 TOML."
            ) from None
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
    schedule = table.get("schedule", "constant")
    if isinstance(schedule, str):  # a list or table is left to the check below, which names the valid schedules
        schedule = SCHEDULE_ALIASES.get(schedule, schedule)
    table = {**table, "schedule": schedule}
    valid = ", ".join(sorted(set(TrainRecipe.model_fields) - {"name"}))
    if "name" in table:  # the recipe's name is its file's: a key would collide with it (a TypeError)
        raise ConfigError(f"Unknown key 'name' in training recipe '{name_or_path}'. Valid keys: {valid}.")
    try:
        return TrainRecipe(name=label, **table)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if not key:  # a rule across fields (TrainRecipe._options_that_need_another)
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"Bad training recipe '{name_or_path}': {message}.") from None
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"Unknown key '{key}' in training recipe '{name_or_path}'. Valid keys: {valid}."
            ) from None
        raise ConfigError(f"Bad value for '{key}' in training recipe '{name_or_path}': {first['msg']}.") from None


def make_optimizer(
    params: Iterable[nn.Parameter],
    name: str,
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW with the fastest implementation the device offers (foreach on CPU, fused on CUDA).
    ``nesterov``: SGD with Nesterov momentum (SGD only)."""
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and params[0].is_cuda
    if nesterov and name != "sgd":
        raise ConfigError(f"Nesterov momentum is an SGD option, not one of '{name}'.")
    check_rates(params, name, lr, weight_decay)
    if name == "sgd":  # nesterov passed only when on: with it off, the call is the one it always was
        extra = {"nesterov": True} if nesterov else {}
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra, fused=fused or None
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    raise ConfigError(f"Unknown optimizer '{name}'. Valid optimizers: sgd, adam, adamw.")


#: Adam's (and AdamW's) first step is lr / (1 - beta1) with torch's default beta1 of 0.9
ADAM_FIRST_STEP = 10.0


def check_rates(params: list[nn.Parameter], name: str, lr: float, weight_decay: float) -> None:
    """One line for a rate no step on these weights can take: torch converts SGD's lr, Adam's first
    step (10 lr) and the weight decay of SGD and Adam to the weights' dtype, and past its largest
    value it stops the whole command with "value cannot be converted to type float without overflow"
    (AdamW's decoupled decay is not converted: a huge one diverges, which a run reports)."""
    if not params or not params[0].is_floating_point():
        return
    top = torch.finfo(params[0].dtype).max
    rates = {"lr": lr * (ADAM_FIRST_STEP if name in ("adam", "adamw") else 1.0)}
    if name != "adamw":
        rates["weight_decay"] = weight_decay
    for what, rate in rates.items():
        if abs(rate) > top:
            given = lr if what == "lr" else weight_decay
            raise ConfigError(
                f"Optimizer {name} with {what} {given:g}: a step on {str(params[0].dtype).removeprefix('torch.')} "
                f"weights cannot take it (past {top:.3g}{' for 10 lr, its first step' if rate != given else ''}); "
                f"lower {what}."
            )


def recipe_optimizer(
    params: Iterable[nn.Parameter] | Iterable[torch.Tensor], recipe: TrainRecipe
) -> torch.optim.Optimizer:
    """The optimiser a training recipe names, over ``params`` (a model's, or a pack's stacked ones)."""
    return make_optimizer(
        params,
        recipe.optimizer,
        recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )


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


def drops_single(split: Split, recipe: TrainRecipe) -> bool:
    """``fit``'s rule: a last batch of a single image is dropped (BatchNorm cannot normalise it)."""
    return len(split) % recipe.batch_size == 1 and len(split) > 1


def init_from_data(model: nn.Module, split: Split) -> None:
    """Let a network that computes initial weights from its training images do so
    (:class:`~unlearnkit.api.data_init.InitialisesFromData`): the first ``min(INIT_SAMPLE,
    len(split))`` images in split order, preprocessed but not augmented. Any other network is left
    untouched, and nothing is computed for it."""
    if not isinstance(model, InitialisesFromData) or len(split) == 0:
        return
    n = min(INIT_SAMPLE, len(split))
    sample = split.subset(torch.arange(n, device=split.device))
    with torch.no_grad():
        images = torch.cat([x for x, _ in sample.batches(n)])
        model.init_from_data(images)


class Lookahead:
    """The weights' moving average that ``fit`` pulls them back to (the recipe's ``lookahead_*``).

    Every ``every`` steps from epoch ``start_epochs`` on (``step`` counts the optimisation steps
    taken, from 1), the first such step copies the weights; each later one moves the average to
    them, ``avg <- rho * avg + (1 - rho) * w`` with ``rho = decay ** every * (step / total) **
    power`` (little averaging early, strong averaging late), and sets the weights to it.
    ``end_epoch`` sets the weights to the average, so each epoch, the last included, ends on it.
    Every floating-point parameter and buffer takes part (BatchNorm's running statistics too);
    all of it stays on the device."""

    def __init__(self, model: nn.Module | Sequence[torch.Tensor], recipe: TrainRecipe, steps_per_epoch: int) -> None:
        """``model``: a network, or the tensors to average (a pack's stacked weights and statistics)."""
        tensors = (*model.parameters(), *model.buffers()) if isinstance(model, nn.Module) else tuple(model)
        self.tensors = [t for t in tensors if t.is_floating_point()]
        self.every = recipe.lookahead_every
        self.decay = recipe.lookahead_decay
        self.power = recipe.lookahead_power
        self.start_epochs = recipe.lookahead_start_epochs
        self.total = max(1, recipe.epochs * steps_per_epoch)
        self.average: list[torch.Tensor] | None = None

    @torch.no_grad()
    def after_step(self, step: int, epoch: int) -> None:
        if epoch < self.start_epochs or step % self.every:
            return
        if self.average is None:
            self.average = [t.detach().clone() for t in self.tensors]
            return
        rho = self.decay**self.every * (step / self.total) ** self.power
        for avg, t in zip(self.average, self.tensors):
            avg.lerp_(t, 1 - rho)
            t.copy_(avg)

    @torch.no_grad()
    def end_epoch(self) -> None:
        if self.average is not None:
            for avg, t in zip(self.average, self.tensors):
                t.copy_(avg)


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
    A network that initialises itself from data (``uk.InitialisesFromData``) does so first, from
    ``split``; the recipe's optional parts (Nesterov momentum, label smoothing, Lookahead) apply
    only when it turns them on, and leave the loop's operations as they were when it does not.
    """
    model.train()
    init_from_data(model, split)
    opt = recipe_optimizer(model.parameters(), recipe)
    drop_single = drops_single(split, recipe)
    steps = split.num_batches(recipe.batch_size, drop_last=drop_single)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe, steps))
    gen = ctx.generator(offset=TRAIN_STREAM)
    lookahead = Lookahead(model, recipe, steps) if recipe.lookahead_every else None
    taken = 0  # optimisation steps so far
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
                    loss = cross_entropy(logits, y, part, label_smoothing=recipe.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                taken += 1
                if lookahead is not None:
                    lookahead.after_step(taken, epoch)
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
            if lookahead is not None:
                lookahead.end_epoch()
            diverged, loss_sum, correct = ctx.world.sum(tally).tolist()  # every rank stops alike
            raise_if_diverged(torch.tensor(diverged > 0), f"{description} (epoch {epoch + 1})")
            ctx.log("train_loss", loss_sum / max(seen, 1), epoch)
            ctx.log("train_acc", correct / max(seen, 1), epoch)
    ctx.release(model)
    model.eval()
    return model


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, part: Part | None = None, *, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy over the batch; for one rank's ``part`` of a global batch, its sum scaled
    by ``part.scale``, so that DDP's gradient average is the gradient of the global batch mean.
    ``label_smoothing`` s: against the target (1 - s) * one-hot + s / K (torch's definition)."""
    if not isinstance(logits, torch.Tensor):  # a model plugin's forward returning (logits, features) or a dict
        raise PluginError(
            f"The model's forward returned a {type(logits).__name__}, not a tensor of logits: a model plugin's "
            "network returns its logits alone."
        )
    if label_smoothing:  # passed only when on: with it off, the call is the one fit always made
        if part is None or part.whole:
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        return F.cross_entropy(logits, y, reduction="sum", label_smoothing=label_smoothing) * part.scale
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
