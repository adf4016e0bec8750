"""Meta-tests: every hook is documented in CONTRIBUTING.md with its signature and tested, and
the Python blocks CONTRIBUTING.md marks ``<!-- test: run -->`` run as written.

Hooks are discovered, not listed: a new hookspec without docs or a test fails here.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import tempfile
import types
from pathlib import Path

import pytest

from unlearnkit import hookspecs

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
def test_hook_has_a_docstring(name):
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert len(doc.split()) >= 5, f"hookspec {name} in unlearnkit/hookspecs.py needs a real docstring"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_exact_signature_and_a_runnable_example(name):
    sig = signature(HOOKS[name])
    text = guide()
    assert f"`{sig}`" in text, f"CONTRIBUTING.md does not document `{sig}` (the signature in unlearnkit/hookspecs.py)"
    body = section(text, f"`{sig}`")
    assert body, f"CONTRIBUTING.md has no section headed `{sig}`"
    assert RUN_MARK in body and f"def {name}(" in body, (
        f"the `{sig}` section of CONTRIBUTING.md needs a {RUN_MARK} example implementing {name}"
    )


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_used_by_a_test(name):
    me = Path(__file__).resolve()
    users = [
        p.relative_to(ROOT)
        for p in sorted((ROOT / "tests").rglob("*.py"))
        if p.resolve() != me and re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))
    ]
    assert users, f"no test under tests/ calls or implements the hook {name}"


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
    from unlearnkit.plugins import PluginHost

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
