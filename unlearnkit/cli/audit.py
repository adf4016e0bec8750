"""``unlearnkit audit RECIPE``: a per-example privacy audit (U-LiRA) of a recipe's methods on shadow models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.run import torch_builds_checked

COLUMNS = (
    ("ulira_auc", "U-LiRA AUC"),
    ("ulira_tpr_at_1fpr", "TPR@1%FPR"),
    ("ulira_tpr_at_01fpr", "TPR@0.1%FPR"),
    ("acc_in", "acc forgotten"),
    ("acc_out", "acc never seen"),
    ("n_members", "members"),
    ("n_nonmembers", "non-members"),
)


@app.command()
def audit(
    recipe: Annotated[Path, typer.Argument(help="Recipe file, e.g. recipes/audit-mnist.toml", metavar="RECIPE")],
    methods: Annotated[
        str | None, typer.Option("--methods", help="Methods to audit, comma-separated (default: the recipe's).")
    ] = None,
    shadows: Annotated[
        int | None, typer.Option("--shadows", help="Shadow models K (>= 4; 64+ for a publishable audit).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="online (IN and OUT Gaussians) or offline (OUT only).")] = None,
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
    epochs: Annotated[int | None, typer.Option(help="Override the training epochs.")] = None,
    subset: Annotated[str | None, typer.Option(help="Override the per-class subset.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the datasets' files.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print what the audit would compute, then stop.")
    ] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
    plugins_dir: Annotated[Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.")] = None,
) -> None:
    """Audit RECIPE's methods with U-LiRA: K shadow models trained on halves of the data, each method run on
    each, a per-example likelihood-ratio test of forgotten vs never-seen examples (docs/audit.md).

    Re-running resumes: shadow models, method runs and scores already in the store are reused.
    """
    import time

    from unlearnkit.audit.job import Audit
    from unlearnkit.board.tables import AUDIT_NOTE
    from unlearnkit.discovery.host import get_host
    from unlearnkit.store.mlflow_store import Store

    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    store = Store(tracking_uri, experiment)
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
    )
    with torch_builds_checked(), reporter:
        for what in job.ignored:
            reporter.warn(f"The audit ignores the recipe's {what}.")
        job.check()
        estimates = job.estimate()
        for est in estimates:
            reporter.console.print(est.text(), highlight=False)
        if estimate:  # and the time it takes, at the audit's own pace or else the store's ordinary runs'
            from unlearnkit.scale.estimate import Paces, estimate_audit, report_lines

            paces = Paces(store)
            parts = [
                estimate_audit(
                    paces,
                    runner.plan,
                    est.label,
                    models=(est.models_total, est.models_to_train, est.model_seconds),
                    runs=(est.method_runs_total, est.method_runs_to_do, est.run_seconds),
                )
                for est, runner in zip(estimates, job.runners, strict=True)
            ]
            for line in report_lines(f"Audit '{job.name}'", parts):
                reporter.console.print(line, highlight=False, soft_wrap=True)
            return
        from unlearnkit.engine.stages import pinned_threads

        threads = job.plans[0][1].request.threads  # a recipe's `threads`: recorded, not yet in audit identities
        with pinned_threads(threads):
            reports = job.run()
    wall = time.perf_counter() - started
    for report in reports:
        table = Table(
            title=f"U-LiRA audit: {report.label} ({report.settings.describe()}; {report.pool} audited examples)",
            title_justify="left",
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
                elif name.startswith("n_"):
                    text = str(int(value))
                else:
                    text = f"{value:.3f}" + ("‡" if report.underpowered and name.startswith("ulira_") else "")
                cells.append(text)
            status = {"finished": "[green]done[/]", "skipped": "[cyan]in store[/]"}.get(
                row.status, f"[red]{row.status}[/]"
            )
            table.add_row(row.method, status, *cells)
        con.out.print(table)
        for name, why in sorted(notes.items()):
            con.out.print(f"* {name}: {why}.", highlight=False)
        if report.underpowered:
            con.out.print(AUDIT_NOTE, highlight=False)
            message = report.power.message(report.settings.shadows) if report.power else AUDIT_NOTE
            con.warn(f"{report.label}: {message}")
        elif report.power is not None:
            con.out.print(report.power.message(report.settings.shadows), highlight=False)
        con.out.print(
            f"{report.models_trained} shadow models trained, {report.method_runs} method runs "
            f"in {report.wall_s:.1f} s.",
            highlight=False,
        )
    con.out.print(
        f"Audit '{job.name}' done in {wall:.1f} s. Store: {store.uri} (runs tagged run_type=audit; "
        "`unlearnkit leaderboard` shows the U-LiRA columns).",
        highlight=False,
    )
    failed = [(r, row) for r in reports for row in r.failed]
    for report, row in failed:
        con.warn(f"{row.method} failed in {report.label}: {row.failure}")
    if failed:
        raise typer.Exit(1)
