"""timm look-ups and model creation, with the user-facing errors for unknown names and offline downloads.

``import timm`` takes seconds, so every function imports it lazily: only runs that use a timm model pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnkit import ConfigError, did_you_mean

if TYPE_CHECKING:
    from torch import nn

    from unlearnkit import ImageSpec

# Transformer families besides names containing "vit": they run channels-first and want ViT settings.
_TRANSFORMER_PREFIXES = ("deit", "beit", "swin", "eva", "cait", "xcit", "pit_", "tnt_", "twins", "volo", "hiera")


def is_vit_like(name: str) -> bool:
    """Whether a timm name is a vision transformer (by name, so it needs no timm import)."""
    arch = name.split(".", 1)[0].lower()
    return "vit" in arch or arch.startswith(_TRANSFORMER_PREFIXES)


def resolve(name: str) -> str:
    """Check ``arch`` or ``arch.tag`` against timm; a one-line ConfigError with a suggestion if unknown."""
    import timm

    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise ConfigError(
            f"Unknown timm model '{arch}'.{did_you_mean(arch, timm.list_models())} "
            f"Search the names with python -c \"import timm; print(timm.list_models('*{arch[:4]}*'))\"."
        )
    if tag:
        tags = timm.list_pretrained(f"{arch}.*")
        if name not in tags:
            valid = ", ".join(t.partition(".")[2] for t in tags) or "(none)"
            raise ConfigError(
                f"timm model '{arch}' has no pretrained tag '{tag}'.{did_you_mean(name, tags)} Valid tags: {valid}."
            )
    return name


def has_pretrained(name: str) -> bool:
    import timm

    return bool(timm.list_pretrained(name if "." in name else f"{name}.*"))


def fixed_input_size(name: str) -> tuple[int, int] | None:
    """(h, w) when the model only accepts its own resolution (ViTs), else None (convnets take any size)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.fixed_input_size:
        return None
    return (int(cfg.input_size[-2]), int(cfg.input_size[-1]))


def offline_message(what: str, name: str, err: BaseException) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:160]
    return (
        f"{what} could not be loaded ({type(err).__name__}: {detail}; no internet?); download them on a connected "
        f"machine (timm {name}), e.g. torch.save(timm.create_model('{name}', pretrained=True).state_dict(), "
        f"'{name}.pt'), and pass --weights FILE."
    )


def create(name: str, spec: ImageSpec, *, pretrained: bool, what: str | None = None) -> nn.Module:
    """``timm.create_model`` for the dataset's channels and classes; download failures become ConfigError."""
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=spec.num_classes, in_chans=spec.channels)
    except OSError as err:  # huggingface_hub and urllib errors are OSErrors
        if not pretrained:
            raise
        raise ConfigError(offline_message(what or f"Pretrained weights for timm model '{name}'", name, err)) from err
