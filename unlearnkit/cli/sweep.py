"""``unlearnkit sweep RECIPE``: run a recipe's whole grid, resumably, and publish its leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con

EXECUTORS = ("local", "ray")


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/cpu-mnist.toml", metavar="RECIPE")],
    seeds: Annotated[str | None, typer.Option("--seeds", help="Override the recipe's seeds.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the training epochs.")] = None,
    subset: Annotated[str | None, typer.Option(help="Override the per-class subset.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the datasets' files.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Override the evaluation protocol: clean or paper.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
    plot: Annotated[Path | None, typer.Option(help="Also write the leaderboard figure here (PNG).")] = None,
    plugins_dir: Annotated[Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.")] = None,
) -> None:
    """Run every cell of RECIPE (datasets × models × scenarios × grid) with its methods and seeds.

    Re-running the same command resumes: finished runs are skipped, unfinished ones are redone.
    """
    from unlearnkit import tables
    from unlearnkit.plugins import get_host
    from unlearnkit.store import Store
    from unlearnkit.sweep import Sweep

    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    store = Store(tracking_uri, experiment)
    job = Sweep(
        recipe,
        host.registries,
        store,
        seeds=seeds,
        epochs=epochs,
        subset=subset,
        data_dir=data_dir,
        device=device,
        protocol=protocol,
    )
    with con.RichReporter() as reporter:
        report = job.run(reporter, figure=plot)
    con.out.print(tables.to_markdown(report.boards, job.info()), markup=False, highlight=False, soft_wrap=True)
    counts = report.counts
    con.out.print(
        f"Sweep '{report.name}': {report.total} runs ({counts['finished']} new, {counts['skipped']} already in the "
        f"store, {counts['failed']} failed) in {report.wall_s:.1f} s. Leaderboard logged to MLflow run "
        f"{report.leaderboard_run[:8]}" + (f"; figure: {plot}" if plot else "."),
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)
