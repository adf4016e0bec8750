"""``unlearnkit list``, ``show`` and ``plugins``: what is registered, and where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import Experiment, TrackingUri, home, plugin_host
from unlearnkit.errors import UnknownNameError


def _plugin_kinds() -> tuple[str, ...]:
    """The plugin kinds, from the registry module (imported here, not with the CLI: it pulls in the
    plugin contracts, numpy and pydantic, which ``unlearnkit --help`` need not load)."""
    from unlearnkit.discovery.registry import KINDS

    return KINDS


def _kind(word: str, plural: bool, extra: tuple[str, ...] = ()) -> str:
    kinds = {f"{k}s": k for k in _plugin_kinds()}
    valid = [*kinds, *extra] if plural else [*kinds.values(), *extra]
    if word in extra:
        return word
    key = kinds.get(word, word) if plural else word.rstrip("s")
    if key not in kinds.values():
        raise UnknownNameError("kind", word, valid)
    return key


def _extra(entry) -> str:
    cls = entry.cls
    kind = cls.kind()
    if kind == "method":
        rules = "" if cls.scenario_rules is None else f" ({', '.join(sorted(cls.scenario_rules))} forgetting only)"
        return cls.access.value + rules
    if kind == "metric":
        needs = sorted(cls.needs)
        return cls.direction.replace("_", " ") + (f"; needs {', '.join(needs)}" if needs else "")
    if kind == "dataset":  # a dataset can download only through a `download` option
        return "embedded" if cls.embedded else ("files/download" if "download" in cls.Options.model_fields else "files")
    if kind == "scenario":
        return cls.syntax
    return cls.family


def _list_train_recipes(as_json: bool) -> None:
    import tomllib

    from unlearnkit.loops.training import builtin_recipe_text, builtin_recipes

    rows = []
    for name in builtin_recipes():
        doc = tomllib.loads(builtin_recipe_text(name))
        rows.append(
            {
                "name": name,
                "description": doc.get("description", ""),
                "families": sorted(k for k in doc if isinstance(doc[k], dict)),
            }
        )
    if as_json:
        con.out.print_json(json.dumps(rows))
        return
    table = Table(title="training recipes (--train-recipe NAME, or a .toml file)", title_justify="left")
    for col in ("name", "model families", "description"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["name"], ", ".join(row["families"]), row["description"])
    con.out.print(table)


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, metrics, datasets, models, scenarios or recipes")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List registered plugins of one kind (with the package and version each came from), or the training recipes."""
    kind = _kind(what, plural=True, extra=("recipes",))
    if kind == "recipes":
        _list_train_recipes(as_json)
        return
    reg = plugin_host().registries.by_kind(kind)
    extra = {  # the column beside the name: in the table and, as a key, in the JSON
        "method": "data access",
        "metric": "direction",
        "dataset": "source",
        "model": "family",
        "scenario": "syntax",
    }[kind]
    if as_json:
        con.out.print_json(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "summary": e.cls.summary,
                        extra.replace(" ", "_"): _extra(e),
                        **({"paper": e.cls.paper} if kind == "method" else {}),
                        **(
                            {"scenario_rules": sorted(e.cls.scenario_rules)}
                            if kind == "method" and e.cls.scenario_rules is not None
                            else {}
                        ),
                        "package": e.provenance.package,
                        "version": e.provenance.version,
                    }
                    for e in reg.entries()
                ]
            )
        )
        return
    table = Table(title=f"{len(reg.names())} {what}", title_justify="left")
    columns = ["name", extra, "package", "summary", *(["paper"] if kind == "method" else [])]
    for col in columns:
        table.add_column(col, overflow="fold")
    for e in reg.entries():
        cells = [e.name, _extra(e), f"{e.provenance.package} {e.provenance.version}", e.cls.summary]
        table.add_row(*cells, *([e.cls.paper or "-"] if kind == "method" else []))
    if kind == "metric":  # the audit's own columns: computed by `unlearnkit audit`, not by a plugin
        from unlearnkit.board.leaderboard import AUDIT_INFO, AUDIT_SUMMARIES

        for name, summary in AUDIT_SUMMARIES.items():
            direction = AUDIT_INFO[name].direction.replace("_", " ")
            table.add_row(name, f"{direction}; needs unlearnkit audit", "unlearnkit (audit)", summary)
    con.out.print(table)


# The settings a CPU rerun must match to reproduce a run's numbers bit for bit (the engine's numerics tags).
NUMERICS = ("device", "threads", "deterministic", "default_dtype", "torch_version")


