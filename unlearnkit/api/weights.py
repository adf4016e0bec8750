"""Model files: reading a state dict safely and loading it strictly, with one-line errors.

Used for ``--original FILE`` / ``--retrained FILE`` (a model trained elsewhere must fit the
architecture exactly) and by model plugins for ``--weights FILE``. Files are never unpickled
beyond tensors (``weights_only``), and safetensors files are read with safetensors.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from unlearnkit.errors import ConfigError, shorten

# Where training scripts nest the weights in a checkpoint dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
_PREFIXES = ("module.", "_orig_mod.")


def unreadable(path: Path, err: BaseException) -> str:
    """The line for a weights file no reader could parse."""
    detail = (str(err).strip().splitlines() or [""])[0][:160]
    return (
        f"Weights file '{path}' could not be read as a state dict ({type(err).__name__}: {detail}); "
        "save one with torch.save(model.state_dict(), FILE) or as .safetensors."
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch.save'd state dict (never unpickles arbitrary objects)."""
    if not path.is_file():
        raise ConfigError(f"Weights file '{path}' does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # torch warns about the pickle it refuses: the line below says it
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "global" in line.lower()]
        if not refused:  # bytes that are no pickle at all ("Unsupported operand"), not a refused object
            raise ConfigError(unreadable(path, err)) from err
        raise ConfigError(  # weights_only refused an object; torch's own text is a page of advice around this line
            f"Weights file '{path}' holds objects other than tensors (refused: loading them could run code: "
            f"{shorten(refused[-1], 120)}); save the state dict alone with torch.save(model.state_dict(), FILE) "
            "or as .safetensors."
        ) from err
    except Exception as err:  # any failure to parse is the file's fault: report it, the traceback helps nobody
        raise ConfigError(unreadable(path, err)) from err
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(
            f"Weights file '{path}' does not hold a state dict of tensors; save torch.save(model.state_dict(), FILE)."
        )
    state = {str(k): v for k, v in obj.items()}
    problem = unusable_tensor(state)
    if problem:
        raise ConfigError(f"Weights file '{path}' {problem}: it holds no usable weights.")
    for prefix in _PREFIXES * 2:  # "module._orig_mod." as well
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def unusable_tensor(state: dict[str, torch.Tensor]) -> str:
    """What makes a state dict unusable as a model's weights ("" when nothing): a tensor without
    data (meta), a sparse or complex one (loading would drop its structure or imaginary part), or
    a NaN or infinite value (a diverged training), which every later number would inherit."""
    for key, value in state.items():
        if value.is_meta:
            return f"has '{key}' as a meta tensor, without data"
        if value.layout != torch.strided:
            return f"has '{key}' as a {value.layout} tensor, not a dense one"
        if value.is_complex():
            return f"has '{key}' as a complex tensor ({value.dtype})"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"has non-finite values (NaN or infinity) in '{key}'"
    return ""


def shape_of(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def state_dict_mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], skip: set[str]) -> list[str]:
    """Readable descriptions of every key that does not fit, model order first, then keys only the file has."""
    out = []
    for key, value in own.items():
        if key in skip:
            continue
        if key not in state:
            if key.endswith("num_batches_tracked"):  # absent from old checkpoints; unused with a momentum
                continue
            out.append(f"'{key}' is missing from the file (the model's is {shape_of(value)})")
        elif state[key].shape != value.shape:
            out.append(f"'{key}' is {shape_of(state[key])} in the file but {shape_of(value)} in the model")
    out += [f"'{k}' {shape_of(v)} in the file is not in the model" for k, v in state.items() if k not in own]
    return out


def load_strict(model: nn.Module, path: Path, *, label: str, what: str = "Model file") -> nn.Module:
    """Load ``path`` into ``model`` in place; every key must be present with the model's shape."""
    state = read_state_dict(Path(path))
    problems = state_dict_mismatches(model.state_dict(), state, set())
    if problems:
        more = f" ({len(problems) - 1} more mismatched keys)" if len(problems) > 1 else ""
        raise ConfigError(f"{what} '{path}' does not fit model '{label}': {problems[0]}{more}.")
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent
    return model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s weights and buffers: what is kept, saved or compared
    while the model itself goes on training."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
