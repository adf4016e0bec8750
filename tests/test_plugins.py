"""Plugin loading: entry points one at a time, guarded; duplicates refused; switches honoured."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest

from unlearnkit.api.contracts import Method
from unlearnkit.api.types import DataAccess
from unlearnkit.discovery.host import PluginHost
from unlearnkit.discovery.registry import Provenance
from unlearnkit.errors import PluginError

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_arrive_through_the_entry_point_group():
    host = PluginHost()
    regs = host.registries
    assert {"lotus", "original", "retrain"} <= set(regs.methods.names())
    assert {"acc_forget", "mia", "jsd", "rf_jsd", "time_s"} <= set(regs.metrics.names())
    assert regs.methods.get("lotus").provenance.package == "unlearnkit"
    names = {ep.name for ep in md.entry_points(group="unlearnkit")}
    assert {"lotus", "metrics", "datasets", "models"} <= names


def test_core_never_imports_a_plugin_by_name():
    offenders = [p for p in (ROOT / "unlearnkit").rglob("*.py") if "unlearnkit_plugins" in p.read_text()]
    assert offenders == []


def core_string_literals() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string literal in ``unlearnkit/`` that is not a docstring nor an
    entry of ``__all__`` (which names the module's own functions, e.g. ``runner.memorised``)."""
    import ast

    found = []
    for path in sorted((ROOT / "unlearnkit").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        docstrings |= {
            id(const)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
            for const in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found.append((str(path.relative_to(ROOT)), node.lineno, node.value))
    return found


def test_core_never_names_a_plugin():
    """The core reaches plugins through their declarations (role, in_avg_gap, display_order, ...),
    never by name: no string literal in unlearnkit/ equals a registered plugin's name. The core's
    own vocabulary is exempt where a plugin shares its word: the reference roles a method can
    declare (``api.Role``), which the reference rows are named after, and ``identity`` (a run's
    identity, the word of ``identity.json`` and bundles), which the identity scenario shares."""
    from typing import get_args

    from unlearnkit.api.types import Role
    from unlearnkit.discovery.registry import KINDS

    regs = PluginHost().registries
    assert "scenario" in KINDS
    names = {n for kind in KINDS for n in regs.by_kind(kind).names()}
    vocabulary = {*get_args(Role), "identity"}
    offenders = [
        (f, line, text)
        for f, line, text in core_string_literals()
        if text in names - vocabulary and f not in NOT_YET_MIGRATED
    ]
    assert offenders == [], offenders


# The audit's shadow forget sets still parse the 0.2 rule words themselves (instance, random,
# class:<id>); they move to asking the scenario plugin with the audit's next change.
NOT_YET_MIGRATED = {"unlearnkit/audit/shadow_splits.py"}


class Dup(Method):
    name = "lotus"
    summary = "A second lotus."
    access = DataAccess.FORGET

    def unlearn(self, model, data, ctx):
        return model


class DupPlugin:
    from unlearnkit.api.hookspecs import hookimpl

    @hookimpl
    def register_methods(self, register):
        register(Dup)


def test_duplicate_names_are_one_clear_error():
    host = PluginHost()
    host.register(DupPlugin(), Provenance("dup", "other-pkg", "9.9"))
    with pytest.raises(PluginError) as err:
        host.registries  # noqa: B018
    assert str(err.value) == (
        "Duplicate method 'lotus': registered by unlearnkit (lotus) and by other-pkg (dup). "
        "Disable one with UNLEARNKIT_DISABLE_PLUGINS=dup."
    )


def test_a_broken_entry_point_is_reported_and_the_rest_still_load(monkeypatch):
    real = md.entry_points(group="unlearnkit")
    broken = md.EntryPoint(name="broken", value="no_such_module_for_unlearnkit", group="unlearnkit")
    monkeypatch.setattr(md, "entry_points", lambda group: [*real, broken])
    host = PluginHost()
    (msg,) = [m for m in host.report.failed if "'broken'" in m]
    assert msg.startswith("Plugin 'broken' from unknown 0 failed to load (ModuleNotFoundError:")
    assert msg.endswith("disable it with UNLEARNKIT_DISABLE_PLUGINS=broken.")
    assert "lotus" in host.registries.methods


def test_disable_and_load_only_switches(monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DISABLE_PLUGINS", "lotus")
    host = PluginHost()
    assert "lotus" not in host.registries.methods and "lotus" in host.report.skipped
    monkeypatch.delenv("UNLEARNKIT_DISABLE_PLUGINS")
    monkeypatch.setenv("UNLEARNKIT_LOAD_PLUGINS", "metrics")
    only = PluginHost()
    assert only.registries.methods.names() == [] and "mia" in only.registries.metrics


def test_plugins_dir_loads_modules_and_reports_broken_files(tmp_path):
    (tmp_path / "good.py").write_text(
        "from unlearnkit import hookimpl\nfrom unlearnkit.testing import TinyModel\n"
        "@hookimpl\ndef register_models(register):\n    register(TinyModel)\n"
    )
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom')\n")
    host = PluginHost(tmp_path)
    assert "tiny_cnn" in host.registries.models
    assert host.registries.models.get("tiny_cnn").provenance.package == f"local:{tmp_path}"
    assert any("bad.py' failed to load (RuntimeError: boom)" in m for m in host.report.failed)


def test_a_misspelt_hook_fails_loudly(tmp_path):
    (tmp_path / "typo.py").write_text(
        "from unlearnkit import hookimpl\n@hookimpl\ndef register_method(register):\n    pass\n"
    )
    with pytest.raises(PluginError, match="implements a hook that does not exist"):
        PluginHost(tmp_path)


def test_trace_switch_shows_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNKIT_TRACE_HOOKS", "1")
    PluginHost().registries  # noqa: B018
    err = capsys.readouterr().err
    assert "[unlearnkit hook] calling register_methods of lotus" in err
    assert "register_methods from lotus (unlearnkit)" in err


def test_a_non_plugin_class_is_refused():
    host = PluginHost(load_entry_points=False)

    class NotAMethod:
        name = "x"

    class P:
        from unlearnkit.api.hookspecs import hookimpl

        @hookimpl
        def register_methods(self, register):
            register(NotAMethod)

    host.register(P(), Provenance("p", "pkg", "1"))
    with pytest.raises(PluginError, match="is not a subclass of unlearnkit.api.Method"):
        host.registries  # noqa: B018


def test_a_misspelt_hook_registered_by_hand_fails_loudly_and_is_not_kept():
    """Before: ``host.register(module)`` (CONTRIBUTING's way to try a plugin) took a misspelt hook
    without a word, so the plugin registered nothing."""
    host = PluginHost(load_entry_points=False)

    class Typo:
        from unlearnkit.api.hookspecs import hookimpl

        @hookimpl
        def register_method(self, register):  # no such hook: register_methods
            pass

    with pytest.raises(PluginError, match="implements a hook that does not exist"):
        host.register(Typo(), Provenance("typo", "pkg", "1"))
    assert host.registries.methods.names() == [] and not host.report.loaded
    host.register(DupPlugin(), Provenance("dup", "other-pkg", "9.9"))  # the host still takes a good one
    assert "lotus" in host.registries.methods


def registering(cls: type, kind: str = "methods") -> PluginError:
    """The error registering ``cls`` as one of ``kind`` raises."""
    host = PluginHost(load_entry_points=False)

    class P:
        from unlearnkit.api.hookspecs import hookimpl

        @hookimpl
        def register_methods(self, register):
            if kind == "methods":
                register(cls)

        @hookimpl
        def register_metrics(self, register):
            if kind == "metrics":
                register(cls)

    host.register(P(), Provenance("p", "pkg", "1"))
    with pytest.raises(PluginError) as err:
        host.registries  # noqa: B018
    return err.value


@pytest.mark.parametrize("name", ["fine,tune", "fine.tune", "a=b", "tail:3", "two words", "-salun"])
def test_a_name_the_command_line_cannot_select_is_refused_at_registration(name):
    """Before: ``--method fine,tune`` split it in two, ``-o fine.tune.lr=1`` read a method 'fine', and
    ``all,-salun`` left out 'salun': the plugin loaded and no command could run it."""
    from unlearnkit_plugins.methods.finetune import Finetune

    cls = type("Renamed", (Finetune,), {"name": name})
    message = str(registering(cls))
    assert message.startswith(f"Plugin 'p' registered method {name!r}, whose name "), message
    assert "delimiter" in message or "leaving NAME out" in message


def test_options_that_are_no_uk_options_are_refused_at_registration():
    """Before: a dataclass as ``Options`` loaded, then ``unlearnkit show method`` was a traceback."""
    from dataclasses import dataclass

    from unlearnkit_plugins.methods.finetune import Finetune

    @dataclass
    class Plain:
        lr: float = 0.1

    message = str(registering(type("Plainly", (Finetune,), {"name": "plainly", "Options": Plain})))
    assert "registered method 'plainly' whose Options is a type" in message, message
    assert "not a subclass of unlearnkit.Options" in message


def test_a_name_that_is_no_text_is_one_line():
    """Before: ``registries.methods.get(["lotus"])`` (a notebook's slip) was a TypeError from "did you mean"."""
    from unlearnkit.errors import ConfigError

    methods = PluginHost().registries.methods
    with pytest.raises(ConfigError, match=r"A method is named by text, not a list of \(str\)\. Valid methods: "):
        methods.get(["lotus"])  # type: ignore[arg-type]
