"""Whether a store can be trusted, and the repairs that are safe to make.

A local SQLite store is checked each time it is opened, before MLflow touches it (:func:`preflight`):
a file that is empty, is not SQLite, is shorter than its own header says, or fails SQLite's quick
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

import functools
import os
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.errors import StoreError
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import (
    RunRecord,
    Store,
    place_empty_schema,
    schema_key,
    schema_template_dir,
    write_atomically,
)

SQLITE_HEADER = b"SQLite format 3\x00"
TEMP_TABLE = "_alembic_tmp_"
CHECKPOINTS = ("checkpoint", "model", "logits")  # artifact names saved with a NAME_sha256 tag


class DamagedStore(StoreError):
    """The store's database file cannot be trusted: nothing was read from it or written to it."""


def uri_of(db: Path) -> str:
    return f"sqlite:///{db}"


def damaged(db: Path, problem: str) -> DamagedStore:
    return DamagedStore(
        f"The store {db} is damaged ({problem}); nothing was read or written. See `unlearnkit store check "
        f"--tracking-uri {uri_of(db)}`; restore a backup, or set it aside with `unlearnkit store repair "
        f"--set-aside --tracking-uri {uri_of(db)}` to start an empty store."
    )


# ------------------------------------------------------------------------------------ the file
def file_problem(db: Path, *, full: bool = False) -> str:
    """What is wrong with an existing database file ("" when nothing): its size, header and length,
    then SQLite's quick check (``full``: the complete ``PRAGMA integrity_check``). The header is read
    while holding a read lock, so a writer's commit in progress is never mistaken for damage."""
    if db.stat().st_size == 0:
        return "the file is empty: 0 bytes"
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30, isolation_level=None)) as con:
            con.execute("BEGIN")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read lock: no commit meanwhile
            problem = header_problem(db)
            if problem:
                return problem
            rows = con.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
            con.execute("ROLLBACK")
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return ""  # busy, not damaged: MLflow waits for it as for any write
        return header_problem(db) or f"SQLite cannot read it: {err}"
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    return "" if verdict == "ok" else f"it fails SQLite's integrity check: {verdict[:300]}"


def header_problem(db: Path) -> str:
    """The file's first 100 bytes against SQLite's file format: the magic string, the page size, and
    the length the header records ("" when they agree)."""
    size = db.stat().st_size
    with open(db, "rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        return "it is not an SQLite database: its header is garbled"
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages, changes, valid_for = (int.from_bytes(header[i : i + 4], "big") for i in (28, 24, 92))
    if page < 512 or page & (page - 1):
        return f"its header records an impossible page size ({page})"
    wal = db.with_name(db.name + "-wal")
    if not wal.exists() and pages and changes == valid_for and size < pages * page:
        return f"it is truncated: {size} bytes of the {pages * page} its header records"
    return ""


@dataclass(frozen=True)
class Schema:
    """What a database file says about its MLflow schema."""

    tables: frozenset[str]
    revision: str | None
    runs: int

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith(TEMP_TABLE))


