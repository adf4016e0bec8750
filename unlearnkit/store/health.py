"""Whether a store can be trusted, and the repairs that are safe to make.

A local SQLite store is checked each time it is opened, before MLflow touches it
(:func:`unlearnkit.store.sqlite_file.preflight`): a file that is empty, is not SQLite, is shorter than its own header says, or fails SQLite's quick
check is refused with one line, never read as an empty store (which would show an empty board and
retrain everything). A missing file is a new store; unlearnkit makes new ones by one atomic copy, so
an empty file was not made by it. A schema left half-migrated (an interrupted MLflow upgrade leaves
``_alembic_tmp_*`` tables and an old revision) is rebuilt at once when the store holds no run, and
otherwise refused until ``unlearnkit store repair`` migrates a copy and swaps it in.

:func:`check_store` and :func:`repair_store` are the ``unlearnkit store`` commands' logic: the full
integrity check, every checkpoint re-hashed against the sha256 recorded when it was written, and the
RUNNING runs whose claim is dead. Nothing here prints; the CLI does.
"""

from __future__ import annotations

import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.errors import ConfigError, StoreError, shorten
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import DEFAULT_EXPERIMENT, RunRecord, Store
from unlearnkit.store.sqlite_file import (
    damaged,
    file_problem,
    finish_migration,
    head_revision,
    read_schema,
    schema_problem,
)

CHECKPOINTS = ("checkpoint", "model", "logits")  # artifact names saved with a NAME_sha256 tag


# ------------------------------------------------------------------------------ the runs in it
@dataclass(frozen=True)
class BadCheckpoint:
    run: RunRecord
    name: str
    reason: str


@dataclass(frozen=True)
class Orphan:
    run: RunRecord
    reason: str
    dead: bool  # False: its holder's liveness cannot be told yet (another host; the lease not yet watched)


@dataclass
class Report:
    """What :func:`check_store` found."""

    where: str
    file: str = ""  # a damaged or half-migrated database: nothing else was read
    missing: str = ""  # the experiment named is not in the store: no run was read, none was made
    checked: int = 0  # checkpoints re-hashed
    bad: list[BadCheckpoint] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.file and not self.missing and not self.bad and not any(o.dead for o in self.orphans)


def file_report(store: Store) -> str:
    """A local database's problem ("" for a sound one, a missing one or a remote store), full check."""
    db = store.local_db
    if db is None or not db.exists():
        return ""
    problem = file_problem(db, full=True)
    if problem:
        return str(damaged(db, problem))
    problem = schema_problem(read_schema(db), head_revision())
    return f"The store {db} cannot be opened: {problem}." if problem else ""


def experiment_problem(store: Store) -> str:
    """Nothing ("") when the store holds the experiment a command names, else a line naming it and those
    the store holds. Asked without creating it, as a run search would: a read-only command adds no empty
    experiment to a store, and a misspelt ``--experiment`` is not read as an experiment without runs."""
    try:
        client = store.client
        if client.get_experiment_by_name(store.experiment_name) is not None:
            return ""
        names = sorted(exp.name for exp in client.search_experiments())
    except StoreError:
        raise
    except Exception:  # noqa: BLE001 - a server that does not answer: the next store call says so in its own line
        return ""
    shown = ", ".join(shorten(name) for name in names[:20]) + (
        f" and {len(names) - 20} more" if len(names) > 20 else ""
    )
    return (
        f"No experiment '{shorten(store.experiment_name)}' in {store.shown_uri}; its experiments: "
        f"{shown or '(none)'} (--experiment)."
    )


def artifact_file(store: Store, rec: RunRecord, name: str, tmp: Path) -> Path:
    """The local path of a run's ``NAME/model.pt`` (fetched into ``tmp`` from a remote store)."""
    parsed = urllib.parse.urlparse(rec.artifact_uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path)) / name / "model.pt"
    return store.download(rec.run_id, f"{name}/model.pt", tmp)


def checkpoint_problem(store: Store, rec: RunRecord, name: str) -> str:
    from unlearnkit.identity import file_sha256

    expected = rec.tag(f"{name}_sha256")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = artifact_file(store, rec, name, Path(tmp))
            if not path.is_file():
                return f"{name}/model.pt is missing"
            return "" if file_sha256(path) == expected else f"{name}/model.pt does not match its recorded sha256"
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to read it means it cannot be reused
            return f"{name}/model.pt cannot be read: {err}"


