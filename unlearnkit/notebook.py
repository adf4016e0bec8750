"""Unlearn a model you already hold, in a notebook: no CLI, no store, no training of references.

    import unlearnkit as uk
    result = uk.unlearn(model, forget=(x_f, y_f), retain=(x_r, y_r), unseen=(x_u, y_u), method="lotus")
    result.model      # the unlearned copy (your model is left untouched)
    result.metrics    # every metric the splits allow (test= adds the MIA, retrained= the gold-standard ones)

Splits are ``(images, labels)`` tensor pairs or any ``torch.utils.data.Dataset`` of such pairs,
every split with the same image shape. Images are uint8 NCHW (scaled to [0, 1], then normalised
with ``mean``/``std`` and augmented with ``augment``) or float tensors already prepared for the
model (used as they are when ``mean``/``std`` are left out).

``method`` is a registered method's name or a ``uk.Method`` subclass of your own, checked as
registering it would check it: a method written in the notebook runs without a package.
"""

from __future__ import annotations

import copy
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Method, Metric, UnlearnOutcome, described
from unlearnkit.api.data import Preprocess, Split, UnlearnData
from unlearnkit.api.evaluation import Evaluation, MissingModel
from unlearnkit.api.outcome import returned_outcome
from unlearnkit.api.protocols import get_protocol
from unlearnkit.api.types import Augment, Setting
from unlearnkit.discovery.registry import Entry, Provenance, Registry
from unlearnkit.errors import ConfigError, DivergenceError, shorten
from unlearnkit.loops.accounting import ready_to_time
from unlearnkit.loops.helpers import reinitialise_

SplitLike = Any  # (images, labels) or a torch Dataset of (image, label)
SPLITS = ("forget", "retain", "unseen", "test")  # the splits uk.unlearn takes


