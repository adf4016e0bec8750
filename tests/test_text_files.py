"""Text files the toolkit reads and writes name their encoding: a recipe, a tuned recipe or a score
sidecar written under one locale (Latin-1, a Windows code page) must read back under another, and
a comment that carries user text stays one comment."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from unlearnkit.tune.recipe_toml import dump_toml

ROOT = Path(__file__).resolve().parents[1]
TEXT_CALLS = ("read_text", "write_text")


def calls_without_encoding(path: Path) -> list[str]:
    """``x.read_text()`` / ``x.write_text(s)`` / text-mode ``open(...)`` calls in ``path`` that leave
    the encoding to the locale."""
    found = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        keywords = {k.arg for k in node.keywords}
        if "encoding" in keywords:
            continue
        if name in TEXT_CALLS:
            found.append(f"{where}:{node.lineno} {name}")
        elif name == "open" and isinstance(func, ast.Name):  # builtins.open; tarfile/Image/os opens are binary
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if not (isinstance(mode, ast.Constant) and "b" in str(mode.value)):
                found.append(f"{where}:{node.lineno} open")
    return found


def test_every_text_read_and_write_in_shipped_code_names_its_encoding():
    files = sorted([*(ROOT / "unlearnkit").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])
    assert len(files) > 100  # the scan reads the tree, not an empty folder
    assert [hit for f in files for hit in calls_without_encoding(f)] == []


def test_the_scan_finds_a_call_that_leaves_the_encoding_to_the_locale(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "open('x')\nopen('x', 'rb')\nPath('x').read_text()\nPath('x').write_text('s', encoding='utf-8')\n",
        encoding="utf-8",
    )
    assert [hit.rsplit(" ", 1)[1] for hit in calls_without_encoding(sample)] == ["open", "read_text"]


def test_a_tuned_recipe_header_with_a_line_break_stays_comments():
    """A recipe path or name with a line break in it (however it got there) cannot inject a key."""
    text = dump_toml(
        {"name": "tuned", "options": {"lotus": {"beta": 1.5}}},
        ["Written by `unlearnkit tune a\nmethods = ['evil']`", ""],
        {"lotus": ["best 0.1\nseeds = [1]"]},
    )
    doc = tomllib.loads(text)
    assert doc == {"name": "tuned", "options": {"lotus": {"beta": 1.5}}}
    assert all(line.startswith("#") for line in text.splitlines()[:3])
