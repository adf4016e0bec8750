"""``unlearnkit store check`` / ``unlearnkit store repair``: is the store sound, and make it so."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import Experiment, TrackingUri
from unlearnkit.errors import ConfigError

store_app = typer.Typer(
    name="store",
    help="Check the result store (database, checkpoints, orphan runs) and repair it.",
    no_args_is_help=True,
)
app.add_typer(store_app)


@store_app.command("check")
def check(tracking_uri: TrackingUri = None, experiment: Experiment = "unlearnkit") -> None:
    """Read only: the database's integrity, every checkpoint against its sha256, orphan RUNNING runs (exit 1: repair).

    SQLite's full integrity check, every finished run's checkpoints re-hashed against the sha256 recorded
    when they were written, and the RUNNING runs whose claim is dead (or cannot be judged yet)."""
    from unlearnkit.store import health
    from unlearnkit.store.mlflow_store import Store

    store = Store(tracking_uri, experiment)
    if not store.exists():
        con.out.print(f"No store at {store.shown_uri} yet: the first command creates it.", highlight=False)
        return
    report = health.check_store(store)
    if report.file:
        con.error(report.file)
        raise typer.Exit(1)
    if store.local_db is not None:
        con.out.print(f"Database: sound ({store.shown_uri}).", highlight=False)
    else:  # a server's database is the server's to check: only its answers are checked from here
        con.out.print(f"Server: answers ({store.shown_uri}; its database is checked on the server).", highlight=False)
    if report.missing:  # no run was read and no experiment made: a misspelt name is bad input
        con.error(report.missing)
        raise typer.Exit(2)
    con.out.print(f"Checkpoints: {report.checked - len(report.bad)} of {report.checked} match their sha256.")
    for bad in report.bad:
        con.out.print(f"  damaged: run {bad.run.run_id} ({health.describe(bad.run)}): {bad.reason}", highlight=False)
    for orphan in report.orphans:
        state = "dead claim" if orphan.dead else "held (cannot tell yet)"
        con.out.print(
            f"  RUNNING, {state}: run {orphan.run.run_id} ({health.describe(orphan.run)}): {orphan.reason}",
            highlight=False,
        )
    if not report.healthy:
        con.out.print(f"Run `unlearnkit store repair --tracking-uri {store.shown_uri}` to fix these.", highlight=False)
        raise typer.Exit(1)
    con.out.print("Nothing to repair.")


@store_app.command("repair")
def repair(
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    set_aside: Annotated[
        bool,
        typer.Option(
            "--set-aside",
            help="Move a damaged database file aside (to NAME.damaged-<time>) so the next command starts an "
            "empty store; its results are lost unless you restore a backup.",
        ),
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            help="Seconds to watch RUNNING runs held on other hosts for a heartbeat (default: one lease, 90 s)."
        ),
    ] = None,
) -> None:
    """Fix what `store check` finds, one line per action.

    Finishes an interrupted schema upgrade (on a copy), fails RUNNING runs whose claim is dead, and fails
    finished runs whose checkpoint no longer matches its sha256 (so they are redone, never reused)."""
    from unlearnkit.store import health, sqlite_file
    from unlearnkit.store.mlflow_store import Store

    if wait is not None and not (math.isfinite(wait) and wait >= 0):  # nan, -1: no watch, silently; inf: no end
        raise ConfigError(f"Bad --wait {wait}: expected a finite number of seconds, 0 or more.")
    store = Store(tracking_uri, experiment)
    db = store.local_db
    if set_aside:
        if db is None or not db.exists():
            con.out.print(f"No local database at {store.shown_uri} to set aside.", highlight=False)
            return
        problem = sqlite_file.file_problem(db, full=True)
        if not problem:
            con.error(f"The store {db} is sound; --set-aside only moves a damaged database.")
            raise typer.Exit(2)
        target = sqlite_file.set_aside(db)
        con.out.print(f"Moved the damaged {db} ({problem}) to {target}; the next command starts an empty store.")
        return
    if not store.exists():
        con.out.print(f"No store at {store.shown_uri} yet: nothing to repair.", highlight=False)
        return
    reporter = con.RichReporter()
    with reporter:
        actions = health.repair_store(store, watch_s=wait, say=reporter.event)
    for line in actions:
        con.out.print(line, highlight=False)
    if not actions:
        con.out.print(f"Nothing to repair in {store.shown_uri}.", highlight=False)
