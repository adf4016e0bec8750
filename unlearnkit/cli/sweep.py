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
    executor: Annotated[
        str, typer.Option(help="Where runs happen: local (here, one after another) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to use (default: RAY_ADDRESS, else a new local instance; auto: this machine's)."
        ),
    ] = None,
    gpus_per_run: Annotated[
        float | None,
        typer.Option(help="GPUs per Ray task; 0.5 packs two runs on a GPU (default: 1 if the cluster has GPUs)."),
    ] = None,
    cpus_per_run: Annotated[float | None, typer.Option(help="CPUs per Ray task (default 1).")] = None,
) -> None:
    """Run every cell of RECIPE (datasets × models × scenarios × grid) with its methods and seeds.

    Re-running the same command resumes: finished runs are skipped, unfinished ones are redone.
    With --executor ray the reference models train first, then every method run is a Ray task.
    """
    from unlearnkit.board import tables
    from unlearnkit.discovery.host import get_host
    from unlearnkit.errors import ConfigError, UnknownNameError
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.store.mlflow_store import Store

    if executor not in EXECUTORS:
        raise UnknownNameError("executor", executor, EXECUTORS)
    ray_flags = {"--ray-address": ray_address, "--gpus-per-run": gpus_per_run, "--cpus-per-run": cpus_per_run}
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if executor == "local" and given:
        raise ConfigError(f"{', '.join(given)} only apply to --executor ray.")
    runner = None
    if executor == "ray":
        from unlearnkit.scale.ray_executor import RayExecutor

        runner = RayExecutor(
            ray_address,
            gpus_per_run=gpus_per_run,
            cpus_per_run=1.0 if cpus_per_run is None else cpus_per_run,
            plugins_dir=plugins_dir,
        )
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
        report = job.run(reporter, figure=plot, executor=runner)
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
