"""``unlearnkit tune RECIPE --method M --trials N``: every method tuned with the same budget (docs/tuning.md)."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import (
    Estimate,
    Experiment,
    PluginsDir,
    RecipeDataDir,
    RecipeDevice,
    RecipeEpochs,
    RecipeSubset,
    TrackingUri,
    home,
    home_text,
    host_and_store,
    one_process_only,
    print_estimate,
    torch_builds_checked,
)
from unlearnkit.errors import counted

if TYPE_CHECKING:
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune import Tuner


def _completed_trials(tuner: Tuner, store: Store, method: str) -> int:
    """Trials of ``method``'s study done for good, complete or failed (neither is run again); 0 when it
    has none yet."""
    if not store.exists() and tuner.storage_arg is None:
        return 0  # no store, no studies beside it: nothing to open (or create)
    import optuna

    from unlearnkit.tune.studies import study_storage

    storage, _ = study_storage(store, tuner.storage_arg)
    try:
        study = optuna.load_study(study_name=tuner.study_name(method), storage=storage)
    except KeyError:
        return 0
    return len(tuner.finished(study.get_trials(deepcopy=False)))  # a failed trial is not run again either


def _estimate(tuner: Tuner, store: Store) -> list[str]:
    """The references at the tuning seeds, then each method's trials (data loaded, nothing trained)."""
    from unlearnkit.scale.estimate import PlanEstimator, estimate_trials, first_indices, report_lines

    tuner.prepare()
    estimator = PlanEstimator(store)
    parts = []
    splits = []  # each cell's first split, loaded once: every method's trial guess reads it
    for cell in tuner.cells:
        first = tuner.methods[0]
        plan = tuner.plan(cell, first, tuner.fixed[first])
        label = f"{cell.label} references"
        parts.append(estimator.plan(plan, label, tuning_trial="references/0", references_only=True))
        splits.append(first_indices(estimator.paces, plan))
    for method in tuner.methods:
        done = _completed_trials(tuner, store, method)
        for cell, idx in zip(tuner.cells, splits, strict=True):
            plan = tuner.plan(cell, method, tuner.fixed[method])
            label = f"{cell.label} {method} ({counted(tuner.trials, 'trial')})"
            parts.append(estimate_trials(estimator, plan, label, trials=tuner.trials, done=done, idx=idx))
    return report_lines(f"Tuning '{tuner.spec.name}'", parts)


@app.command()
def tune(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/tune-mnist.toml", metavar="RECIPE")],
    method: Annotated[
        list[str], typer.Option("--method", "-m", help="Method(s) to tune: a name or a comma list; repeatable.")
    ] = [],
    trials: Annotated[int, typer.Option(help="Trials per method: the same for every method.")] = 20,
    tune_seeds: Annotated[
        str, typer.Option("--tune-seeds", help="Seeds the trials run on; must be disjoint from the recipe's seeds.")
    ] = "1,2",
    objective: Annotated[
        str,
        typer.Option(help="avg_gap (the Average Gap, unseen data in the test split's place) or gap:METRIC,..."),
    ] = "avg_gap",
    epoch_cap: Annotated[
        float,
        typer.Option(help="Per-trial cap: this fraction of the original's training epochs, as each method's epochs."),
    ] = 0.1,
    trial_timeout: Annotated[
        float | None,
        typer.Option(help="Wall-time guard per method run, seconds (default: 2 retrainings, at least 60 s)."),
    ] = None,
    sampler_seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    write: Annotated[
        Path | None,
        typer.Option(help="Write the best options as a recipe, e.g. recipes/tuned-mnist.toml.", callback=home),
    ] = None,
    study_storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: a database URL or a journal file (default: beside the MLflow store).",
            callback=home_text,
        ),
    ] = None,
    epochs: RecipeEpochs = None,
    subset: RecipeSubset = None,
    data_dir: RecipeDataDir = None,
    device: RecipeDevice = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    plugins_dir: PluginsDir = None,
    estimate: Estimate = False,
) -> None:
    """Tune METHODs of RECIPE under one budget, on tuning seeds and data the reported table never uses.

    Every method gets the same number of trials and the same per-trial cap; each trial is an ordinary
    run tagged as a tuning trial (hidden from leaderboards unless --tuning). Re-running the same
    command resumes the studies: finished trials are never run again. --write saves the best options
    as a recipe to report with `unlearnkit sweep` on the recipe's own seeds.
    """
    one_process_only("tune")
    from unlearnkit.tune import TestSplitAccessError, Tuner

    host, store = host_and_store(plugins_dir, tracking_uri, experiment)
    tuner = Tuner(
        recipe,
        host.registries,
        store,
        methods=method,
        trials=trials,
        tune_seeds=tune_seeds,
        objective=objective,
        epoch_cap=epoch_cap,
        trial_timeout=trial_timeout,
        study_storage=study_storage,
        sampler_seed=sampler_seed,
        epochs=epochs,
        subset=subset,
        data_dir=data_dir,
        device=device,
    )
    if write is not None:  # before any trial: a folder given as the file used to fail after the whole tuning
        from unlearnkit.tune.recipe_toml import check_recipe_output

        check_recipe_output(write, recipe)
    if estimate:
        print_estimate(lambda: _estimate(tuner, store))
        return
    try:
        with torch_builds_checked(), con.RichReporter() as reporter:
            report = tuner.run(reporter)
    except TestSplitAccessError as err:
        con.error(str(err))
        raise typer.Exit(2) from None
    table = Table(title=f"{report.recipe}: {report.objective} on tuning seeds {','.join(map(str, report.tune_seeds))}")
    for column in ("method", "trials", "defaults", "best", "trial", "best options", "tuning s", "unlearning s"):
        table.add_column(column, justify="left" if column in ("method", "best options") else "right")
    for m in report.methods:
        table.add_row(
            m.method,
            f"{m.complete}/{m.trials}" + (f" ({m.failed} failed)" if m.failed else ""),
            f"{m.default_value:.4f}" if math.isfinite(m.default_value) else "—",
            f"{m.best_value:.4f}" if math.isfinite(m.best_value) else "—",
            str(m.best_trial) if m.best_trial is not None else "—",
            json.dumps(m.best_params, default=str) if m.best_trial is not None else "—",
            f"{m.wall_s:.1f}",
            f"{m.method_s:.1f}",
        )
    con.out.print(table)
    con.out.print(
        f"Epoch cap {tuner.epoch_cap:g} = {counted(tuner.cap_epochs, 'epoch')} per run; references at the tuning seeds "
        f"{report.references_s:.1f} s; total {report.wall_s:.1f} s. Studies in {report.storage}.",
        highlight=False,
    )
    if write is not None:
        path = tuner.write_recipe(write, report)
        # quoted as a shell needs it: the line is copied, and a path with a space split into two words
        con.out.print(f"Wrote {path}: report with `unlearnkit sweep {shlex.quote(str(path))}`.", highlight=False)