def holds_experiment(store: Store) -> bool:
    """Whether ``store`` has runs to read: it exists and holds its experiment. Asked without making
    either, as a search would: an estimate under a misspelt ``--experiment`` reads nothing, and adds none."""
    return store.exists() and not experiment_problem(store)


def check_store(store: Store) -> Report:
    """The file, then every finished run's checkpoints and every RUNNING run's claim (read only)."""
    report = Report(store.shown_uri, file=file_report(store))
    if report.file or not store.exists():
        return report
    missing = experiment_problem(store)
    if missing:  # nothing to read; the default experiment is only not made yet (its first run makes it)
        report.missing = "" if store.experiment_name == DEFAULT_EXPERIMENT else missing
        return report
    for rec in store.search(finished_only=False):
        if rec.status == "RUNNING":
            verdict = claims.LEASES.judge(rec)
            report.orphans.append(Orphan(rec, verdict.reason, dead=not verdict.alive))
            continue
        if rec.status != "FINISHED":
            continue
        for name in CHECKPOINTS:
            if rec.tag(f"{name}_sha256"):
                report.checked += 1
                problem = checkpoint_problem(store, rec, name)
                if problem:
                    report.bad.append(BadCheckpoint(rec, name, problem))
    return report


def repair_store(
    store: Store,
    *,
    watch_s: float | None = None,
    say: Callable[[str], None] = lambda line: None,
    poll_s: float = 1.0,
) -> list[str]:
    """Make the store trustworthy again; returns one line per action. A half-migrated schema is
    migrated (on a copy). RUNNING runs whose claim is dead are failed; those whose holder cannot be
    judged yet are watched for up to ``watch_s`` (one lease by default; ``say`` tells what it waits
    for) and failed if their heartbeat never changed. Finished runs whose checkpoint does not match
    its sha256 are failed, so no later run reuses them (the next sweep redoes them)."""
    actions: list[str] = []
    db = store.local_db
    if db is not None and db.exists():
        problem = file_problem(db, full=True)
        if problem:
            raise damaged(db, problem)
        if schema_problem(read_schema(db), head_revision()):
            actions += [f"{a} in {db}" for a in finish_migration(db)]
    report = check_store(store)
    if report.missing:  # a misspelt --experiment: refused, unless a migration was needed (then said beside it)
        if not actions:
            raise ConfigError(report.missing)
        return [*actions, report.missing]
    for orphan in report.orphans:
        if orphan.dead:
            store.fail(orphan.run.run_id, f"abandoned: {orphan.reason} (found by store repair)")
            actions.append(f"failed orphan run {orphan.run.run_id} ({describe(orphan.run)}): {orphan.reason}")
    waiting = [o.run for o in report.orphans if not o.dead]
    deadline = claims.now() + (claims.STALE_S + 2 * poll_s if watch_s is None else watch_s)
    if waiting:
        say(
            f"Watching {len(waiting)} RUNNING run(s) held elsewhere until their heartbeat changes "
            f"(at most {max(deadline - claims.now(), 0):.0f} s)"
        )
    while waiting and claims.now() < deadline:
        time.sleep(poll_s)
        still = []
        for rec in waiting:
            fresh = store.get(rec.run_id)
            if fresh.status != "RUNNING":
                continue
            verdict = claims.LEASES.judge(fresh)
            if verdict.alive and verdict.reason.endswith("seen just now"):
                continue  # its beat changed: a live holder
            if not verdict.alive:
                store.fail(rec.run_id, f"abandoned: {verdict.reason} (found by store repair)")
                actions.append(f"failed orphan run {rec.run_id} ({describe(rec)}): {verdict.reason}")
            else:
                still.append(fresh)
        waiting = still
    for rec in waiting:
        actions.append(f"left run {rec.run_id} ({describe(rec)}) RUNNING: its holder may still be working")
    for bad in report.bad:
        store.fail(bad.run.run_id, f"checkpoint corrupt: {bad.reason} (found by store repair)")
        actions.append(f"failed run {bad.run.run_id} ({describe(bad.run)}): {bad.reason}; it will be redone")
    return actions


def describe(rec: RunRecord) -> str:
    what = rec.tag("run_type") or "run"
    detail = rec.tag("method") or rec.tag("role") or rec.tag("sweep")
    return f"{what} {detail}".strip()
