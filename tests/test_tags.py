"""The store's tag keys are a declared contract (unlearnkit.store.tags): every key the code writes
or reads is declared, with a type and a meaning, and an undeclared one fails where it is used."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from unlearnkit.store import tags as schema
from unlearnkit.store.mlflow_store import RunRecord, tag

ROOT = Path(__file__).resolve().parents[1]


def literal_tag_keys() -> dict[str, list[str]]:
    """Every string passed to ``tag("...")`` or ``<record>.tag("...")`` in shipped code, with where."""
    found: dict[str, list[str]] = {}
    for path in [*ROOT.joinpath("unlearnkit").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0] if node.args else None
            if name == "tag" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if name in ("save_checkpoint", "load_checkpoint"):  # a checkpoint NAME is tagged NAME_sha256
                given = [k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)]
                found.setdefault(f"{(given or ['checkpoint'])[0]}_sha256", []).append(
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                )
            if name == "tag" and isinstance(first, ast.JoinedStr):  # tag(f"{name}_sha256")
                tail = "".join(v.value for v in first.values if isinstance(v, ast.Constant))
                found.setdefault(f"*{tail}", []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_tag_the_code_uses_is_declared():
    found = literal_tag_keys()
    assert len(found) > 40  # the scan sees the code
    undeclared = {}
    for name, where in found.items():
        if name.startswith("*"):  # a pattern: at least one declared key must match it
            if not any(k.endswith(name[1:]) for k in schema.TAGS):
                undeclared[name] = where
        elif name not in schema.TAGS:
            undeclared[name] = where
    assert undeclared == {}, f"declare these tags in unlearnkit/store/tags.py: {undeclared}"


def test_every_declared_tag_has_a_type_and_a_meaning():
    for name, spec in schema.TAGS.items():
        assert spec.kind in ("text", "int", "float", "bool", "hash", "list", "json", "time"), name
        assert len(spec.meaning) > 8, name


def test_an_undeclared_tag_fails_where_it_is_used():
    assert tag("seed") == "unlearnkit.seed"
    with pytest.raises(KeyError, match="'sede' is not declared"):
        tag("sede")
    with pytest.raises(KeyError):
        RunRecord("r", "FINISHED", 0).tag("sede")
