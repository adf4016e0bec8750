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

from unlearnkit.errors import ConfigError

# Where training scripts nest the weights in a checkpoint dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch.save'd state dict (never unpickles arbitrary objects)."""
    if not path.is_file():
        raise ConfigError(f"Weights file '{path}' does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse is the file's fault: report it, the traceback helps nobody
        detail = (str(err).strip().splitlines() or [""])[0][:160]
        raise ConfigError(
            f"Weights file '{path}' could not be read as a state dict ({type(err).__name__}: {detail}); "
            "save one with torch.save(model.state_dict(), FILE) or as .safetensors."
        ) from err
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(
            f"Weights file '{path}' does not hold a state dict of tensors; save torch.save(model.state_dict(), FILE)."
        )
    state = {str(k): v for k, v in obj.items()}
    for prefix in _PREFIXES * 2:  # "module._orig_mod." as well
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


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


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], skip: set[str]) -> list[str]:
    """Readable descriptions of every key that does not fit, model order first, then keys only the file has."""
    out = []
    for key, value in own.items():
        if key in skip:
            continue
        if key not in state:
            if key.endswith("num_batches_tracked"):  # absent from old checkpoints; unused with a momentum
                continue
            out.append(f"'{key}' is missing from the file (the model's is {_shape(value)})")
        elif state[key].shape != value.shape:
            out.append(f"'{key}' is {_shape(state[key])} in the file but {_shape(value)} in the model")
    out += [f"'{k}' {_shape(v)} in the file is not in the model" for k, v in state.items() if k not in own]
    return out


def _timm_adapt(
    model: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], skip: set[str]
) -> dict[str, torch.Tensor]:
    """What timm does for its own pretrained weights: the model module's checkpoint filter (ViT pos-embed
    resampling, converted JAX/CLIP layouts) and summing/repeating the first conv for other channel counts."""
    if mismatches(own, state, skip):
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
    problems = mismatches(own, state, head)
    if problems:
        first = problems[0]
        extra = [k for k in state if k not in own]
        if "missing from the file" in first and extra:  # probably another architecture: show what it has
            first += f", and the file has e.g. '{extra[0]}' {_shape(state[extra[0]])}"
        more = f" ({len(problems) - 1} more mismatched keys)" if len(problems) > 1 else ""
        raise ConfigError(f"Weights file '{path}' does not fit model '{label}': {first}{more}.")
    model.load_state_dict(state, strict=False)  # only head keys can be absent here
    return model
