"""Load a user's checkpoint (``--weights FILE``) into a freshly built network.

Only the classifier head may differ (another number of classes): its mismatched keys are dropped and the
head keeps the fresh initialisation ``build`` gave it. Any other difference is a one-line ConfigError naming
the file, the first mismatched key and both shapes, because a silently half-loaded network would make every
number of the benchmark meaningless.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from unlearnkit import ConfigError, read_state_dict, state_dict_mismatches


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier: ``get_classifier()`` (timm's convention, ours too), else the last Linear."""
    getter = getattr(model, "get_classifier", None)
    heads = getter() if callable(getter) else None
    if isinstance(heads, nn.Module):
        heads = (heads,)
    if not heads:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        heads = linears[-1:]
    targets = {id(h) for h in heads if isinstance(h, nn.Module)}
    keys: set[str] = set()
    for name, module in model.named_modules():
        if id(module) in targets:
            keys |= {f"{name}.{k}" if name else k for k in module.state_dict()}
    return keys


def _timm_adapt(
    model: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], skip: set[str]
) -> dict[str, torch.Tensor]:
    """What timm does for its own pretrained weights: the model module's checkpoint filter (ViT pos-embed
    resampling, converted JAX/CLIP layouts) and summing/repeating the first conv for other channel counts."""
    if state_dict_mismatches(own, state, skip):
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if callable(filter_fn):
            try:
                state = filter_fn(dict(state), model)
            except (KeyError, RuntimeError, ValueError, AttributeError, TypeError, IndexError):
                pass  # not a layout it knows: the mismatch report below says what is wrong
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    for conv in (first_conv,) if isinstance(first_conv, str) else (first_conv or ()):
        key = f"{conv}.weight"
        if key in state and key in own and state[key].ndim == 4 and state[key].shape != own[key].shape:
            src, dst = state[key].shape, own[key].shape
            if src[0] == dst[0] and src[2:] == dst[2:]:
                from timm.models import adapt_input_conv

                try:
                    state[key] = adapt_input_conv(dst[1], state[key])
                except NotImplementedError:
                    pass
    return state


def load_weights(model: nn.Module, path: Path, *, label: str, timm_adapt: bool = False) -> nn.Module:
    """Load ``path`` into ``model`` in place; the head is kept fresh when its shape differs (other classes)."""
    state = read_state_dict(Path(path))
    own = model.state_dict()
    head = head_keys(model)
    if timm_adapt:
        state = _timm_adapt(model, state, own, head)
    state = {k: v for k, v in state.items() if not (k in head and (k not in own or v.shape != own[k].shape))}
    problems = state_dict_mismatches(own, state, head)
    if problems:
        first = problems[0]
        extra = [k for k in state if k not in own]
        if "missing from the file" in first and extra:  # probably another architecture: show what it has
            first += f", and the file has e.g. '{extra[0]}' {tuple(state[extra[0]].shape)}"
        more = f" ({len(problems) - 1} more mismatched keys)" if len(problems) > 1 else ""
        raise ConfigError(f"Weights file '{path}' does not fit model '{label}': {first}{more}.")
    model.load_state_dict(state, strict=False)  # only head keys can be absent here
    return model
