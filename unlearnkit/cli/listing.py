"""``unlearnkit list``, ``show`` and ``plugins``: what is registered, and where it came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.errors import UnknownNameError

KINDS = {"methods": "method", "metrics": "metric", "datasets": "dataset", "models": "model"}


def _registries():
    from unlearnkit.plugins import get_host

    host = get_host()
    for message in host.report.failed:
        con.warn(message)
    return host


def _kind(word: str, plural: bool) -> str:
    valid = list(KINDS) if plural else list(KINDS.values())
    key = KINDS.get(word, word) if plural else word.rstrip("s")
    if key not in KINDS.values():
        raise UnknownNameError("kind", word, valid)
    return key


def _extra(entry) -> str:
    cls = entry.cls
    kind = cls.kind()
    if kind == "method":
        return cls.access.value
    if kind == "metric":
        return cls.direction.replace("_", " ")
    if kind == "dataset":
        return "embedded" if cls.embedded else "files/download"
    return cls.family


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, metrics, datasets or models")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List registered plugins of one kind, with the package and version each came from."""
    kind = _kind(what, plural=True)
    reg = _registries().registries.by_kind(kind)
    if as_json:
        con.out.print_json(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "summary": e.cls.summary,
                        "package": e.provenance.package,
                        "version": e.provenance.version,
                    }
                    for e in reg.entries()
                ]
            )
        )
        return
    extra = {"method": "data access", "metric": "direction", "dataset": "source", "model": "family"}[kind]
    table = Table(title=f"{len(reg.names())} {what}", title_justify="left")
    for col in ("name", extra, "package", "summary"):
        table.add_column(col, overflow="fold")
    for e in reg.entries():
        table.add_row(e.name, _extra(e), f"{e.provenance.package} {e.provenance.version}", e.cls.summary)
    con.out.print(table)


@app.command()
def show(
    kind: Annotated[str, typer.Argument(help="method, metric, dataset or model")],
    name: Annotated[str, typer.Argument(help="Registered name, e.g. lotus")],
) -> None:
    """Show one plugin: its description, options with defaults and descriptions, provenance."""
    k = _kind(kind, plural=False)
    regs = _registries().registries
    entry = regs.model(name)[0] if k == "model" else regs.by_kind(k).get(name)
    cls = entry.cls
    con.out.print(f"[bold]{cls.kind()} {entry.name}[/] — {cls.summary}", highlight=False)
    con.out.print(f"from {entry.provenance.package} {entry.provenance.version} (plugin '{entry.provenance.plugin}')")
    if getattr(cls, "paper", ""):
        con.out.print(f"paper: {cls.paper}", highlight=False)
    if k == "method":
        con.out.print(f"data access: {cls.access.value}; extra splits: {', '.join(sorted(cls.extra_splits)) or 'none'}")
    if k == "metric":
        con.out.print(f"direction: {cls.direction}; display scale: {cls.display_scale:g}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        con.out.print(doc, highlight=False)
    fields = cls.Options.model_fields
    if fields:
        table = Table(title="options (-o KEY=VALUE)", title_justify="left")
        for col in ("option", "type", "default", "description"):
            table.add_column(col, overflow="fold")
        for fname, field in fields.items():
            type_name = getattr(field.annotation, "__name__", str(field.annotation))
            table.add_row(fname, type_name, repr(field.default), field.description or "")
        con.out.print(table)
        if k == "method":
            con.out.print("Per-setting defaults (the paper's) override these; see the docstring above.")


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Every loaded plugin, its package and version, and what it registered."""
    host = _registries()
    regs = host.registries
    owned: dict[str, list[str]] = {}
    for kind in KINDS.values():
        for e in regs.by_kind(kind).entries():
            owned.setdefault((e.provenance.package, e.provenance.plugin), []).append(f"{kind} {e.name}")
    rows = [
        {"plugin": p.plugin, "package": p.package, "version": p.version, "registers": owned.get((p.package, p.plugin), [])}
        for p in host.report.loaded
    ]
    if as_json:
        con.out.print_json(json.dumps({"loaded": rows, "failed": host.report.failed, "skipped": host.report.skipped}))
        return
    table = Table(title="plugins (entry-point group 'unlearnkit')", title_justify="left")
    for col in ("plugin", "package", "registers"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["plugin"], f"{row['package']} {row['version']}", ", ".join(row["registers"]))
    con.out.print(table)
    for name in host.report.skipped:
        con.out.print(f"skipped (disabled): {name}")
