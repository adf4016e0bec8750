"""``unlearnkit reproduce TABLE``: run a published table's cells and judge each one (docs/reproducing.md)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import (
    CpusPerRun,
    Executor,
    Experiment,
    Format,
    GpusPerRun,
    PluginsDir,
    RayAddress,
    RecipeDevice,
    RecipeSeeds,
    TrackingUri,
    check_format,
    home,
    host_and_store,
    one_process_only,
    ray_executor,
    started,
    torch_builds_checked,
)
from unlearnkit.errors import counted

if TYPE_CHECKING:
    from rich.text import Text

    from unlearnkit.board.published import PublishedTable, Reproduction
    from unlearnkit.scale.estimate import Paces
    from unlearnkit.scale.reproduce import TableJobs
    from unlearnkit.store.mlflow_store import Store

VERDICT_STYLE = {"holds": "green", "outside": "bold red", "not run": "dim"}


LIST_NOTE = (
    "cost: the published runtimes of every row times the published seeds, the original counted at "
    "the retraining's cost, on the machine the table names. here: the same runs at the times this "
    "store measured (reference trainings and method runs of the table's dataset and model; – where "
    "it has none); `unlearnkit reproduce NAME --dry-run` says what the store already holds."
)


def print_list(store: Store, format: str = "table") -> None:
    """Every shipped table: its benchmark, recipe, what it cost its authors and what it would cost
    here, as a table or (``--format``) markdown, CSV or JSON of the same fields."""
    rows = list_rows(store)
    if format == "json":
        con.out.print_json(json.dumps(rows))
        return
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        con.out.print(buf.getvalue(), highlight=False, soft_wrap=True, end="")
        return
    cells = [
        [r["table"], r["benchmark"], r["recipe"], r["protocol"], str(r["rows"]), cost_text(r), here_text(r)]
        for r in rows
    ]
    heads = ["table", "benchmark", "recipe", "protocol", "rows", "cost", "here"]
    if format == "markdown":
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        con.out.print("\n".join(lines) + "\n\n" + LIST_NOTE, highlight=False, soft_wrap=True)
        return
    table = Table(title="published tables (unlearnkit reproduce NAME)", title_justify="left")
    for column in heads:
        table.add_column(column)
    for c in cells:
        table.add_row(*c)
    con.out.print(table)
    con.out.print(LIST_NOTE, highlight=False, soft_wrap=True)


def list_rows(store: Store) -> list[dict[str, Any]]:
    """One row per shipped table, in numbers: hours its authors took on ``measured_on``, and the hours
    at this store's measured paces (None where a pace is a guess)."""
    from unlearnkit.scale.estimate import Paces
    from unlearnkit.scale.reproduce import shipped_tables

    paces = Paces(store)
    rows = []
    for t in shipped_tables():
        spec = t.spec
        here, measured = measured_hours(t, paces)
        rows.append(
            {
                "table": spec.name,
                "benchmark": f"{spec.dataset} / {spec.model} / {spec.scenario}",
                "recipe": spec.recipe,
                "protocol": spec.protocol,
                "rows": len(spec.rows),
                "cost_hours": t.cost_hours(),
                "measured_on": spec.measured_on,
                "here_hours": here,
                "here_runs_measured": measured,
            }
        )
    return rows


def cost_text(row: dict[str, Any]) -> str:
    return "–" if row["cost_hours"] is None else f"{row['cost_hours']:.2g} h on {row['measured_on']}"


def here_text(row: dict[str, Any]) -> str:
    if row["here_hours"] is None:
        return "–"
    return f"{row['here_hours']:.2g} h ({counted(row['here_runs_measured'], 'run')} measured)"


def measured_cost(t: PublishedTable, paces: Paces) -> str:
    """A table's runs priced at the store's own measured paces: '–' unless every pace is measured."""
    hours, measured = measured_hours(t, paces)
    return here_text({"here_hours": hours, "here_runs_measured": measured})


