"""Results-affecting code is versioned: a change to code that produces numbers fails here until the
version that enters the run identity is bumped (a plugin's ``algorithm_version``, the core's
``CORE_VERSION``), so a store never serves results of old code as if they were new.

A change that only moves code (new module paths, renamed helpers, no number changed) re-pins the
digests without a bump, and must prove it may: ``--update`` first reproduces the golden numbers
of the last release (``tests/golden.py``: every built-in method on digits, both protocols) and
refuses to write the lock when any differs (or when this is not the machine that pinned them, where
no comparison can be exact). A change that bumps the versions of what it changed needs no proof.

The lock (``tests/algorithm_versions.json``) records, per built-in plugin and for the core's numeric
modules, the version and a hash of the code's syntax tree — docstrings, comments, formatting,
summaries and option descriptions left out, since they cannot change a number. After bumping:
``python tests/test_versions.py --update``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import sys
from pathlib import Path

from unlearnkit.discovery.host import PluginHost
from unlearnkit.identity import CORE_NUMERIC_MODULES, CORE_VERSION

LOCK = Path(__file__).with_name("algorithm_versions.json")
PLUGIN_PACKAGE = "unlearnkit_plugins"
# class attributes that describe a plugin without changing any number it produces
DESCRIPTIVE = {
    "summary",
    "paper",
    "conformance",
    "algorithm_version",
    "default",
    "title",
    "wants",
    "looks_for",
    "install_hint",
    "display_order",
    "display_scale",
    "display_digits",
    "shown_by_default",
    "cost_axis",
    "in_avg_gap",  # applied when a board is read, never stored
    "search_space",  # what `unlearnkit tune` may search: tuned values reach a run only as its options
    "distributed",  # where a method runs (torchrun ranks); the world size enters the run identity itself
}
UPDATE = "python tests/test_versions.py --update"


class _Strip(ast.NodeTransformer):
    """Drops what cannot change a number: docstrings, descriptive class attributes, option descriptions."""

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            if isinstance(body[0].value.value, str):
                body = body[1:]
        return body or [ast.Pass()]

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = self._body(node.body)
        if isinstance(node, ast.ClassDef):
            node.body = [s for s in node.body if not _descriptive(s)] or [ast.Pass()]
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if k.arg != "description"]
        return super().generic_visit(node)


def _descriptive(stmt: ast.stmt) -> bool:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign):
        targets = [stmt.target]
    names: set[str] = set()
    for target in targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        names |= {e.id if isinstance(e, ast.Name) else "" for e in elements}
    return bool(names) and names <= DESCRIPTIVE


def code_digest(paths: list[Path], focus: tuple[Path, str] | None = None) -> str:
    """Digest of the syntax trees of ``paths``. With ``focus = (module path, class name)``, that
    module contributes only what the class can reach: its own definition, the classes of the
    module it names (bases, constants it reads), transitively, and every module-level statement
    that is not a class — so a sibling plugin in the same file does not version this one."""
    h = hashlib.sha256()
    for path in sorted(paths):
        tree = _Strip().visit(ast.parse(path.read_text(encoding="utf-8")))
        # imports compute nothing: the plugin modules they bring are hashed on their own (local_imports)
        tree.body = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]
        if focus is not None and path == focus[0]:
            tree.body = _reachable(tree.body, focus[1])
        h.update(path.name.encode())
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:16]


def _defined_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return {stmt.name}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _reachable(body: list[ast.stmt], cls_name: str) -> list[ast.stmt]:
    """The module-level statements the class can reach by name (classes, functions, constants),
    transitively; statements that define no name are kept (conservative)."""
    defs: dict[str, list[ast.stmt]] = {}
    for stmt in body:
        for name in _defined_names(stmt):
            defs.setdefault(name, []).append(stmt)
    keep: set[int] = set()
    todo = [cls_name]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        for stmt in defs[name]:
            keep.add(id(stmt))
            todo += [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id in defs]
    return [s for s in body if id(s) in keep or not _defined_names(s)]


def local_imports(path: Path, seen: set[Path] | None = None) -> set[Path]:
    """``path`` and every module of the plugins package it imports, transitively."""
    seen = seen if seen is not None else set()
    if path in seen:
        return seen
    seen.add(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from . import x
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                parts = (node.module or "").split(".") if node.module else []
                candidates = [base.joinpath(*parts).with_suffix(".py")] if parts else []
                candidates += [base.joinpath(*parts, a.name).with_suffix(".py") for a in node.names]
            elif node.module and node.module.startswith(PLUGIN_PACKAGE):
                mod = importlib.import_module(node.module)
                candidates = [Path(mod.__file__)] if mod.__file__ else []
            else:
                continue
            for cand in candidates:
                if cand.is_file() and cand.name != "__init__.py":
                    local_imports(cand, seen)
    return seen


def current() -> dict[str, dict[str, object]]:
    """Version and code digest of the core and of every plugin the unlearnkit distribution registers."""
    out: dict[str, dict[str, object]] = {
        "core": {
            "version": CORE_VERSION,
            "code": code_digest([Path(importlib.import_module(m).__file__ or "") for m in CORE_NUMERIC_MODULES]),
        }
    }
    regs = PluginHost().registries
    for kind in ("method", "metric", "dataset", "model", "scenario"):
        for entry in regs.by_kind(kind).entries():
            if entry.provenance.package != "unlearnkit":
                continue
            source = Path(sys.modules[entry.cls.__module__].__file__ or "")
            out[f"{kind}:{entry.name}"] = {
                "version": entry.cls.algorithm_version,
                "code": code_digest(sorted(local_imports(source)), focus=(source, entry.cls.__name__)),
            }
    return out


def test_every_builtin_plugin_declares_an_algorithm_version():
    regs = PluginHost().registries
    missing = [
        f"{kind} {e.name}"
        for kind in ("method", "metric", "dataset", "model", "scenario")
        for e in regs.by_kind(kind).entries()
        if e.provenance.package == "unlearnkit" and not isinstance(e.cls.algorithm_version, int)
    ]
    assert missing == [], f"declare algorithm_version on: {', '.join(missing)}"


def test_code_that_changes_numbers_is_versioned():
    lock = json.loads(LOCK.read_text())
    problems = []
    for key, now in current().items():
        before = lock.get(key)
        if before is None:
            problems.append(f"{key} is new: record it with `{UPDATE}`")
        elif now["code"] != before["code"] and now["version"] == before["version"]:
            what = "CORE_VERSION in unlearnkit/identity.py" if key == "core" else "its algorithm_version"
            problems.append(f"{key}'s code changed but its version did not: bump {what}, then run `{UPDATE}`")
        elif now != before:
            problems.append(f"{key}: the lock is out of date: run `{UPDATE}`")
    stale = sorted(set(lock) - set(current()))
    problems += [f"{key} is no longer registered: run `{UPDATE}`" for key in stale]
    assert problems == [], "\n".join(problems)


def test_the_digest_sees_a_one_line_change_to_a_loss_and_ignores_comments(tmp_path):
    loss = tmp_path / "m.py"
    loss.write_text('"""doc"""\ndef loss(a, b):\n    return (a - b) ** 2\n')
    base = code_digest([loss])
    loss.write_text('"""new doc"""\n# a comment\ndef loss(a, b):\n    """why"""\n    return (a - b) ** 2\n')
    assert code_digest([loss]) == base
    loss.write_text('"""doc"""\ndef loss(a, b):\n    return abs(a - b)\n')
    assert code_digest([loss]) != base


def test_a_sibling_plugin_in_the_same_module_does_not_version_another(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("K = 2\nclass Base:\n    x = K\nclass A(Base):\n    y = 1\nclass B(Base):\n    y = 2\n")
    a, b = code_digest([mod], focus=(mod, "A")), code_digest([mod], focus=(mod, "B"))
    mod.write_text("K = 2\nclass Base:\n    x = K\nclass A(Base):\n    y = 1\nclass B(Base):\n    y = 3\n")
    assert code_digest([mod], focus=(mod, "A")) == a and code_digest([mod], focus=(mod, "B")) != b
    mod.write_text("K = 3\nclass Base:\n    x = K\nclass A(Base):\n    y = 1\nclass B(Base):\n    y = 3\n")
    assert code_digest([mod], focus=(mod, "A")) != a  # a shared constant versions both


def unbumped_changes(lock: dict[str, dict[str, object]], now: dict[str, dict[str, object]]) -> list[str]:
    """Keys whose code changed while their version did not: what only a golden proof may re-pin."""
    return sorted(
        k for k, v in now.items() if k in lock and v["code"] != lock[k]["code"] and v["version"] == lock[k]["version"]
    )


def test_repinning_moved_code_needs_the_golden_numbers(tmp_path, monkeypatch):
    """A digest that changed under an unchanged version is re-pinned only after the golden check."""
    import golden

    lock = {"core": {"code": "a", "version": 2}, "method:x": {"code": "b", "version": 1}}
    assert unbumped_changes(lock, {"core": {"code": "a", "version": 2}, "method:x": {"code": "c", "version": 2}}) == []
    assert unbumped_changes(lock, {"core": {"code": "z", "version": 2}, "method:x": {"code": "b", "version": 1}}) == [
        "core"
    ]
    target = tmp_path / "lock.json"
    target.write_text(json.dumps(lock))
    monkeypatch.setattr(sys.modules[__name__], "LOCK", target)
    monkeypatch.setattr(sys.modules[__name__], "current", lambda: {**lock, "core": {"code": "z", "version": 2}})
    monkeypatch.setattr(golden, "check", lambda exact: ["clean/lotus/acc_forget: 0.5 != pinned 0.6"])
    assert update([]) == 1 and json.loads(target.read_text()) == lock  # refused: nothing written
    monkeypatch.setattr(golden, "check", lambda exact: [])
    assert update([]) == 0 and json.loads(target.read_text())["core"]["code"] == "z"


def update(argv: list[str]) -> int:
    now = current()
    unbumped = unbumped_changes(json.loads(LOCK.read_text()), now)
    if unbumped:
        sys.path.insert(0, str(Path(__file__).parent))
        import golden

        print(f"code changed without a version bump ({', '.join(unbumped)}): checking the golden numbers first")
        problems = golden.check(exact=True)
        if problems:
            print("the golden numbers moved, so this change changes numbers: bump the versions instead")
            print("\n".join(problems[:20]))
            return 1
    LOCK.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    print(f"wrote {LOCK}")
    return 0


if __name__ == "__main__":
    if "--update" in sys.argv:
        raise SystemExit(update(sys.argv))
