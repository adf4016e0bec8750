"""What makes two results the same result: stable hashes of everything that can change a number.

A cached model or a finished run is reused only when its identity matches exactly, and the
identity holds: the data (a fingerprint of the arrays, the split indices), every input file by
content (weights, checkpoints), every plugin by its ``algorithm_version`` (or its distribution's
version when it declares none), and the core's own :data:`CORE_VERSION`. ``tests/test_versions.py``
fails when code that produces numbers changes without a version bump.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Versioned(Protocol):
    """What :func:`plugin_version` reads of a registry entry (``unlearnkit.discovery.registry.Entry``)."""

    @property
    def name(self) -> str: ...

    @property
    def cls(self) -> Any: ...

    @property
    def provenance(self) -> Any: ...


# Bump when the core's numeric code (training loops, preprocessing, splits, evaluation) changes
# in a way that can change a number; every cached model and finished run is then recomputed.
CORE_VERSION = 2
# The core modules whose code produces numbers: their source hash is locked next to CORE_VERSION.
CORE_NUMERIC_MODULES = (
    "unlearnkit.loops.training",
    "unlearnkit.loops.helpers",
    "unlearnkit.api.data",
    "unlearnkit.engine.splits",
    "unlearnkit.api.evaluation",
    "unlearnkit.api.protocols",
    "unlearnkit.parallel.torchrun",  # the shards, scaled losses and summed epoch numbers of data-parallel runs
    "unlearnkit.loops.packing",  # several models trained at once, under the identities of one at a time
    "unlearnkit.engine.sequential",  # successive requests: each one's model, splits and step metrics
    "unlearnkit.engine.memorisation",  # the scores a memorised: scenario draws its forget sets by
    "unlearnkit.engine.halves",  # the shadow halves both the audit and the shadows score train on
)


def config_hash(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able dict: the identity of a cached model or a finished run."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def identity_json(payload: dict[str, Any]) -> str:
    """What a config hash is a hash of, readable: logged beside every run as identity.json, so a
    bundle or a reader can check ``config_hash(json.loads(text)) == key``."""
    return json.dumps(payload, sort_keys=True, default=str, indent=1)


def file_sha256(path: Path) -> str:
    """Content hash of an input file: identity follows what a file holds, not where it lies."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def array_fingerprint(*arrays: Any) -> str:
    """Identity of arrays (labels, index sets): shapes and every byte."""
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype}{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:20]


def images_fingerprint(images: Any, stride: int = 97) -> str:
    """Identity of an image array from its shape and every ``stride``-th image's pixels (reading
    every pixel of ImageNet to hash it would cost minutes; a different file changes these)."""
    picked = np.arange(0, len(images), stride)
    sample = images[picked] if len(picked) else np.zeros((0,), np.uint8)
    return array_fingerprint(np.asarray(images.shape), np.asarray(sample))


def plugin_version(entry: Versioned) -> str:
    """``name@algorithm_version`` for plugins that declare one; else the distribution's version."""
    version = entry.cls.algorithm_version
    if version is not None:
        return f"{entry.provenance.package}:{entry.name}@{version}"
    return f"{entry.provenance.package}:{entry.name}=={entry.provenance.version}"