def measured_hours(t: PublishedTable, paces: Paces) -> tuple[float | None, int]:
    """A table's runs priced at the store's own measured paces, in hours (None unless every pace is
    measured), and how many runs measured them."""
    spec = t.spec
    references = (spec.original_row, spec.retrained_row)  # trained, not run: priced as trainings
    methods = [r.method for label, r in spec.rows.items() if r.method and label not in references]
    trainings = [paces.train(role, spec.dataset, spec.model) for role in ("original", "retrained")]
    runs = [paces.run(m, spec.dataset, spec.model) for m in methods]
    if any(p.guessed for p in trainings + runs):
        return None, 0
    seconds = spec.seeds * (sum(p.seconds for p in trainings) + sum(p.seconds for p in runs))
    return seconds / 3600, sum(p.measured for p in trainings + runs)


@app.command()
def reproduce(
    table_name: Annotated[
        str, typer.Argument(help="A shipped table's name, a table file, or 'list'.", metavar="TABLE")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the cells, the runs and what the store already holds; run nothing.")
    ] = False,
    from_store: Annotated[
        bool,
        typer.Option("--from-store", help="Judge the runs the store holds; run nothing (e.g. after a bundle import)."),
    ] = False,
    clean_column: Annotated[
        bool, typer.Option("--clean-column", help="Also run the cells under --protocol clean and show them beside.")
    ] = False,
    eval_draws: Annotated[
        int,
        typer.Option(
            min=1,
            help="Re-evaluate the same models under N draws of the paper protocol's random crops "
            "(never re-run); each cell's spread over them widens its tolerance.",
        ),
    ] = 1,
    format: Format = "table",
    seeds: RecipeSeeds = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.", callback=home)] = None,
    device: RecipeDevice = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    executor: Executor = "local",
    ray_address: RayAddress = None,
    gpus_per_run: GpusPerRun = None,
    cpus_per_run: CpusPerRun = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run TABLE's benchmark through its recipe (resumable; nothing in the store is recomputed), then
    print per cell the published and the measured number, the tolerance and the verdict.

    Exit status 0 only when every cell that ran holds; 1 when one lies outside or a run failed.
    """
    one_process_only("reproduce")
    from unlearnkit.errors import ConfigError

    check_format(format)
    if table_name == "list":
        from unlearnkit.store.mlflow_store import Store

        print_list(Store(tracking_uri, experiment), format)
        return
    # the executor's flags checked (ray_executor calls check_executor) before anything is loaded, as sweep does
    runner = ray_executor(executor, ray_address, plugins_dir, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    if dry_run and from_store:
        raise ConfigError("--dry-run and --from-store exclude each other: one plans the runs, the other judges them.")
    from unlearnkit.board import published
    from unlearnkit.scale.reproduce import TableJobs, find_table, reproduce

    table = find_table(table_name)
    if clean_column and table.spec.protocol == "clean":  # asked for, and nothing to show: say so, not nothing
        con.warn(
            f"--clean-column: table '{table.name}' is under the clean protocol already; "
            "its measured column is the clean one, so no second column is run."
        )
    host, store = host_and_store(plugins_dir, tracking_uri, experiment)
    if from_store and not store.exists():  # nothing to judge: a report of "not run" cells, and a store made
        raise ConfigError(f"--from-store judges the runs in {store.shown_uri}, and there is no store there yet.")
    jobs = TableJobs(  # what a dry run plans is what the run runs: the clean column's and every draw's sweeps
        table,
        host.registries,
        store,
        clean_column=clean_column,
        eval_draws=eval_draws,
        data_dir=data_dir,
        device=device,
        seeds=seeds,
    )
    if dry_run:
        print_plan(jobs)
        return
    with started(None if from_store else runner, tracking_uri):  # one Ray instance for every sweep of the table
        with torch_builds_checked(), con.RichReporter() as reporter:
            rep, run_id, failed = reproduce(jobs, reporter=reporter, executor=runner, run=not from_store)
        # printed before Ray shuts down (a second or so)
        if format == "json":
            con.out.print(published.to_json(rep), highlight=False, soft_wrap=True, end="")
        elif format == "csv":
            con.out.print(published.to_csv(rep), highlight=False, soft_wrap=True, end="")
        elif format == "markdown":
            con.out.print(published.to_markdown(rep), highlight=False, soft_wrap=True, end="")
        else:
            print_report(rep)
        if format == "table":
            con.out.print(f"Report logged to MLflow run {run_id[:8]}.", highlight=False)
    if failed:
        con.warn(f"{failed} run(s) failed; their cells are 'not run'.")
    elif not rep.holds and not rep.outside():  # every cell "not run": nothing was reproduced, so no success
        con.warn(
            "no cell ran: the store holds no finished run of the table's benchmark"
            + (f" ({store.shown_uri}, experiment '{experiment}')." if from_store else ".")
        )
    if failed or not rep.holds:
        raise typer.Exit(1)


def print_plan(jobs: TableJobs) -> None:
    from unlearnkit.scale.estimate import report_lines

    table = jobs.table
    spec = table.spec
    con.out.print(
        f"Table '{spec.name}': {spec.title}\n  recipe {spec.recipe}, protocol {spec.protocol}; "
        f"{counted(len(table.methods), 'method')} (reference rows included), "
        f"{counted(table.cell_counts[0], 'published cell')}, {table.cell_counts[1]} of them judged "
        "(a runtime is judged as its ratio to the retrain row's).",
        highlight=False,
        soft_wrap=True,
    )
    for what, job in jobs.labelled():
        for cell, plan in job.sweep.plans:
            con.out.print(
                f"  cell {cell.label}{f' ({what})' if what else ''}: {', '.join(e.name for e in plan.methods)} "
                f"× seeds {', '.join(map(str, plan.seeds))}",
                highlight=False,
                soft_wrap=True,
            )
    with torch_builds_checked():
        lines = report_lines(f"Table '{spec.name}'", jobs.estimate())
    for line in lines:
        con.out.print(line, highlight=False, soft_wrap=True)
    for label, row in spec.rows.items():
        if row.not_run:
            con.out.print(f"  not run: {label} ({row.not_run})", highlight=False, soft_wrap=True)


def print_report(rep: Reproduction) -> None:
    spec = rep.table.spec
    table = Table(title=f"{spec.title} (protocol {spec.protocol})", title_justify="left")
    show_draws = any(c.draws is not None for c in rep.cells)
    columns = ("row", "metric", "published", "measured (n)", *(["eval draws"] if show_draws else []), "tolerance")
    for column in (*columns, "verdict"):
        table.add_column(column, justify="left" if column in ("row", "metric", "verdict") else "right")
    if rep.clean:
        table.add_column("clean", justify="right")
    for cell in rep.cells:
        verdict = con.styled(cell.verdict, VERDICT_STYLE[cell.verdict])
        if cell.why:
            verdict.append_text(con.styled(f" ({cell.why})", "dim"))
        values: list[str | Text] = [cell.row, cell.metric, cell.published.text, cell.shown_measured]
        values += [cell.shown_draws] if show_draws else []
        values += [cell.shown_tolerance, verdict]
        if rep.clean:
            values.append(cell.shown_clean(rep))
        table.add_row(*values)
    con.out.print(table)
    style = "green" if rep.holds else "bold red"
    con.out.print(rep.summary, style=style)
    for cell in rep.outside():
        con.out.print(
            f"  outside: {cell.row} / {cell.metric}: measured {cell.shown_measured}, "
            f"published {cell.published.text}, allowed {cell.shown_tolerance}",
            highlight=False,
            soft_wrap=True,
        )
