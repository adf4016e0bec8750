"""``unlearnkit tune RECIPE --method M --trials N``: every method tuned with the same budget (docs/tuning.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.run import torch_builds_checked

if TYPE_CHECKING:
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune import Tuner


def _completed_trials(tuner: Tuner, store: Store, method: str) -> int:
    """Finished trials of ``method``'s study (they are never run again); 0 when it has none yet."""
    if not store.exists() and tuner.storage_arg is None:
        return 0  # no store, no studies beside it: nothing to open (or create)
    import optuna
    from optuna.trial import TrialState

    from unlearnkit.tune.studies import study_storage

    storage, _ = study_storage(store, tuner.storage_arg)
    try:
        study = optuna.load_study(study_name=tuner.study_name(method), storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _estimate(tuner: Tuner, store: Store) -> list[str]:
    """The references at the tuning seeds, then each method's trials (data loaded, nothing trained)."""
    from unlearnkit.scale.estimate import PlanEstimator, estimate_trials, report_lines

    tuner.prepare()
    estimator = PlanEstimator(store)
    parts = []
    for cell in tuner.cells:
        first = tuner.methods[0]
        plan = tuner.plan(cell, first, tuner.fixed[first])
        label = f"{cell.label} references"
        parts.append(estimator.plan(plan, label, tuning_trial="references/0", references_only=True))
    for method in tuner.methods:
        done = _completed_trials(tuner, store, method)
        for cell in tuner.cells:
            plan = tuner.plan(cell, method, tuner.fixed[method])
            label = f"{cell.label} {method} ({tuner.trials} trials)"
            parts.append(estimate_trials(estimator, plan, label, trials=tuner.trials, done=done))
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
        Path | None, typer.Option(help="Write the best options as a recipe, e.g. recipes/tuned-mnist.toml.")
    ] = None,
    study_storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage: a database URL or a journal file (default: beside the MLflow store)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the training epochs of the original.")] = None,
    subset: Annotated[str | None, typer.Option(help="Override the per-class subset.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the datasets' files.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
    plugins_dir: Annotated[Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.")] = None,
    estimate: Annotated[
        bool,
        typer.Option("--estimate", help="Print the runs to do, those in the store and the time they need; then stop."),
    ] = False,
) -> None:
    """Tune METHODs of RECIPE under one budget, on tuning seeds and data the reported table never uses.

    Every method gets the same number of trials and the same per-trial cap; each trial is an ordinary
    run tagged as a tuning trial (hidden from leaderboards unless --tuning). Re-running the same
    command resumes the studies: finished trials are never run again. --write saves the best options
    as a recipe to report with `unlearnkit sweep` on the recipe's own seeds.
    """
    from unlearnkit.discovery.host import get_host
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.tune import TestSplitAccessError, Tuner

    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    store = Store(tracking_uri, experiment)
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
    if estimate:
        with torch_builds_checked():
            lines = _estimate(tuner, store)
        for line in lines:
            con.out.print(line, highlight=False, soft_wrap=True)
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
        f"Epoch cap {tuner.epoch_cap:g} = {tuner.cap_epochs} epochs per run; references at the tuning seeds "
        f"{report.references_s:.1f} s; total {report.wall_s:.1f} s. Studies in {report.storage}.",
        highlight=False,
    )
    if write is not None:
        path = tuner.write_recipe(write, report)
        con.out.print(f"Wrote {path}: report with `unlearnkit sweep {path}`.", highlight=False)
