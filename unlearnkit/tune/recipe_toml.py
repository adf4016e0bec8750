"""A recipe written back as TOML (the standard library reads TOML but writes none): the tuned recipe
that ``tune --write`` saves, with its provenance as comments."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def dump_toml(doc: Mapping[str, Any], header: list[str], notes: Mapping[str, list[str]]) -> str:
    """A recipe as TOML: ``header`` comment lines, top-level keys, then tables (``[options.M]`` with
    ``notes[M]`` as comments above it)."""
    lines = [f"# {line}" for h in header for line in h.splitlines() or [""]] + [""]
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    for key, value in doc.items():
        if key not in tables and value is not None:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, table in tables.items():
        if table and all(isinstance(v, dict) for v in table.values()):
            for sub, body in table.items():
                lines.append("")
                lines += [
                    f"# {line}" for n in (notes.get(sub, []) if key == "options" else []) for line in n.splitlines()
                ]
                lines.append(f"[{toml_key(key)}.{toml_key(sub)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items() if v is not None]
        elif table:
            lines += ["", f"[{toml_key(key)}]"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


__all__ = ["dump_toml", "toml_key", "toml_value"]


def check_recipe_output(path: Path, recipe: Path | None = None) -> None:
    """Refuse a ``--write`` target the tuned recipe cannot be written to, before any trial runs: a
    folder, a file under a path whose nearest existing folder is not writable (missing folders
    are made when it is written), or the tuned recipe itself (overwritten, its other methods, search
    spaces and comments would be lost, and its next ``tune`` would name, so resume, no study)."""
    from unlearnkit.errors import ConfigError

    path = Path(path)
    if recipe is not None and path.exists() and Path(recipe).exists() and path.samefile(recipe):
        raise ConfigError(
            f"Bad --write {path}: it is the recipe being tuned; name another file (e.g. {path.with_name('tuned-' + path.name)})."
        )
    if path.is_dir():
        raise ConfigError(
            f"Bad --write {path}: it is a folder; name the recipe file to write (e.g. {path}/tuned.toml)."
        )
    if path.exists() and not path.is_file():
        raise ConfigError(f"Bad --write {path}: it exists and is not a regular file.")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"Bad --write {path}: {folder} is not a writable folder.")
