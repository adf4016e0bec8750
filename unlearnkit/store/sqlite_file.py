"""A local SQLite store as a file: made from a migrated template in one step, checked before MLflow
opens it (empty, garbled, truncated, failing SQLite's own check, half-migrated), repaired or set
aside. It knows files and schemas, not runs, so the store opens it without a circle back (the
runs in a store are checked in :mod:`unlearnkit.store.health`)."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.errors import StoreError

# ------------------------------------------------------------------------ fresh SQLite stores
# MLflow builds a new SQLite store's schema by running its whole migration chain (1-2.5 s on two
# busy cores), in place, so a process killed midway leaves a half-migrated file. Instead a fresh
# store starts as a copy of an empty, migrated database kept per MLflow schema in the cache folder
# (made by the first fresh store); the template and each copy appear by os.replace, never torn.
SCHEMA_TEMPLATES = "mlflow-schema"  # under the cache folder


def schema_template_dir() -> Path:
    """Where the empty databases are kept: the cache folder the decoded datasets use."""
    return Path(os.environ.get("UNLEARNKIT_CACHE_DIR", Path.home() / ".cache" / "unlearnkit")) / SCHEMA_TEMPLATES


def schema_key() -> str:
    """MLflow's and SQLAlchemy's versions and the names of MLflow's migration scripts: an MLflow
    that adds a migration gets a template of its own."""
    import mlflow
    import sqlalchemy

    scripts = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    names = sorted(p.name for p in scripts.glob("*.py"))
    if not names:
        raise FileNotFoundError(f"no migration scripts in {scripts}")
    digest = hashlib.sha256("\n".join([mlflow.__version__, sqlalchemy.__version__, *names]).encode()).hexdigest()
    return f"{mlflow.__version__}-{digest[:16]}"


def write_atomically(target: Path, fill: Callable[[Path], object]) -> None:
    """``fill(temp)`` writes a file beside ``target``, which then replaces ``target`` in one step:
    a process killed midway leaves a stray hidden temp file at most, never a torn ``target``."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask's mode, as SQLite's own file
    try:
        fill(temp)
        with open(temp, "rb+") as fh:
            os.fsync(fh.fileno())  # durable before it is visible, as SQLite's own commits are
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def migrate_empty(path: Path) -> None:
    """MLflow's own schema creation (its tables, then every migration) on an empty SQLite file. The
    Default experiment is left out: MLflow adds it when it first opens the store, with that store's paths."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def sound_template(path: Path) -> bool:
    """Whether ``path`` opens as SQLite and records one schema revision (a cheap guard against a
    damaged cache file; MLflow checks the revision itself when it opens the copy)."""
    import sqlite3

    try:
        con = sqlite3.connect(path)
        try:
            return con.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
        finally:
            con.close()
    except sqlite3.Error:
        return False


def place_empty_schema(db: Path) -> bool:
    """Put an empty, migrated MLflow database at ``db`` (not there yet), in one step. False when
    MLflow's schema helpers are not where this expects them: MLflow then migrates in place, as it would."""
    try:
        key = schema_key()
        from mlflow.store.db.utils import _initialize_tables  # noqa: F401 - the helper migrate_empty calls
    except (ImportError, OSError):
        return False
    try:
        template = schema_template_dir() / f"{key}.db"
        if not (template.is_file() and sound_template(template)):
            template.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(template, migrate_empty)
    except (OSError, RuntimeError):  # no cache folder to write (or no home): migrate this store's own file
        write_atomically(db, migrate_empty)
        return True
    write_atomically(db, lambda temp: shutil.copyfile(template, temp))
    return True


SQLITE_HEADER = b"SQLite format 3\x00"
TEMP_TABLE = "_alembic_tmp_"


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
    while holding a read lock, so a writer's commit in progress is never mistaken for damage.

    A process killed inside a write transaction leaves a hot journal, which a read-only connection
    cannot roll back ("attempt to write a readonly database"). That is no damage: it is rolled back
    here, as any read-write open would, and the file checked again."""
    if db.stat().st_size == 0:
        return "the file is empty: 0 bytes"
    try:
        return read_only_problem(db, full)
    except HotJournal:
        pass
    try:
        roll_back_hot_journal(db)
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return ""  # another process holds the file past the timeout: busy, not damaged
        return f"SQLite cannot read it: a killed writer's journal is left and cannot be rolled back ({err})"
    try:
        return read_only_problem(db, full)
    except HotJournal as err:  # read-only media, say: then it cannot be opened at all
        return f"SQLite cannot read it: a killed writer's journal is left and cannot be rolled back ({err.__cause__})"


class HotJournal(Exception):
    """The read-only check met a journal that a killed writer left (SQLITE_READONLY_ROLLBACK)."""


def roll_back_hot_journal(db: Path) -> None:
    """Let SQLite roll back the journal a killed writer left: a read-write connection does so on its
    first read, and does nothing while the journal's writer is still alive (it holds its lock)."""
    with closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30, isolation_level=None)) as con:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()


def read_only_problem(db: Path, full: bool) -> str:
    """``file_problem`` on a read-only connection; raises HotJournal when it cannot read past one."""
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
        if getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY_ROLLBACK:
            raise HotJournal from err
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


#: Tables only an MLflow schema has: a database with none of them is someone else's.
MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs"})


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
    if not schema.tables:
        return ""  # an SQLite file with nothing in it yet: MLflow makes its schema there
    if not schema.tables & MLFLOW_TABLES:  # MLflow would migrate someone else's database in place
        shown = ", ".join(sorted(schema.tables)[:5]) + (", ..." if len(schema.tables) > 5 else "")
        raise StoreError(
            f"The file {db} is an SQLite database but not an MLflow store (its tables: {shown}); it is left as it "
            "is: point --tracking-uri at a store, or at a new file."
        )
    problem = schema_problem(schema, head_revision())
    if not problem:
        return ""
    if schema.runs == 0:  # nothing to lose: start it again from the migrated template
        if place_empty_schema(db):  # replaces the file in one step
            forget_connections(db)
            return f"Rebuilt the empty store {db}: {problem}."
    if schema.revision is None and not schema.leftovers:  # no upgrade to finish: the revision itself is lost
        raise StoreError(
            f"The store {db} cannot be opened: {problem} (its alembic_version row is gone). Restore a backup."
        )
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
