"""``unlearnkit audit RECIPE``: a per-example privacy audit (U-LiRA) of a recipe's methods on shadow models."""

from __future__ import annotations

import math
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
    host_and_store,
    one_process_only,
    status_cell,
    torch_builds_checked,
)
from unlearnkit.errors import counted

if TYPE_CHECKING:
    from unlearnkit.audit.ensemble import EnsembleReport

COLUMNS = (
    ("ulira_auc", "U-LiRA AUC [95%]"),
    ("ulira_tpr_at_1fpr", "TPR@1%FPR"),
    ("ulira_tpr_at_01fpr", "TPR@0.1%FPR"),
    ("ulira_direction", "direction Δφ [95%]"),
    ("ulira_over_unlearned", "over-unlearned"),
    ("ulira_retained_auc", "retained AUC [95%]"),
    ("acc_in", "acc forgotten"),
    ("acc_out", "acc never seen"),
    ("n_members", "members"),
    ("n_nonmembers", "non-members"),
)
#: Columns shown with their bootstrap interval, ``value [low, high]``; the direction with its sign.
INTERVALS = ("ulira_auc", "ulira_direction", "ulira_retained_auc")
SIGNED = ("ulira_direction",)
#: Under the offline test's table: what "one-sided (paper)" means for a reader of other LiRA numbers.
OFFLINE_CAPTION = (
    "offline one-sided (paper): flags only forgotten examples more confident than never-seen ones (over-unlearning "
    "scores below 0.5); it ranks differently from the two-sided offline test of the LiRA code (docs/audit.md)."
)


