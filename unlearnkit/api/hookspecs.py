"""Hook specifications: the only way code outside the core adds methods, metrics, datasets,
models, forget scenarios or CLI commands. Built-ins use these hooks through the same entry-point group
(``unlearnkit``) as any third-party package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from unlearnkit.api.contracts import Dataset, Method, Metric, Model
    from unlearnkit.api.scenarios import Scenario

PROJECT = "unlearnkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type[Any]], None]


@hookspec
def register_methods(register: Callable[[type[Method]], None]) -> None:
    """Register unlearning methods: call ``register(MyMethod)`` for each ``Method`` subclass.

    Example::

        @hookimpl
        def register_methods(register):
            register(GradientAscent)
    """


@hookspec
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register metrics: call ``register(MyMetric)`` for each ``Metric`` subclass."""


@hookspec
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    """Register datasets: call ``register(MyDataset)`` for each ``Dataset`` subclass."""


@hookspec
def register_models(register: Callable[[type[Model]], None]) -> None:
    """Register model architectures: call ``register(MyModel)`` for each ``Model`` subclass."""


@hookspec
def register_scenarios(register: Callable[[type[Scenario]], None]) -> None:
    """Register forget scenarios: call ``register(MyScenario)`` for each ``Scenario`` subclass.

    The scenario's ``name`` is the word before the first colon of ``--forget NAME:PARAMETERS``.

    Example::

        @hookimpl
        def register_scenarios(register):
            register(LastImages)
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``unlearnkit`` CLI: ``app.command()(my_function)``."""