def _show_run(run_id: str, plot: Path | None, tracking_uri: str | None, experiment: str) -> None:
    from unlearnkit.store.mlflow_store import Store

    if plot is not None:  # checked before the store is read or anything printed
        from unlearnkit.board.plots import figure_path

        replaced = figure_path(plot).exists()
    store = Store(tracking_uri, experiment)
    record = store.get(run_id)
    con.out.print(
        f"[bold]run {con.escape(record.run_id)}[/] ({con.escape(record.status)})", markup=True, highlight=False
    )
    for key in ("run_type", "method", "role", "dataset", "model", "scenario", "protocol", "seed", "train_recipe"):
        if record.tag(key):
            con.out.print(f"  {key}: {con.one_row(record.tag(key))}", highlight=False)
    numerics = [(key, record.tag(key)) for key in NUMERICS if record.tag(key)]
    if numerics:  # what bit-identical reruns must match (docs/protocols.md); runs before 0.3 lack them
        shown_numerics = ", ".join(f"{key}={con.one_row(value)}" for key, value in numerics)
        con.out.print(f"  numerics: {shown_numerics}", highlight=False)
    if record.tag("failure"):
        con.out.print(f"  failure: {con.one_row(record.tag('failure'))}", highlight=False)
    table = Table(title="metrics (final values)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(record.metrics.items()):
        table.add_row(con.one_row(name), f"{value:.6g}")
    con.out.print(table)
    series = {name: pts for name in record.metrics if len(pts := store.series(record.run_id, name)) > 1}
    for name, points in sorted(series.items()):
        shown = ", ".join(f"{v:.4g}" for _, v in points)
        con.out.print(f"{con.one_row(name)} per epoch: {shown}", highlight=False, soft_wrap=True)
    if plot is not None:
        from unlearnkit.board.plots import plot_series

        title = f"{record.tag('method') or record.tag('role')} — {record.tag('dataset')} / {record.tag('model')}"
        plot_series(series, title, plot)
        con.err.print(f"Figure written to {plot}" + (" (it replaced the file there)" if replaced else ""))


@app.command()
def show(
    kind: Annotated[str, typer.Argument(help="method, metric, dataset, model, scenario or run")],
    name: Annotated[str, typer.Argument(help="A registered name (see `unlearnkit list`), or a run id")],
    plot: Annotated[
        Path | None, typer.Option(help="With `show run`: draw the run's per-epoch series to FILE.", callback=home)
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
) -> None:
    """Show one plugin (description, options, provenance) or one run (metrics, per-epoch series)."""
    k = _kind(kind, plural=False, extra=("run",))
    if k == "run":
        _show_run(name, plot, tracking_uri, experiment)
        return
    regs = plugin_host().registries
    entry = regs.model(name)[0] if k == "model" else regs.by_kind(k).get(name)
    cls: Any = entry.cls  # its attributes are its kind's: read below per kind
    con.out.print(
        f"[bold]{cls.kind()} {con.escape(entry.name)}[/] — {con.escape(cls.summary)}", markup=True, highlight=False
    )
    con.out.print(f"from {entry.provenance.package} {entry.provenance.version} (plugin '{entry.provenance.plugin}')")
    if getattr(cls, "paper", ""):
        con.out.print(f"paper: {cls.paper}", highlight=False)
    if k == "method":
        con.out.print(f"data access: {cls.access.value}; extra splits: {', '.join(sorted(cls.extra_splits)) or 'none'}")
    if k == "scenario":  # how it is written: the text --forget takes
        con.out.print(f"syntax: {cls.syntax}; e.g. --forget {cls.name}:{cls.example}", highlight=False)
    if k == "metric":
        con.out.print(f"direction: {cls.direction}; display scale: {cls.display_scale:g}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        con.out.print(doc, highlight=False)
    fields = cls.Options.model_fields
    if fields:
        given = {"dataset": "--dataset-option", "model": "--model-option"}.get(k, "-o")  # what `run` reads them from
        table = Table(title=f"options ({given} KEY=VALUE)", title_justify="left")
        for col in ("option", "type", "default", "description"):
            table.add_column(col, overflow="fold")
        for fname, field in fields.items():
            type_name = getattr(field.annotation, "__name__", str(field.annotation))
            table.add_row(fname, type_name, repr(field.default), field.description or "")
        con.out.print(table)
        if k == "method" and own_setting_defaults(cls):
            con.out.print("Per-setting defaults (the paper's) override these; see the docstring above.")


def own_setting_defaults(cls: type) -> bool:
    """Whether a method class (or a base of its own) sets per-setting defaults: ``show`` says they
    override the options only where they do (most baselines have none)."""
    from unlearnkit.api.contracts import Method

    return any("default_options" in vars(c) for c in cls.__mro__ if c is not Method and issubclass(c, Method))


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Every loaded plugin, its package and version, and what it registered."""
    host = plugin_host()
    regs = host.registries
    owned: dict[tuple[str, str], list[str]] = {}
    for kind in _plugin_kinds():
        for e in regs.by_kind(kind).entries():
            owned.setdefault((e.provenance.package, e.provenance.plugin), []).append(f"{kind} {e.name}")
    rows: list[dict[str, Any]] = [
        {
            "plugin": p.plugin,
            "package": p.package,
            "version": p.version,
            "registers": owned.get((p.package, p.plugin), []),
        }
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
