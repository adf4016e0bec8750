"""The public author surface: what a plugin implements (the contracts and their hook specs) and
what it receives (context, data, evaluation, protocol), with search spaces and model-file
reading. Authors import it as ``import unlearnkit as uk``; this package's face keeps the names
``unlearnkit.api`` had before 0.3."""

from unlearnkit.api.contracts import (
    Conformance,
    ConformanceClaim,
    Dataset,
    ImageArray,
    Images,
    Method,
    Metric,
    Model,
    Options,
    Plugin,
    RawDataset,
    UnlearnOutcome,
)
from unlearnkit.api.types import Augment, DataAccess, Direction, ImageSpec, Role, Setting

__all__ = [
    "Augment",
    "Conformance",
    "ConformanceClaim",
    "DataAccess",
    "Dataset",
    "Direction",
    "ImageArray",
    "ImageSpec",
    "Images",
    "Method",
    "Metric",
    "Model",
    "Options",
    "Plugin",
    "RawDataset",
    "Role",
    "Setting",
    "UnlearnOutcome",
]
