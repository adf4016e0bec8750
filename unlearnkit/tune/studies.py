"""Where the Optuna studies live, and which process owns a running trial.

The study lives beside the MLflow store: an SQLite file ``optuna.db`` next to the local store's
``mlflow.db`` (not inside it: both Optuna and MLflow keep their schema revision in a table named
``alembic_version``, so Optuna refuses a database MLflow created, and MLflow's migrations would
read Optuna's revision), a journal file for a remote server. Each trial records its owner
(``host:pid``), so a ``tune`` that resumes tells a trial whose process died from one still running.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError, credentials, redacted, shorten
from unlearnkit.store.claims import process_alive
from unlearnkit.store.mlflow_store import Store


def study_storage(store: Store, explicit: str | None = None) -> tuple[Any, str]:
    """The Optuna storage beside ``store`` and where it is: ``explicit`` (a database URL, or a journal
    file path), else ``optuna.db`` next to a local store's ``mlflow.db``, else a journal file next to the cache."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if explicit and "://" in explicit:
        check_database_url(explicit)
        try:  # where it is, as the closing line prints it: a password in the URL as ***
            return optuna.storages.RDBStorage(explicit), redacted(explicit, 1024)
        except ImportError:  # a known dialect whose driver is not installed (mysql:// without mysqlclient)
            raise ConfigError(
                f"--study-storage '{redacted(explicit)}' needs a database driver that is not installed: install "
                "the one for that database, or pass a journal file path instead."
            ) from None
        except SQLAlchemyError as err:  # unreachable: a missing folder, a server that is down, bad credentials
            detail = (str(getattr(err, "orig", None) or err).strip().splitlines() or [""])[0]
            raise ConfigError(f"Cannot open --study-storage '{redacted(explicit)}': {shorten(detail, 200)}.") from None
    if explicit:
        return journal_storage(Path(explicit)), str(explicit)
    if store.local_db is not None:
        path = store.local_db.with_name("optuna.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}), url
    from unlearnkit.engine.prepared import cache_dir

    folder = cache_dir() / "tuning"
    journal = folder / journal_name(without_password(store.uri), store.experiment_name)
    before = folder / journal_name(store.uri, store.experiment_name)  # 0.2 named it with the password in it
    if before != journal and before.is_file() and not journal.exists():
        os.replace(before, journal)  # its studies kept, the password gone from the disk's file names
    return journal_storage(journal), "journal"


def journal_name(uri: str, experiment: str) -> str:
    """The journal file of a server's studies: named after the server and the experiment."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", uri).strip("_")
    return f"{slug}-{experiment}.journal"


def without_password(uri: str) -> str:
    """``http://user@host/...`` of ``http://user:password@host/...``: a URI a file may be named after."""
    parts = credentials(uri)
    if parts is None:
        return uri
    head, creds, host, tail = parts
    return f"{head}://{creds.partition(':')[0]}@{host}{tail}"


def check_database_url(url: str) -> None:
    """A one-line ConfigError for a ``--study-storage`` URL SQLAlchemy cannot parse or has no dialect
    for (``foo://x``), checked without connecting; otherwise its NoSuchModuleError is a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ConfigError(
            f"Bad --study-storage '{redacted(url)}': not a database URL SQLAlchemy knows. Expected a database "
            "URL (e.g. sqlite:///optuna.db, postgresql://user@host/db, mysql://user@host/db) or a journal file path."
        ) from None


def journal_storage(path: Path) -> Any:
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # Optuna >= 4.0
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna 3.6
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(text: str) -> bool:
    """Whether the process that started a trial still runs it: the claims' check (one on another host
    is taken to), with one difference: this process runs no trial while it resumes, so a trial under
    its own PID was left by an earlier one (a reused PID, or a tune in this process that stopped). A trial
    with no owner was stopped between Optuna's ``ask`` and the owner's record (one tune runs a study at a
    time, docs/tuning.md): taken to be alive, it would hold a place in the budget for good, never run."""
    if not text:
        return False
    host, _, pid = text.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) == os.getpid():
        return False
    return process_alive(host, pid)


__all__ = ["check_database_url", "journal_storage", "owner", "owner_alive", "study_storage"]
