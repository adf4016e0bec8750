"""Every hook of ``unlearnkit/hookspecs.py``, exercised for real: a throwaway plugin implements it,
is registered on a plugin host, and what it registers arrives where the core looks for it.

``tests/test_hook_docs.py`` requires a function ``test_hook_<name>`` for each hook (here), so a
new hookspec without a test fails the suite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from torch import nn

import unlearnkit as uk
from unlearnkit.api.contracts import RawDataset
from unlearnkit.api.types import ImageSpec
from unlearnkit.discovery.host import PluginHost
from unlearnkit.discovery.registry import Provenance

THROWAWAY = Provenance(plugin="throwaway", package="throwaway-pkg", version="9.9")


def host_with(plugin: object) -> PluginHost:
    """An empty host (no installed plugin) with ``plugin`` registered as an entry point would be."""
    host = PluginHost(load_entry_points=False)
    host.register(plugin, THROWAWAY)
    return host


# ---------------------------------------------------------------------------------- methods
class Keep(uk.Method):
    name = "throwaway_keep"
    summary = "Returns the model it is given (hook test)."
    algorithm_version = 1
    access = uk.DataAccess.NONE
    conformance = uk.Conformance(claim="none")

    def unlearn(self, model, data, ctx):
        return model


class MethodPlugin:
    @uk.hookimpl
    def register_methods(self, register):
        register(Keep)


def test_hook_register_methods():
    regs = host_with(MethodPlugin()).registries
    assert regs.methods.names() == ["throwaway_keep"]  # the empty host has nothing else
    entry = regs.methods.get("throwaway_keep")
    assert (entry.cls, entry.provenance) == (Keep, THROWAWAY)
    model = nn.Linear(2, 2)
    assert entry.cls(entry.cls.parse_options({})).unlearn(model, None, None) is model


# ---------------------------------------------------------------------------------- metrics
class Constant(uk.Metric):
    name = "throwaway_constant"
    summary = "Always 0.5 (hook test)."
    algorithm_version = 1
    direction = "higher"

    def compute(self, ev):
        return 0.5


class MetricPlugin:
    @uk.hookimpl
    def register_metrics(self, register):
        register(Constant)


def test_hook_register_metrics():
    regs = host_with(MetricPlugin()).registries
    assert regs.metrics.names() == ["throwaway_constant"]
    entry = regs.metrics.get("throwaway_constant")
    assert (entry.cls, entry.provenance) == (Constant, THROWAWAY)
    assert entry.cls(entry.cls.Options()).compute(None) == 0.5


# --------------------------------------------------------------------------------- datasets
class Checker(uk.Dataset):
    name = "throwaway_checker"
    summary = "Two classes of 4x4 checkerboards (hook test, embedded)."
    algorithm_version = 1
    embedded = True

    def load(self, data_dir, cache_dir):
        board = (np.indices((4, 4)).sum(0) % 2).astype(np.uint8) * 255
        x = np.stack([board, 255 - board] * 4)[:, None]  # (8, 1, 4, 4): classes 0, 1, 0, 1, ...
        y = np.tile([0, 1], 4)
        return RawDataset(x, y, x[:4], y[:4], ["even", "odd"], (0.5,), (0.5,))


class DatasetPlugin:
    @uk.hookimpl
    def register_datasets(self, register):
        register(Checker)


def test_hook_register_datasets(tmp_path: Path):
    regs = host_with(DatasetPlugin()).registries
    assert regs.datasets.names() == ["throwaway_checker"]
    entry = regs.datasets.get("throwaway_checker")
    assert (entry.cls, entry.provenance) == (Checker, THROWAWAY)
    raw = entry.cls().load(None, tmp_path)
    assert (raw.x_train.shape, raw.num_classes) == ((8, 1, 4, 4), 2)


# ----------------------------------------------------------------------------------- models
class Linear(uk.Model):
    name = "throwaway_linear"
    summary = "Flatten and one linear layer (hook test)."
    algorithm_version = 1
    family = "linear"
    channels_last = False

    def build(self, spec: ImageSpec) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(spec.channels * spec.height * spec.width, spec.num_classes))


class ModelPlugin:
    @uk.hookimpl
    def register_models(self, register):
        register(Linear)


def test_hook_register_models():
    regs = host_with(ModelPlugin()).registries
    assert regs.models.names() == ["throwaway_linear"]
    entry, variant = regs.model("throwaway_linear")
    assert (entry.cls, entry.provenance, variant) == (Linear, THROWAWAY, None)
    net = entry.cls().build(ImageSpec(1, 4, 4, 3))
    assert net(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


# -------------------------------------------------------------------------------- scenarios
class Stride(uk.Scenario):
    name = "throwaway_stride"
    summary = "Every other training image (hook test)."
    syntax = "throwaway_stride:<K>"
    example = "2"
    algorithm_version = 1

    def parse(self, params: str) -> str:
        return str(int(params))

    def draw(self, data, seed):
        return uk.ForgetSet(data.pool[:: int(self.params)])


class ScenarioPlugin:
    @uk.hookimpl
    def register_scenarios(self, register):
        register(Stride)


def test_hook_register_scenarios():
    import numpy as np

    regs = host_with(ScenarioPlugin()).registries
    assert "throwaway_stride" in regs.scenarios.names()
    entry = regs.scenarios.get("throwaway_stride")
    assert (entry.cls, entry.provenance) == (Stride, THROWAWAY)
    data = uk.ScenarioData(np.arange(6), np.zeros(6, dtype=np.int64), ["a"])
    assert entry.cls("03").key == "throwaway_stride:3" and entry.cls("3").draw(data, 0).indices.tolist() == [0, 3]


# --------------------------------------------------------------------------------- commands
class CommandPlugin:
    @uk.hookimpl
    def register_commands(self, app: typer.Typer) -> None:
        @app.command("throwaway-hello")
        def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
            """Say hello (a plugin-provided command)."""
            print(f"hello, {name}")


def test_hook_register_commands(host, capsys):
    """Through the real CLI entry point: ``main`` collects plugin commands from the process-wide
    host (the ``host`` fixture) when the first word is not a built-in command."""
    from unlearnkit.cli import app, main

    plugin = CommandPlugin()
    host.register(plugin, THROWAWAY)
    before = list(app.registered_commands)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["throwaway-hello", "--name", "plugin author"])
            raise SystemExit(0)  # main returns normally on success
        assert exc.value.code == 0
        assert capsys.readouterr().out == "hello, plugin author\n"
    finally:
        app.registered_commands[:] = before  # the typer app is process-wide: leave it as found
        host.unregister(plugin)
