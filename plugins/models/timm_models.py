"""timm look-ups and model creation, with the user-facing errors for unknown names and offline downloads.

``import timm`` takes seconds, so every function imports it lazily: only runs that use a timm model pay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING
from unittest import mock
from urllib.parse import urlsplit

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


def offline_message(what: str, name: str, err: BaseException, *, offline: bool = False) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:160]
    why = (
        "the Hugging Face Hub cannot be reached and its local cache does not hold them"
        if offline
        else f"{type(err).__name__}: {detail}; no internet?"
    )
    return (
        f"{what} could not be loaded ({why}); download them on a connected "
        f"machine (timm {name}), e.g. torch.save(timm.create_model('{name}', pretrained=True).state_dict(), "
        f"'{name}.pt'), and pass --weights FILE."
    )


HUB_PROBE_TIMEOUT_S = 5.0


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face Hub ($HF_ENDPOINT) opens within ``timeout``. Behind
    a proxy no direct connection is made, so the Hub is taken to be reachable (the download decides)."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_quietly(offline: list[bool]) -> Iterator[None]:
    """Offline, the Hub's downloads read only its local cache: without this, huggingface_hub retries
    each file five times with back-off (about a minute) and logs every retry on the terminal.
    ``offline`` gets True appended when the Hub was found unreachable."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as stack:
            if not hub_reachable():
                from huggingface_hub import constants

                offline.append(True)
                stack.enter_context(mock.patch.object(constants, "HF_HUB_OFFLINE", True))
            yield
    finally:
        hub_log.setLevel(level)


def create(name: str, spec: ImageSpec, *, pretrained: bool, what: str | None = None) -> nn.Module:
    """``timm.create_model`` for the dataset's channels and classes; download failures become ConfigError."""
    import timm

    offline: list[bool] = []
    try:
        with hub_quietly(offline) if pretrained else contextlib.nullcontext():
            return timm.create_model(name, pretrained=pretrained, num_classes=spec.num_classes, in_chans=spec.channels)
    except OSError as err:  # huggingface_hub and urllib errors are OSErrors
        if not pretrained:
            raise
        what = what or f"Pretrained weights for timm model '{name}'"
        raise ConfigError(offline_message(what, name, err, offline=bool(offline))) from err