def read_schema(db: Path) -> Schema:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        tables = frozenset(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        revision = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return Schema(tables, revision, runs)


@functools.cache
def head_revision() -> str:
    """The schema revision this MLflow writes: read from the migrated template when there is one
    (a table read), else from MLflow's migration scripts (a tenth of a second)."""
    try:
        template = schema_template_dir() / f"{schema_key()}.db"
        if template.is_file():
            revision = read_schema(template).revision
            if revision:
                return revision
    except (OSError, RuntimeError, sqlite3.Error):
        pass
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def schema_problem(schema: Schema, head: str) -> str:
    """Why MLflow could not open this schema as it is ("" when it can)."""
    if schema.leftovers:
        return (
            f"it was left half-migrated by an interrupted schema upgrade (leftover table "
            f"{', '.join(schema.leftovers)} at revision {schema.revision or 'none'})"
        )
    if schema.tables and schema.revision != head and "experiments" in schema.tables:
        return f"its schema is at revision {schema.revision or 'none'}, and this MLflow writes {head}"
    return ""


def forget_connections(db: Path) -> None:
    """Close this process's pooled MLflow connections to ``db`` after its file was replaced: they
    would go on reading the old file."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:
        return
    engine = getattr(SqlAlchemyStore, "_engine_map", {}).get(uri_of(db))
    if engine is not None:
        engine.dispose()


@contextmanager
def init_lock(db: Path) -> Iterator[None]:
    """The lock :class:`Store` takes while it makes a schema: no process opens the file meanwhile."""
    from filelock import FileLock

    with FileLock(str(db.with_suffix(".init.lock"))):
        yield


def preflight(db: Path) -> str:
    """Check an existing local store before MLflow opens it. Raises DamagedStore, or StoreError for a
    half-migrated store that holds runs; rebuilds one that holds none. Returns what it did ("": nothing)."""
    problem = file_problem(db)
    if problem:
        raise damaged(db, problem)
    schema = read_schema(db)
    if not (schema.leftovers or (schema.revision and "experiments" in schema.tables)):
        return ""  # nothing MLflow could trip on (a new file MLflow itself is making, or a sound one)
    problem = schema_problem(schema, head_revision())
    if not problem:
        return ""
    if schema.runs == 0:  # nothing to lose: start it again from the migrated template
        if place_empty_schema(db):  # replaces the file in one step
            forget_connections(db)
            return f"Rebuilt the empty store {db}: {problem}."
    raise StoreError(
        f"The store {db} cannot be opened: {problem}. Back it up, then run "
        f"`unlearnkit store repair --tracking-uri {uri_of(db)}`."
    )


def finish_migration(db: Path) -> list[str]:
    """Drop an interrupted upgrade's leftover tables and migrate, on a copy that replaces ``db`` only
    once it checks out: a repair killed midway leaves ``db`` as it was. Refuses when a leftover is
    the only copy of its table (the upgrade had dropped the original)."""
    import sqlalchemy
    from mlflow.store.db.utils import _upgrade_db

    schema = read_schema(db)
    missing = [t for t in schema.leftovers if t[len(TEMP_TABLE) :] not in schema.tables]
    if missing:
        raise StoreError(
            f"The store {db} cannot be repaired in place: {', '.join(missing)} holds the only copy of its table. "
            "Restore a backup."
        )
    done: list[str] = []

    def repair(temp: Path) -> None:
        shutil.copyfile(db, temp)
        with closing(sqlite3.connect(temp, isolation_level=None)) as con:
            con.execute("BEGIN IMMEDIATE")
            for table in schema.leftovers:
                con.execute(f'DROP TABLE "{table}"')
                done.append(f"dropped the leftover table {table}")
            con.execute("COMMIT")
        engine = sqlalchemy.create_engine(uri_of(temp))
        try:
            _upgrade_db(engine)
        except Exception as err:  # noqa: BLE001 - any failure leaves the original untouched
            raise StoreError(f"Migrating a copy of {db} failed ({err}); {db} is unchanged. Restore a backup.") from None
        finally:
            engine.dispose()
        after = read_schema(temp)
        if after.revision != head_revision() or file_problem(temp, full=True):
            raise StoreError(f"The migrated copy of {db} does not check out; {db} is unchanged. Restore a backup.")
        done.append(f"migrated the schema from revision {schema.revision or 'none'} to {after.revision}")

    with init_lock(db):
        write_atomically(db, repair)
    forget_connections(db)
    return done


def set_aside(db: Path) -> Path:
    """Move a damaged database (and its journal files) out of the way; the next command starts an
    empty store. Returns where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    with init_lock(db):
        for suffix in ("", "-journal", "-wal", "-shm"):
            part = db.with_name(db.name + suffix)
            if part.exists():
                os.replace(part, target.with_name(target.name + suffix))
    forget_connections(db)
    return target


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
    checked: int = 0  # checkpoints re-hashed
    bad: list[BadCheckpoint] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.file and not self.bad and not any(o.dead for o in self.orphans)


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


def check_store(store: Store) -> Report:
    """The file, then every finished run's checkpoints and every RUNNING run's claim (read only)."""
    report = Report(store.uri, file=file_report(store))
    if report.file or not store.exists():
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
