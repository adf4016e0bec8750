"""unlearnkit: benchmark machine-unlearning methods for image classifiers.

What a plugin author or a notebook user needs is importable from here::

    import unlearnkit as uk

    class MyMethod(uk.Method):
        ...

    @uk.hookimpl
    def register_methods(register):
        register(MyMethod)

Names are resolved lazily (PEP 562), so ``import unlearnkit`` and ``unlearnkit --help`` stay
free of torch and MLflow until something that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # plugin contracts
    "hookimpl": "unlearnkit.hookspecs",
    "Method": "unlearnkit.api",
    "Metric": "unlearnkit.api",
    "Dataset": "unlearnkit.api",
    "Model": "unlearnkit.api",
    "Options": "unlearnkit.api",
    "DataAccess": "unlearnkit.api",
    "UnlearnOutcome": "unlearnkit.api",
    "Conformance": "unlearnkit.api",
    "Setting": "unlearnkit.api",
    "RawDataset": "unlearnkit.api",
    "ImageArray": "unlearnkit.api",
    "ImageSpec": "unlearnkit.api",
    "Augment": "unlearnkit.api",
    # what a method and a metric receive
    "UnlearnContext": "unlearnkit.context",
    "UnlearnData": "unlearnkit.data",
    "Split": "unlearnkit.data",
    "Evaluation": "unlearnkit.evaluation",
    # loop helpers every built-in uses
    "fit": "unlearnkit.training",
    "accuracy": "unlearnkit.training",
    "predict_logits": "unlearnkit.training",
    "soft_cross_entropy": "unlearnkit.training",
    "make_optimizer": "unlearnkit.training",
    "raise_if_diverged": "unlearnkit.training",
    "step": "unlearnkit.loops",
    "ce_epoch": "unlearnkit.loops",
    "endless": "unlearnkit.loops",
    "no_divergence": "unlearnkit.loops",
    "trainable": "unlearnkit.loops",
    "random_fraction": "unlearnkit.loops",
    "per_class_subset": "unlearnkit.loops",
    "kl_to_target": "unlearnkit.loops",
    "batch_gradients": "unlearnkit.loops",
    # the registry, timm-style
    "create_method": "unlearnkit.registry",
    "list_methods": "unlearnkit.registry",
    # unlearning a model in a notebook
    "unlearn": "unlearnkit.notebook",
    # errors
    "UnlearnkitError": "unlearnkit.errors",
    "ConfigError": "unlearnkit.errors",
    "DataError": "unlearnkit.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from unlearnkit.api import (
        Augment,
        Conformance,
        DataAccess,
        Dataset,
        ImageArray,
        ImageSpec,
        Method,
        Metric,
        Model,
        Options,
        RawDataset,
        Setting,
        UnlearnOutcome,
    )
    from unlearnkit.context import UnlearnContext
    from unlearnkit.data import Split, UnlearnData
    from unlearnkit.errors import ConfigError, DataError, UnlearnkitError
    from unlearnkit.evaluation import Evaluation
    from unlearnkit.hookspecs import hookimpl
    from unlearnkit.loops import (
        batch_gradients,
        ce_epoch,
        endless,
        kl_to_target,
        no_divergence,
        per_class_subset,
        random_fraction,
        step,
        trainable,
    )
    from unlearnkit.notebook import unlearn
    from unlearnkit.registry import create_method, list_methods
    from unlearnkit.training import (
        accuracy,
        fit,
        make_optimizer,
        predict_logits,
        raise_if_diverged,
        soft_cross_entropy,
    )
