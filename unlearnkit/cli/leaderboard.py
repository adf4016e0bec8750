"""``unlearnkit leaderboard``: the store read back, aggregated over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import Experiment, Format, TrackingUri, check_format, home, open_to_read
from unlearnkit.errors import ConfigError, counted, did_you_mean, shorten

if TYPE_CHECKING:
    from unlearnkit.board.leaderboard import Board, MetricInfo


@app.command()
def leaderboard(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    scenario: Annotated[str | None, typer.Option(help="Only this forget scenario, e.g. instance:0.1.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only this evaluation protocol: clean or paper.")] = None,
    access: Annotated[
        str | None, typer.Option(help="Only methods with this data access: none, forget, retain, forget+retain.")
    ] = None,
    sort: Annotated[str, typer.Option(help="Sort rows by avg_gap or a metric name.")] = "avg_gap",
    recipe: Annotated[
        Path | None, typer.Option(help="Only the cells and methods of this recipe.", callback=home)
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Metric columns to show, comma-separated (default: a set that fits 120 columns).")
    ] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every metric, the per-seed gap and the package.")] = False,
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="95 % t-intervals over seeds instead of ± std; ≈ marks rows not separated from the "
            "leader on the sort column.",
        ),
    ] = False,
    tuning: Annotated[bool, typer.Option("--tuning", help="Include tuning trials (hidden by default).")] = False,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Only runs of these seeds, comma-separated (default: every seed).")
    ] = None,
    format: Format = "table",
    plot: Annotated[
        Path | None, typer.Option(help="Write a figure (Avg Gap vs time, metric bars) to FILE.", callback=home)
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
) -> None:
    """Per benchmark, one row per method: mean ± std (or 95 % interval) over seeds, Avg Gap to the retrained model."""
    from unlearnkit.board import tables
    from unlearnkit.board.leaderboard import leaderboard as build
    from unlearnkit.board.leaderboard import metric_info
    from unlearnkit.board.plots import figure_path
    from unlearnkit.discovery.host import get_host
    from unlearnkit.engine.config import parse_seeds
    from unlearnkit.store.mlflow_store import Store

    check_format(format)
    info = metric_info(get_host().registries)
    if sort != "avg_gap" and sort not in info:
        raise ConfigError(
            f"Unknown sort key '{shorten(sort)}'.{did_you_mean(sort, ['avg_gap', *info])} "
            f"Valid keys: avg_gap, {', '.join(sorted(info))}."
        )
    chosen = None if wide else ["default"]
    if columns:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        for name in chosen:
            if name not in info:
                raise ConfigError(
                    f"Unknown column '{shorten(name)}'.{did_you_mean(name, info)} "
                    f"Valid columns: {', '.join(sorted(info))}."
                )
        if not chosen:  # "," would print boards with no metric column at all
            raise ConfigError(
                f"--columns '{shorten(columns)}' names no column. Valid columns: {', '.join(sorted(info))}."
            )
    check_filters(protocol, access)
    scenario = scenario_key(scenario)
    wanted = parse_seeds(seeds) if seeds is not None else None
    replaced = plot is not None and figure_path(plot).exists()  # a bad --plot costs no store read
    store = Store(tracking_uri, experiment)
    readable = store.exists() and open_to_read(store)
    scope: dict[str, Any] = {}
    if recipe is not None:
        from unlearnkit.scale.sweep_recipes import load_recipe, recipe_scope

        cells, methods = recipe_scope(load_recipe(recipe))
        scope = {"recipe_cells": cells, "recipe_methods": methods}
    boards: list[Board] = []
    if readable:  # else no store, or no run in it yet: nothing to read, and nothing made by asking
        boards = build(
            store,
            info,
            dataset=dataset,
            model=model,
            scenario=scenario,
            protocol=protocol,
            access=access,
            sort=sort,
            include_tuning=tuning,
            seeds=wanted,
            **scope,
        )
    if plot is not None:
        from unlearnkit.board.plots import plot_boards

        plot_boards(boards, plot, ci=ci)
        con.err.print(f"Figure written to {plot}" + (" (it replaced the file there)" if replaced else ""))
    if format == "json":
        con.out.print(tables.to_json(boards), highlight=False, soft_wrap=True)
        return
    if format == "markdown":
        con.out.print(tables.to_markdown(boards, info, chosen, ci=ci), highlight=False, soft_wrap=True)
        return
    if format == "csv":
        con.out.print(tables.to_csv(boards, info), highlight=False, soft_wrap=True, end="")
        return
    if not boards:
        asked: dict[str, object] = {"--dataset": dataset, "--model": model, "--scenario": scenario}
        asked |= {"--protocol": protocol}
        asked |= {"--access": access, "--recipe": recipe, "--seeds": seeds}
        given = [f"{flag} {shorten(value)}" for flag, value in asked.items() if value]
        if given:  # the store may hold runs, just none of these
            con.out.print(f"No finished runs in {store.shown_uri} match {', '.join(given)}.", highlight=False)
            return
        trained = len(store.search({"run_type": "train"})) if readable else 0  # a search of nothing makes it
        if trained:  # an imported bundle, or references trained by a run that then failed: say they are there
            con.out.print(
                f"No finished unlearning runs in {store.shown_uri}; it holds {counted(trained, 'trained reference model')}"
                " (imported or trained), which `unlearnkit run` on their dataset and model reuses.",
                highlight=False,
            )
            return
        con.out.print(f"No finished runs in {store.shown_uri}. Start with: unlearnkit run")
        return
    for board in boards:
        table = render(board, info, chosen, wide=wide, ci=ci)
        if ci:
            print_whole(table)
        else:
            con.out.print(table)
        for note in tables.notes(board, info):  # what each mark means (fewer seeds, weak original, no-op, audit)
            con.out.print(con.one_row(note), style="yellow", highlight=False)
        for note in tables.ci_notes(board, info) if ci else []:  # what ≈ means, which rows were not compared
            con.out.print(con.one_row(note), style="yellow", highlight=False)
    spread = (
        "mean [95 % t-interval] over seeds (docs/metrics.md)" if ci else "mean ± std over seeds (--ci: 95 % intervals)"
    )
    con.out.print(
        f"{spread}; best method per column in green (closer to retrain where that is the target); "
        "avg gap = mean |Δ| to retrain over the Average-Gap metrics. --wide: every column.",
        highlight=False,
    )


def check_filters(protocol: str | None, access: str | None) -> None:
    """A misspelt filter matches no run: refused, so it is never read as "no finished runs" (or, for
    --access, as a board of its reference rows alone). Empty means no filter, as it does to the board."""
    from unlearnkit.api.protocols import PROTOCOLS
    from unlearnkit.api.types import DataAccess

    if protocol and protocol not in PROTOCOLS:
        raise ConfigError(
            f"Unknown protocol '{shorten(protocol)}'.{did_you_mean(protocol, PROTOCOLS)} "
            f"Valid protocols: {', '.join(PROTOCOLS)}."
        )
    values = [a.value for a in DataAccess]
    if access and access not in values:
        raise ConfigError(
            f"Unknown data access '{shorten(access)}'.{did_you_mean(access, values)} "
            f"Valid --access values: {', '.join(values)}."
        )


def print_whole(table: Table) -> None:
    """Print a table with no cell cut. Interval cells (``--ci``) are wider than ± std, so a board may
    not fit the terminal: rendered at its natural width it wraps there, where rich would cut numbers
    to an ellipsis; ``--columns`` narrows it."""
    from rich.measure import Measurement
    from rich.segment import Segments

    needed = Measurement.get(con.out, con.out.options.update(width=10_000), table).maximum
    if needed <= con.out.width:
        con.out.print(table)
        return
    lines = con.out.render_lines(table, con.out.options.update(width=needed), new_lines=True)
    con.out.print(Segments([seg for line in lines for seg in line]), crop=False, soft_wrap=True, end="")


def render(
    board: Board, info: dict[str, MetricInfo], chosen: list[str] | None, *, wide: bool, ci: bool = False
) -> Table:
    """One board as a rich table: cells never wrap (the default columns fit 120 characters)."""
    from unlearnkit.board import tables

    head, rows = tables.board_cells(board, info, chosen, wide=wide, ci=ci)
    table = Table(title=con.one_row(board.title), title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False)
    for col in head:
        table.add_column(col, justify="left" if col in ("method", "access", "package") else "right", no_wrap=True)
    for row_cells in rows:
        table.add_row(*[con.styled(con.one_row(t), "bold green") if best else con.one_row(t) for t, best in row_cells])
    return table


def scenario_key(text: str | None) -> str | None:
    """``--scenario`` as the runs store it: the key its scenario parses it to, so ``0.20`` finds the runs
    of ``--forget 0.2`` and a padded count or fraction finds the runs of the plain one. A text no
    installed scenario parses (a third party's not installed here, a typo) is matched as typed."""
    if text is None:
        return None
    from unlearnkit.discovery.host import get_host
    from unlearnkit.engine.splits import parse_scenario

    try:
        return parse_scenario(text, get_host().registries.scenarios).key
    except ConfigError:
        return text
