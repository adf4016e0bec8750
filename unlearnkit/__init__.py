"""unlearnkit: benchmark machine-unlearning methods for image classifiers.

What a plugin author or a notebook user needs is importable from here, and only from here: the
built-in plugins themselves import nothing else of unlearnkit (an import contract checks it)::

    import unlearnkit as uk

    class MyMethod(uk.Method):
        ...

    @uk.hookimpl
    def register_methods(register):
        register(MyMethod)

Names are resolved lazily (PEP 562), so ``import unlearnkit`` and ``unlearnkit --help`` stay
free of torch and MLflow until something that needs them is touched. The subpackages are the
rooms of the core (docs/architecture.md); modules that moved in 0.3 still import from their old
paths for one release, with a warning naming the new one (:mod:`unlearnkit._moved`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from unlearnkit import _moved
from unlearnkit._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # plugin contracts
    "hookimpl": "unlearnkit.api.hookspecs",
    "Method": "unlearnkit.api.contracts",
    "Metric": "unlearnkit.api.contracts",
    "Dataset": "unlearnkit.api.contracts",
    "Model": "unlearnkit.api.contracts",
    "InitialisesFromData": "unlearnkit.api.data_init",
    "Options": "unlearnkit.api.contracts",
    "UnlearnOutcome": "unlearnkit.api.contracts",
    "Conformance": "unlearnkit.api.contracts",
    "ConformanceClaim": "unlearnkit.api.contracts",
    "RawDataset": "unlearnkit.api.contracts",
    "ImageArray": "unlearnkit.api.contracts",
    "DataAccess": "unlearnkit.api.types",
    "Setting": "unlearnkit.api.types",
    "ImageSpec": "unlearnkit.api.types",
    "Augment": "unlearnkit.api.types",
    "Role": "unlearnkit.api.types",
    "Direction": "unlearnkit.api.types",
    # forget scenarios
    "Scenario": "unlearnkit.api.scenarios",
    "ScenarioData": "unlearnkit.api.scenarios",
    "ForgetSet": "unlearnkit.api.scenarios",
    "parse_fraction": "unlearnkit.api.scenarios",
    "parse_score_source": "unlearnkit.api.scenarios",
    "parse_scenario": "unlearnkit.engine.splits",
    # what a method and a metric receive
    "UnlearnContext": "unlearnkit.api.context",
    "UnlearnData": "unlearnkit.api.data",
    "Split": "unlearnkit.api.data",
    "concat": "unlearnkit.api.data",
    "Evaluation": "unlearnkit.api.evaluation",
    "predict_logits": "unlearnkit.api.evaluation",
    "EvalProtocol": "unlearnkit.api.protocols",
    "Ensemble": "unlearnkit.api.ensemble",
    "EnsembleMetric": "unlearnkit.api.ensemble",
    "Scored": "unlearnkit.api.ensemble",
    "logit_margin": "unlearnkit.api.ensemble",
    # search spaces for `unlearnkit tune`
    "LogUniform": "unlearnkit.api.search_space",
    "Uniform": "unlearnkit.api.search_space",
    "IntRange": "unlearnkit.api.search_space",
    "Categorical": "unlearnkit.api.search_space",
    # model files
    "read_state_dict": "unlearnkit.api.weights",
    "load_strict": "unlearnkit.api.weights",
    "state_dict_mismatches": "unlearnkit.api.weights",
    # loop helpers every built-in uses
    "fit": "unlearnkit.loops.training",
    "accuracy": "unlearnkit.loops.training",
    "cross_entropy": "unlearnkit.loops.training",
    "soft_cross_entropy": "unlearnkit.loops.training",
    "make_optimizer": "unlearnkit.loops.training",
    "raise_if_diverged": "unlearnkit.loops.training",
    "step": "unlearnkit.loops.helpers",
    "EpochLoss": "unlearnkit.loops.helpers",
    "log_losses": "unlearnkit.loops.helpers",
    "reinitialise_": "unlearnkit.loops.helpers",
    "ce_epoch": "unlearnkit.loops.helpers",
    "relabel_epoch": "unlearnkit.loops.helpers",
    "random_wrong_labels": "unlearnkit.loops.helpers",
    "endless": "unlearnkit.loops.helpers",
    "endless_parts": "unlearnkit.loops.helpers",
    "no_divergence": "unlearnkit.loops.helpers",
    "trainable": "unlearnkit.loops.helpers",
    "random_fraction": "unlearnkit.loops.helpers",
    "per_class_subset": "unlearnkit.loops.helpers",
    "kl_to_target": "unlearnkit.loops.helpers",
    "batch_gradients": "unlearnkit.loops.helpers",
    # data-parallel ranks (docs/distributed.md)
    "World": "unlearnkit.parallel.torchrun",
    "Part": "unlearnkit.parallel.torchrun",
    "whole": "unlearnkit.parallel.torchrun",
    # the registry, timm-style
    "create_method": "unlearnkit.discovery.host",
    "list_methods": "unlearnkit.discovery.host",
    # unlearning a model in a notebook
    "unlearn": "unlearnkit.notebook",
    "UnlearnResult": "unlearnkit.notebook",
    # errors
    "UnlearnkitError": "unlearnkit.errors",
    "ConfigError": "unlearnkit.errors",
    "DataError": "unlearnkit.errors",
    "DivergenceError": "unlearnkit.errors",
    "did_you_mean": "unlearnkit.errors",
}

__all__ = ["__version__", *_EXPORTS]

_moved.install()


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
    from unlearnkit.api.context import UnlearnContext
    from unlearnkit.api.contracts import (
        Conformance,
        ConformanceClaim,
        Dataset,
        ImageArray,
        Method,
        Metric,
        Model,
        Options,
        RawDataset,
        UnlearnOutcome,
    )
    from unlearnkit.api.data import Split, UnlearnData, concat
    from unlearnkit.api.data_init import InitialisesFromData
    from unlearnkit.api.ensemble import Ensemble, EnsembleMetric, Scored, logit_margin
    from unlearnkit.api.evaluation import Evaluation, predict_logits
    from unlearnkit.api.hookspecs import hookimpl
    from unlearnkit.api.protocols import EvalProtocol
    from unlearnkit.api.scenarios import ForgetSet, Scenario, ScenarioData, parse_fraction, parse_score_source
    from unlearnkit.api.search_space import Categorical, IntRange, LogUniform, Uniform
    from unlearnkit.api.types import Augment, DataAccess, Direction, ImageSpec, Role, Setting
    from unlearnkit.api.weights import load_strict, read_state_dict, state_dict_mismatches
    from unlearnkit.discovery.host import create_method, list_methods
    from unlearnkit.engine.splits import parse_scenario
    from unlearnkit.errors import ConfigError, DataError, DivergenceError, UnlearnkitError, did_you_mean
    from unlearnkit.loops.helpers import (
        EpochLoss,
        batch_gradients,
        ce_epoch,
        endless,
        endless_parts,
        kl_to_target,
        log_losses,
        no_divergence,
        per_class_subset,
        random_fraction,
        random_wrong_labels,
        reinitialise_,
        relabel_epoch,
        step,
        trainable,
    )
    from unlearnkit.loops.training import (
        accuracy,
        cross_entropy,
        fit,
        make_optimizer,
        raise_if_diverged,
        soft_cross_entropy,
    )
    from unlearnkit.notebook import UnlearnResult, unlearn
    from unlearnkit.parallel.torchrun import Part, World, whole
