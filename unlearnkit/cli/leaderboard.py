"""``unlearnkit leaderboard``: the store read back, aggregated over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.errors import ConfigError

FORMATS = ("table", "markdown", "csv", "json")


@app.command()
def leaderboard(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    scenario: Annotated[str | None, typer.Option(help="Only this forget scenario, e.g. instance:0.1.")] = None,
    access: Annotated[
        str | None, typer.Option(help="Only methods with this data access: forget, retain, forget+retain.")
    ] = None,
    sort: Annotated[str, typer.Option(help="Sort rows by avg_gap or a metric name.")] = "avg_gap",
    recipe: Annotated[Path | None, typer.Option(help="Only the cells and methods of this recipe.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, markdown, csv or json.")] = "table",
    plot: Annotated[Path | None, typer.Option(help="Write a figure (Avg Gap vs time, metric bars) to FILE.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
) -> None:
    """Per benchmark, one row per method: mean ± std over seeds, Avg Gap to the retrained model."""
    from unlearnkit import tables
    from unlearnkit.leaderboard import leaderboard as build
    from unlearnkit.plugins import get_host
    from unlearnkit.store import Store

    if format not in FORMATS:
        raise ConfigError(f"Unknown format '{format}'. Valid formats: {', '.join(FORMATS)}.")
    regs = get_host().registries
    info = {e.name: tables.MetricInfo(e.cls.direction, e.cls.display_scale) for e in regs.metrics.entries()}
    if sort != "avg_gap" and sort not in info:
        raise ConfigError(f"Unknown sort key '{sort}'. Valid keys: avg_gap, {', '.join(sorted(info))}.")
    store = Store(tracking_uri, experiment)
    store.check()
    scope = {}
    if recipe is not None:
        from unlearnkit.cli.sweep import recipe_scope

        cells, methods = recipe_scope(recipe)
        scope = {"recipe_cells": cells, "recipe_methods": methods}
    boards = build(store, dataset=dataset, model=model, scenario=scenario, access=access, sort=sort, **scope)
    if plot is not None:
        from unlearnkit.plots import plot_boards

        plot_boards(boards, plot)
        con.err.print(f"Figure written to {plot}")
    if format == "json":
        con.out.print(tables.to_json(boards), highlight=False, soft_wrap=True)
        return
    if format == "markdown":
        con.out.print(tables.to_markdown(boards, info), highlight=False, soft_wrap=True, markup=False)
        return
    if format == "csv":
        con.out.print(tables.to_csv(boards, info), highlight=False, soft_wrap=True, markup=False, end="")
        return
    if not boards:
        con.out.print(f"No finished runs in {store.uri}. Start with: unlearnkit run --method lotus")
        return
    for board in boards:
        head, rows = tables.board_cells(board, info)
        table = Table(title=board.title, title_justify="left")
        for col in head:
            table.add_column(col, justify="left" if col in ("method", "access", "package") else "right")
        for cells in rows:
            table.add_row(*[f"[bold green]{t}[/]" if best else t for t, best in cells])
        con.out.print(table)
    con.out.print(
        "mean ± std over seeds; best non-reference value per column in green (closer to retrain where "
        "that is the target); avg gap = mean |Δ| to retrain over mia, acc_forget, acc_retain, acc_test."
    )
