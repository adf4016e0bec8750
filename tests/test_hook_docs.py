"""Meta-tests: every hook is documented in CONTRIBUTING.md with its signature and has its own
test function, and the Python blocks CONTRIBUTING.md marks ``<!-- test: run -->`` run as written.

Hooks are discovered, not listed: a new hookspec without docs or without a ``test_hook_<name>``
function (as datasette requires of its hooks) fails here.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import tempfile
import types
from pathlib import Path

import pytest

from unlearnkit.api import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "CONTRIBUTING.md"
RUN_MARK = "<!-- test: run -->"
RUNNABLE = re.compile(r"^<!-- test: run -->[ \t]*\n```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def hook_specs() -> dict[str, types.FunctionType]:
    """Functions of unlearnkit.hookspecs carrying the ``unlearnkit`` hookspec marker."""
    marker = f"{hookspecs.hookspec.project_name}_spec"
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if getattr(fn, marker, None) is not None
    }


def signature(fn: types.FunctionType) -> str:
    """``register_methods(register)``: the name and parameter names, as CONTRIBUTING.md writes them."""
    return f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})"


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def section(text: str, heading_fragment: str) -> str:
    """The markdown section whose heading contains ``heading_fragment``, up to the next heading of
    the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s", line)
        if m and heading_fragment in line:
            level = len(m.group(1))
            end = next(
                (j for j in range(i + 1, len(lines)) if re.match(rf"^#{{1,{level}}}\s", lines[j])),
                len(lines),
            )
            return "\n".join(lines[i:end])
    return ""


HOOKS = hook_specs()


def test_hooks_are_discovered():
    # the five hooks of the design; more may be added, and then they must pass the tests below too
    assert {"register_methods", "register_metrics", "register_datasets", "register_models", "register_commands"} <= set(
        HOOKS
    )


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hookspec_has_a_docstring(name):
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert len(doc.split()) >= 5, f"hookspec {name} in unlearnkit/hookspecs.py needs a real docstring"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hookspec_is_documented_with_its_exact_signature_and_a_runnable_example(name):
    sig = signature(HOOKS[name])
    text = guide()
    assert f"`{sig}`" in text, f"CONTRIBUTING.md does not document `{sig}` (the signature in unlearnkit/hookspecs.py)"
    body = section(text, f"`{sig}`")
    assert body, f"CONTRIBUTING.md has no section headed `{sig}`"
    assert RUN_MARK in body and f"def {name}(" in body, (
        f"the `{sig}` section of CONTRIBUTING.md needs a {RUN_MARK} example implementing {name}"
    )


def collected_test_functions() -> dict[str, Path]:
    """Test functions pytest collects from tests/test_*.py (module level and ``Test*`` classes),
    by name, with the file each is in (this file's meta-tests are ``test_hookspec_*``)."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        nodes = list(tree.body)
        nodes += [n for c in tree.body if isinstance(c, ast.ClassDef) and c.name.startswith("Test") for n in c.body]
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                found.setdefault(node.name, path)
    return found


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hookspec_has_a_test_hook_function(name):
    """A function named ``test_hook_<name>`` must exist, in a test module that implements the hook
    (``def <name>(``): mentioning the hook's name somewhere is not a test of it."""
    wanted = f"test_hook_{name}"
    path = collected_test_functions().get(wanted)
    assert path is not None, (
        f"no test function `{wanted}` under tests/: write one that registers a throwaway plugin implementing "
        f"{name} on a PluginHost and asserts what it registers arrives (see tests/test_hooks.py)"
    )
    assert re.search(rf"\bdef {name}\(", path.read_text(encoding="utf-8")), (
        f"{path.relative_to(ROOT)} defines `{wanted}` but implements no `{name}` hook for it to exercise"
    )


def runnable_blocks() -> list[tuple[int, str]]:
    text = guide()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in RUNNABLE.finditer(text)]


def test_runnable_blocks_are_found():
    assert len(runnable_blocks()) >= len(HOOKS) + 1  # one per hook, plus the tutorial
    marks = re.findall(rf"^{re.escape(RUN_MARK)}[ \t]*$", guide(), re.M)
    assert len(marks) == len(runnable_blocks()), f"a {RUN_MARK} line is not followed by a ```python block"


@pytest.mark.parametrize("line, code", runnable_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_contributing_example_runs(line, code, tmp_path, monkeypatch):
    """Execute the block as a fresh module in an empty folder, then load it on an empty plugin
    host and build the registries: a class it registers must be valid."""
    from unlearnkit.discovery.host import PluginHost

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the block's temporary folders land here too
    name = f"contributing_example_line{line}"
    module = types.ModuleType(name)
    module.__file__ = str(GUIDE)
    environ = dict(os.environ)
    sys.modules[name] = module
    try:
        exec(compile(code, f"{GUIDE.name}:{line}", "exec"), module.__dict__)
        host = PluginHost(load_entry_points=False)
        host.register(module)
        host.registries  # noqa: B018 - registering runs every class through the registry's checks
    finally:
        sys.modules.pop(name, None)
        os.environ.clear()
        os.environ.update(environ)
