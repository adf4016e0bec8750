"""Unlearn a model you already hold, in a notebook: no CLI, no store, no training of references.

    import unlearnkit as uk
    result = uk.unlearn(model, forget=(x_f, y_f), retain=(x_r, y_r), unseen=(x_u, y_u), method="lotus")
    result.model      # the unlearned copy (your model is left untouched)
    result.metrics    # every metric the splits allow (test= adds the MIA, retrained= the gold-standard ones)

Splits are ``(images, labels)`` tensor pairs or any ``torch.utils.data.Dataset`` of such pairs.
Images are uint8 NCHW (normalised with ``mean``/``std``, augmented with ``augment``) or float
tensors already prepared for the model (used as they are).
"""

from __future__ import annotations

import copy
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Metric, UnlearnOutcome
from unlearnkit.api.data import Preprocess, Split, UnlearnData
from unlearnkit.api.evaluation import Evaluation, MissingModel
from unlearnkit.api.protocols import get_protocol
from unlearnkit.api.types import Augment, Setting
from unlearnkit.errors import ConfigError, shorten

SplitLike = Any  # (images, labels) or a torch Dataset of (image, label)
SPLITS = ("forget", "retain", "unseen", "test")  # the splits uk.unlearn takes


@dataclass
class UnlearnResult:
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


def compute(metric: type[Metric], ev: Evaluation) -> tuple[float | None, str]:
    """``metric`` on ``ev``, or None and what it lacks ("the test split (test=)"): metrics do not
    declare the splits they read, so a split left out shows as the KeyError of reading it."""
    lacking = metric.needs - {role for role, model in ev.models.items() if model is not None}
    if "retrained" in lacking:
        return None, "the retrained model (retrained=)"
    if lacking:  # an ensemble of runs: no single evaluation has one
        return None, f"{', '.join(sorted(lacking))} (unlearnkit audit --scores)"
    try:
        return metric(metric.Options()).compute(ev), ""
    except MissingModel:
        return None, "the retrained model (retrained=)"
    except KeyError as err:
        split = err.args[0] if err.args else ""
        if split in SPLITS and split not in ev.splits:
            return None, f"the {split} split ({split}=)"
        raise


def unlearn(
    model: nn.Module,
    forget: SplitLike,
    retain: SplitLike,
    method: str | None = None,
    *,
    unseen: SplitLike | None = None,
    test: SplitLike | None = None,
    retrained: nn.Module | None = None,
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
) -> UnlearnResult:
    """Run ``method`` (default: the default method, LoTUS as shipped) on a copy of ``model`` and,
    when the splits allow, evaluate it.

    ``setting`` picks the method's per-setting defaults (default: a ResNet-style instance-wise
    setting); ``options`` override them. ``retrained`` (a model trained without D_f) enables the
    metrics that compare against the gold standard. ``metrics``: only these, each one required (a
    missing split or model is a one-line error); None: every metric the splits and models allow.
    """
    from unlearnkit.discovery.host import get_host

    regs = get_host().registries
    entry = regs.methods.get(method) if method else regs.methods.default()
    if isinstance(metrics, str):  # metrics="acc_forget" was read letter by letter: "Unknown metric 'a'"
        metrics = [metrics]
    wanted = [regs.metrics.get(name) for name in metrics] if metrics is not None else None  # names checked first
    seed = whole(seed, "seed", "a whole number, e.g. 3407")
    if num_classes is not None and whole(num_classes, "num_classes", "a whole number of classes, 1 or more") < 1:
        raise ConfigError(f"Bad num_classes '{num_classes}': expected a whole number of classes, 1 or more.")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options must be a mapping of option names to values, not a {type(options).__name__}.")
    dev = device_of(model, device)
    raw = {"forget": forget, "retain": retain, "unseen": unseen, "test": test}
    tensors = {name: as_tensors(d, name) for name, d in raw.items() if d is not None}
    for name, (x, _) in tensors.items():
        if len(x) == 0:
            raise ConfigError(f"The {name} split is empty.")
    channels = tensors["forget"][0].shape[1]
    for given, what in ((mean, "mean"), (std, "std")):
        if given is not None and len(given) != channels:
            raise ConfigError(f"Bad {what} {tuple(given)}: one value per image channel ({channels}) expected.")
    k = num_classes or int(max(int(y.max()) for _, y in tensors.values()) + 1)
    for name, (_, y) in tensors.items():  # a label outside the classes would index past the logits
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise ConfigError(f"The {name} split has the label {bad}: labels must be class ids 0..{k - 1}.")
    pre = Preprocess.create(
        mean or (0.0,) * channels, std or (1.0,) * channels, tuple(tensors["forget"][0].shape[-2:]), augment, dev
    )
    splits = {name: Split(name, x.to(dev), y.to(dev), pre) for name, (x, y) in tensors.items()}
    missing = entry.cls.splits() - set(splits)
    if missing:
        raise ConfigError(f"Method '{entry.name}' reads the {', '.join(sorted(missing))} split(s): pass them too.")
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
        model_factory=lambda: copy.deepcopy(model),
        protocol=get_protocol(protocol),
    )
    original = copy.deepcopy(model).to(dev).eval()
    method_obj = entry.cls(entry.cls.parse_options(dict(options or {}), defaults=entry.cls.default_options(setting)))
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = method_obj.unlearn(copy.deepcopy(original).train(), UnlearnData(splits, entry.cls.splits(), entry.name), ctx)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    outcome = out if isinstance(out, UnlearnOutcome) else UnlearnOutcome(out)
    elapsed = time.perf_counter() - start if outcome.time_s is None else outcome.time_s
    result = UnlearnResult(outcome.model.eval(), elapsed, dict(outcome.info))
    models = {"unlearned": result.model, "original": original, "retrained": retrained}
    ev = Evaluation(models, splits, ctx, time_s=elapsed)
    ev.prepare()
    for m in wanted if wanted is not None else regs.metrics.entries():
        value, lacks = compute(m.cls, ev)
        if value is not None:
            result.metrics[m.name] = value
        elif wanted is not None:  # asked for by name: say what it lacks rather than leave it out
            raise ConfigError(f"Metric '{m.name}' needs {lacks}: pass it to uk.unlearn too.")
    return result
