"""What a method's ``unlearn`` must return, checked one way wherever a method runs: a benchmark
run (``engine.stages``), the conformance kit (``unlearnkit.testing``) and a notebook's
``uk.unlearn``. Each check returns one line for the author, naming what broke the contract."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Method, UnlearnOutcome, described
from unlearnkit.errors import PluginError, shorten


def returned_outcome(
    cls: type[Method], out: object, original: nn.Module, ctx: UnlearnContext, where: str = ""
) -> UnlearnOutcome:
    """What ``unlearn`` returned as an outcome, or PluginError saying how it breaks the contract:
    the store keeps the model's weights to load into the original's architecture later (another
    protocol reuses them), and every evaluation reads it on the run's device."""
    what = f"Method '{cls.name}'"
    if not isinstance(out, (nn.Module, UnlearnOutcome)):
        raise PluginError(
            f"{what} returned {described(out)} from unlearn{where}: return the model (an nn.Module) or "
            "an UnlearnOutcome(model, time_s=..., info={...})."
        )
    outcome = out if isinstance(out, UnlearnOutcome) else UnlearnOutcome(out)
    if not isinstance(outcome.model, nn.Module):
        raise PluginError(f"{what} returned an UnlearnOutcome whose model is {described(outcome.model)}{where}.")
    problem = other_architecture(outcome.model, original) or off_device(outcome.model, ctx.device)
    problem = problem or bad_time(outcome.time_s, reference=cls.role is not None) or bad_info(outcome.info)
    if problem:
        raise PluginError(f"{what} returned {problem}{where}.")
    return outcome


def other_architecture(model: nn.Module, original: nn.Module) -> str:
    """How ``model``'s weights differ in names or shapes from ``original``'s ("" when they do not)."""
    mine, theirs = model.state_dict(), original.state_dict()
    missing, extra = sorted(theirs.keys() - mine.keys()), sorted(mine.keys() - theirs.keys())
    if missing or extra:
        first = f"lacks '{missing[0]}'" if missing else f"has '{extra[0]}', which the original has not"
        return (
            f"a model of another architecture (its state dict {first}, {len(missing)} missing, {len(extra)} extra): "
            "train the model it is given in place"
        )
    for key, value in mine.items():
        if value.shape != theirs[key].shape:
            return (
                f"a model of another architecture ('{key}' is {tuple(value.shape)}, the original's "
                f"{tuple(theirs[key].shape)}): train the model it is given in place"
            )
    return ""


def on_device(tensor: torch.Tensor, device: torch.device) -> bool:
    """Whether ``tensor`` lives on ``device`` (``cuda`` matches any CUDA device, ``cuda:1`` only itself)."""
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def off_device(model: nn.Module, device: torch.device) -> str:
    """Where a weight of ``model`` lives when it is not on the run's ``device`` ("" when all are)."""
    for name, value in [*model.named_parameters(), *model.named_buffers()]:
        if not on_device(value, device):
            return f"a model with '{name}' on {value.device}, not on the run's device {device}"
    return ""


def bad_time(seconds: object, *, reference: bool) -> str:
    """What is wrong with an outcome's ``time_s`` ("" when nothing): a number of seconds, finite and
    >= 0; NaN (unknown) only for a reference row (a model file brought by the user has no training time)."""
    if seconds is None:
        return ""
    if not isinstance(seconds, numbers.Real) or isinstance(seconds, bool):
        return f"time_s={described(seconds)}: time_s is seconds, a float (or None: the runner's clock)"
    value = float(seconds)
    if (math.isnan(value) and reference) or (math.isfinite(value) and value >= 0):
        return ""
    return f"time_s={value!r}: time_s is seconds, finite and >= 0 (or None: the runner's clock)"


def bad_info(info: object) -> str:
    """What is wrong with an outcome's ``info`` ("" when nothing): names to numbers, logged as metrics."""
    if not isinstance(info, dict):
        return f"info={described(info)}: info is a dict of names to numbers"
    for key, value in info.items():
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not isinstance(key, str) or not key or not number:
            return f"info[{shorten(repr(key), 40)}]={described(value)}: info maps names to numbers"
    return ""


__all__ = ["bad_info", "bad_time", "off_device", "on_device", "other_architecture", "returned_outcome"]
