"""``unlearnkit sweep RECIPE``: run a recipe's whole grid, resumably, and publish its leaderboard."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con


def recipe_scope(recipe_path: Path) -> tuple[set[tuple[str, str, str]], set[str]]:
    """The (dataset, model, scenario) cells and method names a recipe covers (leaderboard filter)."""
    from unlearnkit.recipes import load_recipe
    from unlearnkit.splits import parse_scenario

    recipe = load_recipe(recipe_path)
    cells = {
        (d, m, parse_scenario(str(s)).key) for d in recipe.datasets for m in recipe.models for s in recipe.scenarios
    }
    return cells, set(recipe.methods)


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/cpu-mnist.toml")],
    seeds: Annotated[str | None, typer.Option("--seeds", help="Override the recipe's seeds.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the training epochs.")] = None,
    subset: Annotated[str | None, typer.Option(help="Override the per-class subset.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the datasets' files.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
    plot: Annotated[Path | None, typer.Option(help="Also write the leaderboard figure here (PNG).")] = None,
    plugins_dir: Annotated[Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.")] = None,
) -> None:
    """Run every cell of RECIPE (datasets × models × scenarios × grid) with its methods and seeds.

    Re-running the same command resumes: finished runs are skipped, unfinished ones are redone.
    """
    from unlearnkit import tables
    from unlearnkit.config import parse_seeds, validate
    from unlearnkit.leaderboard import leaderboard as build
    from unlearnkit.plots import plot_boards
    from unlearnkit.plugins import get_host
    from unlearnkit.recipes import expand, load_recipe
    from unlearnkit.runner import Runner
    from unlearnkit.store import Store, tag

    started = time.perf_counter()
    spec = load_recipe(recipe)
    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    overrides = {
        "seeds": parse_seeds(seeds) if seeds else None,
        "epochs": epochs,
        "subset": subset,
        "data_dir": data_dir,
        "device": device,
    }
    cells = expand(spec, overrides)
    plans = [(cell, validate(cell.request, host.registries)) for cell in cells]  # every cell checked first
    store = Store(tracking_uri, experiment)
    store.check()
    total = sum(len(plan.methods) * len(plan.seeds) for _, plan in plans)
    counts = {"finished": 0, "skipped": 0, "failed": 0}
    model_cache: dict = {}
    with con.RichReporter() as reporter:
        task = reporter.progress.add_task(f"sweep {spec.name}", total=total)

        def advance(result) -> None:
            counts[result.status] += 1
            reporter.progress.advance(task)

        for cell, plan in plans:
            reporter.event(f"Cell {cell.label}: {len(plan.methods)} methods × {len(plan.seeds)} seeds")
            Runner(
                plan,
                store,
                reporter,
                variant=cell.variant,
                recipe=spec.name,
                model_cache=model_cache,
                on_result=advance,
            ).run()
    wall = time.perf_counter() - started
    regs = host.registries
    info = {e.name: tables.MetricInfo(e.cls.direction, e.cls.display_scale) for e in regs.metrics.entries()}
    scope_cells, scope_methods = recipe_scope(recipe)
    boards = build(store, recipe_cells=scope_cells, recipe_methods=scope_methods)
    markdown = tables.to_markdown(boards, info)
    with tempfile.TemporaryDirectory() as tmp:
        figure = plot_boards(boards, plot or Path(tmp) / "leaderboard.png")
        run_id = store.start_run(
            f"leaderboard-{spec.name}",
            {tag("kind"): "leaderboard", tag("recipe"): spec.name},
            {"recipe": spec.name, "cells": len(cells), "runs": total, "wall_s": round(wall, 1)},
        )
        store.log_text(run_id, markdown, "leaderboard.md")
        store.log_text(run_id, tables.to_csv(boards, info), "leaderboard.csv")
        store.log_file(run_id, figure)
        store.log_metrics(run_id, {"wall_s": wall, **{f"runs_{k}": float(v) for k, v in counts.items()}})
        store.finish(run_id)
    con.out.print(markdown, markup=False, highlight=False, soft_wrap=True)
    con.out.print(
        f"Sweep '{spec.name}': {total} runs ({counts['finished']} new, {counts['skipped']} already in the store, "
        f"{counts['failed']} failed) in {wall:.1f} s. Leaderboard logged to MLflow run {run_id[:8]}"
        + (f"; figure: {plot}" if plot else "."),
        highlight=False,
    )
    if counts["failed"]:
        raise typer.Exit(1)