@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns: the unlearned copy of the model (in eval mode), the seconds the
    method took, the numbers the method reported (``UnlearnOutcome.info``) and every metric computed."""

    model: nn.Module
    time_s: float
    info: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def as_tensors(data: SplitLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a pair of tensors/arrays or a map-style Dataset."""
    expected = f"The {what} split must be (images, labels) or a Dataset of (image, label) pairs"
    if isinstance(data, str | bytes | Mapping):  # indexable and sized, but no Dataset: "abc"[0] is "a"
        raise ConfigError(f"{expected}, not a {type(data).__name__}.")
    try:
        x, y = read_pairs(data, what)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as err:  # what torch says of other data
        raise ConfigError(f"{expected}: {shorten(err)}.") from None
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise ConfigError(
            f"The {what} split must be images (N, C, H, W) and labels (N,); got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    check_values(x, y, what)
    return x, y.long()


def read_pairs(data: SplitLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's images and labels as tensors, as given (a pair, or a Dataset read item by item)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = (torch.as_tensor(v) for v in data)
        return x, y
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        pairs = [data[i] for i in range(len(data))]
        if not pairs:
            raise ConfigError(f"The {what} split is empty.")
        labels = [torch.as_tensor(p[1]).reshape(()) for p in pairs]  # an int, or a one-element tensor
        return torch.stack([torch.as_tensor(p[0]) for p in pairs]), torch.stack(labels)
    raise TypeError(f"got a {type(data).__name__}")


def check_values(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """Labels that are class ids and images that are numbers: ``long()`` would read the label 0.7 as
    class 0, and NaN pixels give NaN outputs whose metrics mean nothing (a run fails on them)."""
    if y.is_floating_point() and not bool((y == y.round()).all()):
        bad = y[y != y.round()][0].item()
        raise ConfigError(f"The {what} split has the label {bad:g}: labels must be whole class ids.")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ConfigError(f"The {what} split has NaN or infinite image values.")


def device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to unlearn on: ``device``, else the model's. One line for a name torch does not know
    ("gpu") or a GPU this machine lacks, where torch raises its own RuntimeError."""
    if device is None:
        first = next(model.parameters(), None)
        if first is None:
            raise ConfigError("The model has no parameters: there is nothing to unlearn.")
        return first.device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"Unknown device '{shorten(device)}'. Valid devices: cpu, cuda, cuda:N, mps.") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"Device '{shorten(device)}' requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)."
        )
    return dev


def whole(value: object, what: str, expected: str) -> int:
    """``value`` as a Python int (a numpy integer is one; 1.5, True and "abc" are not), else one line."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"Bad {what} '{shorten(value)}': expected {expected}.") from None


NOTEBOOK_PLUGIN = Provenance("notebook", "__main__", "0")  # where a method class handed to uk.unlearn comes from


def method_entry(method: object, methods: Registry[Method]) -> Entry[Method]:
    """The method to run: a registered name (None: the default method), or a ``uk.Method`` subclass
    checked as registering it checks it (base class, a ``name``), so a notebook's own method runs."""
    if method is None:
        return methods.default()
    if isinstance(method, str):
        return methods.get(method)
    if isinstance(method, type) and issubclass(method, Method):
        own: Registry[Method] = Registry("method", Method)  # type: ignore[type-abstract]
        own.add(method, NOTEBOOK_PLUGIN)  # a missing `name` is the registry's one line
        return own.get(method.name)
    raise ConfigError(
        f"method must be a method's name (e.g. 'lotus') or a uk.Method subclass, not {described(method)}. "
        f"Valid methods: {', '.join(methods.names())}."
    )


def module(value: object, what: str) -> nn.Module:
    """``value`` when it is a torch module, else one line naming what it is."""
    if not isinstance(value, nn.Module):
        raise ConfigError(f"{what} must be a torch.nn.Module, not {described(value)}.")
    return value


def per_channel(given: object, what: str, channels: int) -> tuple[float, ...] | None:
    """``mean``/``std`` as one finite number per image channel (std > 0: the images are divided by it)."""
    if given is None:
        return None
    if isinstance(given, str | bytes) or not isinstance(given, Sequence | torch.Tensor):
        raise ConfigError(f"Bad {what} {shorten(repr(given))}: expected a tuple of one number per image channel.")
    try:
        values = tuple(float(v) for v in given)
    except (TypeError, ValueError):
        raise ConfigError(f"Bad {what} {shorten(repr(given))}: expected a tuple of numbers.") from None
    if len(values) != channels:
        raise ConfigError(f"Bad {what} {values}: one value per image channel ({channels}) expected.")
    if not all(math.isfinite(v) for v in values) or (what == "std" and min(values) <= 0):
        expected = "numbers > 0" if what == "std" else "finite numbers"
        raise ConfigError(f"Bad {what} {values}: expected {expected}.")
    return values


def same_images(tensors: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[int, int, int]:
    """The (C, H, W) every split shares: methods concatenate splits and the model takes one shape."""
    shapes = {name: tuple(x.shape[1:]) for name, (x, _) in tensors.items()}
    first = shapes["forget"]
    for name, shape in shapes.items():
        if shape != first:
            raise ConfigError(
                f"The {name} split has images of shape {shape} (C, H, W), the forget split {first}: "
                "every split must hold images of one shape."
            )
    return first


@torch.no_grad()
def logit_count(model: nn.Module, image: torch.Tensor) -> int:
    """How many logits ``model`` (in eval mode) gives one prepared image: the run's class count."""
    try:
        out = model(image)
    except RuntimeError as err:  # torch's shape errors: a model for other images
        raise ConfigError(
            f"The model cannot take the forget split's images {tuple(image.shape[1:])}: {shorten(err, 120)}."
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else described(out)
        raise ConfigError(f"The model must map images (N, C, H, W) to logits (N, K); one image gave {shape}.")
    return int(out.shape[1])


def fresh_copy(model: nn.Module) -> nn.Module:
    """A randomly initialised network of ``model``'s architecture (what ``ctx.new_model()`` builds,
    EU-k's fresh layers): a copy re-initialised by :func:`~unlearnkit.loops.helpers.reinitialise_`.
    The draws come from torch's generator, seeded with the run seed before the method starts."""
    return reinitialise_(copy.deepcopy(model))


def returned(entry: Entry[Method], out: object, original: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """What ``unlearn`` returned, checked as a benchmark run checks it (the method contract of
    :mod:`unlearnkit.api.outcome`, then its weights finite), or one line saying what is wrong."""
    outcome = returned_outcome(entry.cls, out, original, ctx)
    if not all(bool(torch.isfinite(p).all()) for p in outcome.model.parameters()):
        raise DivergenceError(f"Method '{entry.name}' produced non-finite weights.")
    return outcome


def compute(metric: Metric, ev: Evaluation) -> tuple[float | None, str]:
    """``metric`` on ``ev``, or None and what it lacks ("the test split (test=)"): metrics do not
    declare the splits they read, so a split left out shows as the KeyError of reading it."""
    lacking = metric.needs - {role for role, model in ev.models.items() if model is not None}
    if "retrained" in lacking:
        return None, "the retrained model (retrained=)"
    if "subclasses" in lacking:
        return None, "the sub-class labels of a subclass: forget scenario (unlearnkit run --forget subclass:NAME)"
    if lacking:  # an ensemble of runs: no single evaluation has one
        return None, f"{', '.join(sorted(lacking))} (unlearnkit audit --scores)"
    try:
        return metric.compute(ev), ""
    except MissingModel:
        return None, "the retrained model (retrained=)"
    except KeyError as err:
        split = err.args[0] if err.args else ""
        if split in SPLITS and split not in ev.splits:
            return None, f"the {split} split ({split}=)"
        raise


def metric_objects(
    entries: list[Entry[Metric]], options: Mapping[str, Any] | None, registry: Registry[Metric]
) -> list[Metric]:
    """Each metric built with its options (``{"relearn_time": {"max_steps": 20}}``), every key checked."""
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(
            f"metric_options must map metric names to their options, not {described(options)}: "
            'e.g. metric_options={"relearn_time": {"max_steps": 20}}.'
        )
    given = dict(options or {})
    for name, values in given.items():
        registry.get(name)  # an unknown name: "did you mean" and the valid ones
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"metric_options['{shorten(name)}'] must map option names to values, not {described(values)}."
            )
    named = {e.name for e in entries}
    left_out = sorted(set(given) - named)
    if left_out:
        raise ConfigError(f"metric_options names {', '.join(left_out)}, which metrics= leaves out: add it there too.")
    return [e.cls(e.cls.parse_options(dict(given.get(e.name, {})))) for e in entries]


def unlearn(
    model: nn.Module,
    forget: SplitLike,
    retain: SplitLike,
    method: str | type[Method] | None = None,
    *,
    unseen: SplitLike | None = None,
    test: SplitLike | None = None,
    retrained: nn.Module | None = None,
    retrain_time_s: float | None = None,
    options: Mapping[str, Any] | None = None,
    setting: Setting | None = None,
    num_classes: int | None = None,
    seed: int = 3407,
    device: str | torch.device | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    augment: Augment = Augment(),
    protocol: str = "clean",
    metrics: list[str] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    new_model: Callable[[], nn.Module] | None = None,
) -> UnlearnResult:
    """Run ``method`` (default: the default method, LoTUS as shipped) on a copy of ``model`` and,
    when the splits allow, evaluate it.

    ``method``: a registered name or a ``uk.Method`` subclass. ``setting`` picks the method's
    per-setting defaults (default: a ResNet-style instance-wise setting); ``options`` override
    them. ``num_classes`` defaults to the number of logits the model gives. ``retrained`` (a model
    trained without D_f) enables the metrics that compare against the gold standard, and
    ``retrain_time_s`` (the seconds its training took) ``rte``. ``metrics``: only these, each one
    required (a missing split or model is a one-line error); None: every metric the splits and
    models allow (a metric undefined here, NaN, is left out, as a run leaves it out of the store).
    ``metric_options`` maps a metric's name to its options. ``new_model`` builds a freshly
    initialised network of the model's architecture (``ctx.new_model()``; EU-k's fresh layers);
    default: a copy of ``model`` re-initialised layer by layer.
    """
    from unlearnkit.discovery.host import get_host

    regs = get_host().registries
    entry = method_entry(method, regs.methods)
    if isinstance(metrics, str):  # metrics="acc_forget" was read letter by letter: "Unknown metric 'a'"
        metrics = [metrics]
    wanted = [regs.metrics.get(name) for name in metrics] if metrics is not None else None  # names checked first
    measures = metric_objects(wanted if wanted is not None else regs.metrics.entries(), metric_options, regs.metrics)
    seed = whole(seed, "seed", "a whole number, e.g. 3407")
    if num_classes is not None and whole(num_classes, "num_classes", "a whole number of classes, 1 or more") < 1:
        raise ConfigError(f"Bad num_classes '{num_classes}': expected a whole number of classes, 1 or more.")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options must be a mapping of option names to values, not a {type(options).__name__}.")
    module(model, "model")
    if retrained is not None:
        module(retrained, "retrained")
    if setting is not None and not isinstance(setting, Setting):
        raise ConfigError(
            f"setting must be a uk.Setting(dataset, model_family, scenario_rule, num_classes), not {described(setting)}."
        )
    if not isinstance(augment, Augment):
        raise ConfigError(f"augment must be a uk.Augment(crop_padding=..., flip=...), not {described(augment)}.")
    if retrain_time_s is not None and not (
        isinstance(retrain_time_s, int | float) and math.isfinite(retrain_time_s) and retrain_time_s > 0
    ):
        raise ConfigError(f"Bad retrain_time_s {shorten(repr(retrain_time_s))}: expected seconds, a number > 0.")
    if new_model is not None and not callable(new_model):
        raise ConfigError(f"new_model must be a function returning a fresh network, not {described(new_model)}.")
    dev = device_of(model, device)
    raw = {"forget": forget, "retain": retain, "unseen": unseen, "test": test}
    tensors = {name: as_tensors(d, name) for name, d in raw.items() if d is not None}
    for name, (x, _) in tensors.items():
        if len(x) == 0:
            raise ConfigError(f"The {name} split is empty.")
    channels, height, width = same_images(tensors)
    mean, std = per_channel(mean, "mean", channels), per_channel(std, "std", channels)
    labels_k = int(max(int(y.max()) for _, y in tensors.values()) + 1)
    k = num_classes or labels_k
    for name, (_, y) in tensors.items():  # a label outside the classes would index past the logits
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise ConfigError(f"The {name} split has the label {bad}: labels must be class ids 0..{k - 1}.")
    pre = Preprocess.create(mean or (0.0,) * channels, std or (1.0,) * channels, (height, width), augment, dev)
    original = copy.deepcopy(model).to(dev).eval()
    logits = logit_count(original, pre(tensors["forget"][0][:1].to(dev)))
    if num_classes is None:
        k = max(logits, labels_k)  # the model's classes, some perhaps absent from the splits
    if logits != k:  # every metric indexes the classes' columns
        why = f"num_classes is {k}" if num_classes is not None else f"the labels run to {k - 1}"
        raise ConfigError(f"The model gives {logits} logits per image but {why}: it must give one per class.")
    splits = {name: Split(name, x.to(dev), y.to(dev), pre) for name, (x, y) in tensors.items()}
    missing = entry.cls.splits() - set(splits)
    if missing:
        raise ConfigError(f"Method '{entry.name}' reads the {', '.join(sorted(missing))} split(s): pass them too.")
    if entry.cls.role == "retrained" and retrained is None:
        raise ConfigError(f"Method '{entry.name}' is the retrained reference row: pass the model as retrained=.")
    setting = setting or Setting("custom", "resnet", regs.scenarios.default().name, k)
    if not entry.cls.accepts_scenario(setting.scenario_rule):  # as a run refuses it
        rules = ", ".join(sorted(entry.cls.scenario_rules or ()))
        raise ConfigError(
            f"Method '{entry.name}' is defined only for forget scenarios {rules}, not '{setting.scenario_rule}': "
            f"pass setting=uk.Setting(..., scenario_rule='{sorted(entry.cls.scenario_rules or ())[0]}', ...) "
            "when the forget set is one."
        )
    ctx = UnlearnContext(
        device=dev,
        seed=seed,
        setting=setting,
        num_classes=k,
        model_factory=new_model or (lambda: fresh_copy(model)),
        protocol=get_protocol(protocol),
    )
    if retrained is not None:  # the reference row `retrain` reports it, as a run's does
        gold = retrained
        ctx.gold_standard = lambda: (copy.deepcopy(gold), float("nan") if retrain_time_s is None else retrain_time_s)
    method_obj = entry.cls(entry.cls.parse_options(dict(options or {}), defaults=entry.cls.default_options(setting)))
    torch.manual_seed(seed)
    ready_to_time()
    start = time.perf_counter()
    out = method_obj.unlearn(copy.deepcopy(original).train(), UnlearnData(splits, entry.cls.splits(), entry.name), ctx)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    measured = time.perf_counter() - start
    outcome = returned(entry, out, original, ctx)
    elapsed = measured if outcome.time_s is None else outcome.time_s
    result = UnlearnResult(outcome.model.eval(), elapsed, dict(outcome.info))
    models = {"unlearned": result.model, "original": original, "retrained": retrained}
    ev = Evaluation(
        models,
        splits,
        ctx,
        time_s=elapsed,
        retrain_time_s=float("nan") if retrain_time_s is None else float(retrain_time_s),
    )
    ev.prepare()
    for m in measures:
        value, lacks = compute(m, ev)
        if value is not None and (wanted is not None or not math.isnan(value)):
            result.metrics[m.name] = value
        elif wanted is not None:  # asked for by name: say what it lacks rather than leave it out
            advice = (
                ": pass it to uk.unlearn too" if "=)" in lacks else "; uk.unlearn has none, so leave it out of metrics="
            )
            raise ConfigError(f"Metric '{m.name}' needs {lacks}{advice}.")
    return result
