"""unlearnkit-example: a complete third-party unlearnkit plugin package.

The ``unlearnkit`` entry point in ``pyproject.toml`` points at this module; unlearnkit imports it
and calls the ``@uk.hookimpl`` functions below, each of which hands classes to ``register``.
"""

from __future__ import annotations

import unlearnkit as uk

from unlearnkit_example.grad_ascent import GradAscentPlus, GradAscentPlusOptions
from unlearnkit_example.metrics import ForgetConfidence
from unlearnkit_example.scenarios import ClassTail

__all__ = [
    "ClassTail",
    "ForgetConfidence",
    "GradAscentPlus",
    "GradAscentPlusOptions",
    "register_methods",
    "register_metrics",
    "register_scenarios",
]


@uk.hookimpl
def register_methods(register):
    register(GradAscentPlus)


@uk.hookimpl
def register_metrics(register):
    register(ForgetConfidence)


@uk.hookimpl
def register_scenarios(register):
    register(ClassTail)
