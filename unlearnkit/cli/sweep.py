"""``unlearnkit sweep RECIPE``: run a recipe's whole grid, resumably, and publish its leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import (
    CpusPerRun,
    Estimate,
    Executor,
    Experiment,
    GpusPerRun,
    PluginsDir,
    RayAddress,
    RecipeDataDir,
    RecipeDevice,
    RecipeEpochs,
    RecipeSeeds,
    RecipeSubset,
    TrackingUri,
    home,
    host_and_store,
    one_process_only,
    print_estimate,
    ray_executor,
    started,
    torch_builds_checked,
)
from unlearnkit.errors import counted

MAX_CELLS = 10_000  # the recipe bound's default (unlearnkit.scale.sweep_recipes.MAX_CELLS; kept light for --help)
SHOWN_CELLS = 20  # --dry-run lists this many cells, then how many more


def print_grid(recipe: Path, max_cells: int) -> None:
    """``--dry-run``: the cell count (refused past ``max_cells``, as a run would be) and the first cells."""
    from unlearnkit.scale.sweep_recipes import check_size, expand, load_recipe

    spec = load_recipe(recipe)
    count = check_size(spec, max_cells)
    cells = expand(spec, max_cells=max_cells)
    con.out.print(f"Sweep '{spec.name}': {counted(count, 'cell')}.", highlight=False, soft_wrap=True)
    for cell in cells[:SHOWN_CELLS]:
        con.out.print(f"  {cell.label}", highlight=False, soft_wrap=True)
    if count > SHOWN_CELLS:
        con.out.print(f"  ... {count - SHOWN_CELLS} more", highlight=False, soft_wrap=True)


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/cpu-mnist.toml", metavar="RECIPE")],
    seeds: RecipeSeeds = None,
    epochs: RecipeEpochs = None,
    subset: RecipeSubset = None,
    data_dir: RecipeDataDir = None,
    device: RecipeDevice = None,
    protocol: Annotated[str | None, typer.Option(help="Override the evaluation protocol: clean or paper.")] = None,
    eval_draw: Annotated[
        int | None, typer.Option(help="Another draw of the paper protocol's random crops (models reused).")
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    plot: Annotated[
        Path | None,
        typer.Option(help="Also write the leaderboard figure to FILE (.png, .pdf, .svg, ...).", callback=home),
    ] = None,
    plugins_dir: PluginsDir = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    gpus_per_run: GpusPerRun = None,
    cpus_per_run: CpusPerRun = None,
    estimate: Estimate = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the grid's cell count and its cells; compute nothing.")
    ] = False,
    max_cells: Annotated[
        int, typer.Option(min=1, help="Refuse a recipe whose grid has more cells than this.")
    ] = MAX_CELLS,
) -> None:
    """Run every cell of RECIPE (datasets × models × scenarios × grid) with its methods and seeds.

    Re-running the same command resumes: finished runs are skipped, unfinished ones are redone.
    With --executor ray the reference models train first, then every method run is a Ray task.
    """
    one_process_only("sweep")
    from unlearnkit.board import tables
    from unlearnkit.scale.sweep import Sweep

    if dry_run:  # the grid alone: no plugins, no store, nothing validated or computed
        print_grid(recipe, max_cells)
        return
    if plot is not None:  # a bad path is one line now, not after the whole sweep has run
        from unlearnkit.board.plots import figure_path

        figure_path(plot)
    runner = ray_executor(executor, ray_address, plugins_dir, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    host, store = host_and_store(plugins_dir, tracking_uri, experiment)
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
        eval_draw=eval_draw,
        max_cells=max_cells,
    )
    if estimate:  # counted by the runs' own identities, priced by the store's measured times: nothing computed
        from unlearnkit.scale.estimate import estimate_sweep, report_lines

        print_estimate(lambda: report_lines(f"Sweep '{job.name}'", estimate_sweep(job)))
        return
    # Ray starts once the recipe is valid (bad input never waits for it), while the store opens
    with started(runner, tracking_uri):
        with torch_builds_checked(), con.RichReporter() as reporter:
            report = job.run(reporter, figure=plot, executor=runner)
        # printed before Ray shuts down (a second or so): the board is what the user waits for
        con.out.print(tables.to_markdown(report.boards, job.info()), highlight=False, soft_wrap=True)
        counts = report.counts
        con.out.print(
            f"Sweep '{report.name}': {counted(report.total, 'run')} ({counts['finished']} new, {counts['skipped']} already in "
            f"the store, {counts['failed']} failed) in {report.wall_s:.1f} s. Leaderboard logged to MLflow run "
            f"{report.leaderboard_run[:8]}" + (f"; figure: {plot}" if plot else "."),
            highlight=False,
        )
    if report.failed:
        raise typer.Exit(1)