def _bound(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text  # a bound that rounds to zero has no sign to show


def cell(name: str, metrics: dict[str, float]) -> str:
    """A result cell: a count, a number, or a number with its 95 % interval (the interval's digits: 2)."""
    value = metrics.get(name, math.nan)
    if name.startswith("n_"):
        return str(int(value))
    text = f"{value:+.2f}" if name in SIGNED else f"{value:.3f}"
    if name in INTERVALS:
        low, high = metrics.get(f"{name}_low", math.nan), metrics.get(f"{name}_high", math.nan)
        if not (math.isnan(low) or math.isnan(high)):
            text += f" [{_bound(low)}, {_bound(high)}]"
    return text


@app.command()
def audit(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/audit-mnist.toml", metavar="RECIPE")],
    methods: Annotated[
        str | None, typer.Option("--methods", help="Methods to audit, comma-separated (default: the recipe's).")
    ] = None,
    shadows: Annotated[
        int | None, typer.Option("--shadows", help="Shadow models K (>= 4; 64+ for a publishable audit).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="online (IN and OUT Gaussians) or offline (OUT, one-sided).")] = None,
    fixed_variance: Annotated[
        bool | None,
        typer.Option(
            "--fixed-variance/--per-example-variance",
            help="One variance pooled over examples (default below 64 shadows) or one per example.",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Audit seed: splits and shadow halves (default: the recipe's first).")
    ] = None,
    epochs: RecipeEpochs = None,
    subset: RecipeSubset = None,
    data_dir: RecipeDataDir = None,
    device: RecipeDevice = None,
    scores: Annotated[
        str | None,
        typer.Option(
            "--scores",
            help="What to score, comma-separated: ulira and/or ensemble scores by name or family "
            "(`unlearnkit list metrics`; default: the recipe's, else ulira).",
        ),
    ] = None,
    ensemble: Annotated[
        int | None, typer.Option("--ensemble", help="Members N of the ensemble scores (seeds seed .. seed+N-1).")
    ] = None,
    models_per_device: Annotated[
        str | None,
        typer.Option(
            help="Train the shadow models N at a time in this process, or auto (default: the recipe's, else 1); "
            "the same models and identities as one at a time."
        ),
    ] = None,
    estimate: Estimate = False,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    plugins_dir: PluginsDir = None,
) -> None:
    """Audit RECIPE's methods with U-LiRA: K shadow models trained on halves of the data, each method run on
    each, a per-example likelihood-ratio test of forgotten vs never-seen examples (docs/audit.md).

    Re-running resumes: shadow models, method runs and scores already in the store are reused.
    """
    one_process_only("audit")
    import time

    from unlearnkit.audit.job import Audit
    from unlearnkit.board.tables import AUDIT_NOTE

    host, store = host_and_store(plugins_dir, tracking_uri, experiment)
    started = time.perf_counter()
    reporter = con.RichReporter()
    job = Audit(  # every name, option and setting is checked here, before a progress bar or the store
        recipe,
        host.registries,
        store,
        reporter,
        methods=methods,
        shadows=shadows,
        mode=mode,
        fixed_variance=fixed_variance,
        seed=seed,
        epochs=epochs,
        subset=subset,
        data_dir=data_dir,
        device=device,
        scores=scores,
        ensemble=ensemble,
        models_per_device=models_per_device,
    )
    with torch_builds_checked(), reporter:
        for what in job.ignored:
            reporter.warn(what)
        job.check(writes=not estimate)
        estimates = job.estimate()
        for est in estimates:
            reporter.console.print(est.text(), highlight=False)
        ensemble_estimates = job.estimate_ensembles()
        for ens_est in ensemble_estimates:
            reporter.console.print(ens_est.text(), highlight=False)
        if estimate:  # and the time it takes, at the audit's own pace or else the store's ordinary runs'
            from unlearnkit.scale.estimate import Paces, estimate_audit, report_lines

            paces = Paces(store)
            parts = [
                estimate_audit(
                    paces,
                    runner.plan,
                    est.label,
                    models=(est.models_total - est.models_shared, est.models_to_train, est.model_seconds),
                    runs=(est.method_runs_total, est.method_runs_to_do, est.run_seconds),
                    idx=runner.bench.indices(runner.plan.seeds[0]),
                )
                for est, runner in zip(estimates, job.runners, strict=True)
            ]
            parts += [  # an ensemble's models are ordinary reference trainings and method runs
                estimate_audit(
                    paces,
                    ens.plan,
                    f"ensemble {ens_est.label}",
                    models=(ens_est.models_total, ens_est.models_to_train, math.nan),
                    runs=(ens_est.runs_total, ens_est.runs_to_do, math.nan),
                    idx=ens.runner.bench.indices(ens.plan.seeds[0]),
                )
                for ens_est, ens in zip(ensemble_estimates, job.ensembles, strict=True)
            ]
            for line in report_lines(f"Audit '{job.name}'", parts):
                reporter.console.print(line, highlight=False, soft_wrap=True)
            return
        from unlearnkit.loops.threads import pinned_threads

        threads = job.plans[0][1].request.threads  # a recipe's `threads`: recorded, not yet in audit identities
        with pinned_threads(threads):
            reports = job.run()
            ensemble_reports = job.run_ensembles()
    wall = time.perf_counter() - started
    for report in reports:
        table = Table(
            title=f"U-LiRA audit: {report.label} ({report.settings.describe()}; {report.pool} audited examples; "
            "members and non-members count (target shadow, example) pairs)",
            title_justify="left",
            caption=OFFLINE_CAPTION if report.settings.mode == "offline" else None,
            caption_justify="left",
        )
        table.add_column("method", justify="left")
        table.add_column("status", justify="left")
        for _, title in COLUMNS:
            table.add_column(title, justify="right")
        notes: dict[str, str] = {}
        for row in report.rows:
            cells = []
            for name, _ in COLUMNS:
                value = row.metrics.get(name, math.nan)
                if math.isnan(value):
                    text = "—"
                    if name in row.notes:
                        notes[name] = row.notes[name]
                        text = "— *"
                else:
                    text = cell(name, row.metrics) + ("‡" if report.underpowered and name.startswith("ulira_") else "")
                cells.append(text)
            table.add_row(row.method, status_cell(row.status), *cells)
        con.out.print(table)
        for name, why in sorted(notes.items()):
            con.out.print(f"* {name}: {why}.", highlight=False)
        if report.underpowered:
            con.out.print(AUDIT_NOTE, highlight=False)  # the legend of the table's ‡; the warning says by how much
            message = report.power.message(report.settings.shadows) if report.power else "U-LiRA audit under-powered."
            con.warn(f"{report.label}: {message}")
        elif report.power is not None:
            con.out.print(report.power.message(report.settings.shadows), highlight=False)
        con.out.print(
            f"{report.models_trained} shadow models trained, {report.method_runs} method runs "
            f"in {report.wall_s:.1f} s.",
            highlight=False,
        )
    for ens_report in ensemble_reports:
        con.out.print(ensemble_table(ens_report, job.ensembles[0].metrics))
        computed = counted(ens_report.logits_computed, "model's", "models'")
        con.out.print(
            f"{computed} logits computed (the rest read from the store) in {ens_report.wall_s:.1f} s.",
            highlight=False,
        )
    con.out.print(
        f"Audit '{job.name}' done in {wall:.1f} s. Store: {store.shown_uri} (runs tagged run_type=audit; "
        "`unlearnkit leaderboard` shows the U-LiRA columns).",
        highlight=False,
    )
    failed = [(r.label, row.method, row.failure) for r in reports for row in r.failed]
    failed += [(r.label, row.method, row.failure) for r in ensemble_reports for row in r.rows if row.status == "failed"]
    for label, method, failure in failed:
        con.warn(f"{method} failed in {label}: {failure}")
    if failed:
        raise typer.Exit(1)


def ensemble_table(report: EnsembleReport, metrics: list) -> Table:
    """One row per method: each ensemble score with its 95 % bootstrap interval."""
    table = Table(
        title=f"Ensemble scores: {report.label} ({report.settings.members} members, seeds "
        f"{report.settings.seed}..{report.settings.seed + report.settings.members - 1}; 95 % bootstrap intervals)",
        title_justify="left",
    )
    table.add_column("method", justify="left")
    table.add_column("status", justify="left")
    for entry in metrics:
        table.add_column(entry.name, justify="right")
    for row in report.rows:
        cells = []
        for entry in metrics:
            sc = row.scores.get(entry.name)
            if sc is None or math.isnan(sc.value):
                cells.append("—")
                continue
            digits = entry.cls.display_digits
            interval = "" if math.isnan(sc.low) else f" [{sc.low:.{digits}f}, {sc.high:.{digits}f}]"
            cells.append(f"{sc.value:.{digits}f}{interval}")
        table.add_row(row.method, status_cell(row.status), *cells)
    return table
