"""The result store: MLflow, and the only module that imports it.

Default: an embedded SQLite store plus an artifacts folder under ``./unlearnkit-store`` (or
``$UNLEARNKIT_STORE``), which needs no server. ``MLFLOW_TRACKING_URI`` or ``--tracking-uri``
points at a real MLflow server instead. Runs are found again through tags, never by parsing
the store's files; only runs with status FINISHED ever count.

Every call that talks to MLflow is a :func:`store_call`: retried on a remote server's transient
failures (outermost call only, a bounded back-off) *around* a block with signals deferred, so a
write is never torn by Ctrl-C and Ctrl-C is never held up by the back-off. Cross-run
coordination (claims, heartbeats) lives in :mod:`unlearnkit.claims`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from unlearnkit.errors import StoreError, StoreUnavailableError, credentials, redacted, shorten, url_password
from unlearnkit.store import tags as tag_schema
from unlearnkit.store.interrupts import deferred
from unlearnkit.store.sqlite_file import init_lock, place_empty_schema, preflight

TAG = tag_schema.PREFIX
DEFAULT_EXPERIMENT = "unlearnkit"
RETRY_FOR_S = 60.0  # how long a remote server may be down before a store call gives up
REQUEST_TIMEOUT_S = "15"  # one HTTP request; MLflow's own retries are off (ours wrap them)
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # URIs MLflow serves from SQLAlchemy

P = ParamSpec("P")
R = TypeVar("R")


def tag(key: str) -> str:
    """``unlearnkit.<key>`` for a key declared in :mod:`unlearnkit.store.tags` (else KeyError)."""
    return tag_schema.key(key)


def read_back(value: float) -> float:
    """A metric as it was logged: MLflow's SQL store keeps an infinite value as the largest float
    (an ensemble score's "separates perfectly" is +inf), which would read as 1.8e308 in every table."""
    return math.copysign(math.inf, value) if abs(value) == sys.float_info.max else value


@dataclass
class RunRecord:
    """A run read back from the store (plain data, no MLflow objects)."""

    run_id: str
    status: str
    start_time: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_uri: str = ""

    def tag(self, key: str, default: str = "") -> str:
        """The value of the ``unlearnkit.<key>`` tag."""
        return self.tags.get(tag(key), default)

    @classmethod
    def from_mlflow(cls, run: Any) -> RunRecord:
        """The plain-data copy of an ``mlflow.entities.Run``, so nothing outside the store holds MLflow objects."""
        return cls(
            run_id=run.info.run_id,
            status=run.info.status,
            start_time=run.info.start_time,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics={k: read_back(v) for k, v in run.data.metrics.items()},
            artifact_uri=run.info.artifact_uri,
        )


class CorruptCheckpoint(StoreError):
    """A cached checkpoint's bytes do not match the checksum recorded when it was written."""


# ------------------------------------------------------------------------------------ retries
def is_transient(err: BaseException) -> bool:
    """A remote server's temporary failure (restarting, overloaded, connection dropped), judged
    by exception type along the cause chain; everything else is a real error and is not retried."""
    import http.client

    import requests
    from mlflow.exceptions import MlflowException

    transient_types = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        requests.exceptions.ChunkedEncodingError,  # the server went away mid-response
        http.client.IncompleteRead,
        ConnectionError,
        TimeoutError,
    )
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, transient_types):
            return True
        if isinstance(current, MlflowException) and current.get_http_status_code() in (502, 503, 504):
            return True
        current = current.__cause__ or current.__context__
    return False


def unavailable(store: Store, err: BaseException) -> StoreUnavailableError:
    """The one line for a server that stayed down past the retry window (what the last attempt met)."""
    return StoreUnavailableError(
        f"The MLflow tracking server at {store.shown_uri} did not answer for {RETRY_FOR_S:.0f} s "
        f"({shorten(store.hide(reason_of(err)), 120)}). The unfinished run is not counted: start the server "
        "and run the same command again to resume."
    )


def reason_of(err: BaseException) -> str:
    """What a failed request met, as a person reads it: the socket's own words (``[Errno 111] Connection
    refused``) where the cause chain holds them, not MLflow's wrapper around urllib3's repr of a pool."""
    import re

    text = str(err)
    current: BaseException | None = err
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = re.search(r"\[Errno -?\d+\][^'\")\]]*", str(current))
        if found:
            return found.group(0).strip()
        current = current.__cause__ or current.__context__
    return f"{type(err).__name__}: {text}"


_inside_call: contextvars.ContextVar[bool] = contextvars.ContextVar("unlearnkit_store_call", default=False)
_no_retry: contextvars.ContextVar[bool] = contextvars.ContextVar("unlearnkit_store_no_retry", default=False)


def store_call(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for Store methods that talk to MLflow.

    The body runs with signals deferred (never torn by Ctrl-C). Only the outermost store call of
    a stack retries, and only against a remote server, on :func:`is_transient` errors, for about
    a minute; its back-off sleeps run outside the deferred block, so Ctrl-C interrupts them at once.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _inside_call.get():
            with deferred():
                return fn(*args, **kwargs)
        store = args[0]
        remote = isinstance(store, Store) and store.remote and not _no_retry.get()
        deadline = time.monotonic() + RETRY_FOR_S
        delay = 0.5
        while True:
            token = _inside_call.set(True)
            try:
                with deferred():
                    return fn(*args, **kwargs)
            except StoreError:
                raise
            except Exception as err:
                if not remote or not is_transient(err):
                    raise
                if time.monotonic() + delay > deadline:
                    raise unavailable(args[0], err) from err  # type: ignore[arg-type]
            finally:
                _inside_call.reset(token)
            time.sleep(delay)  # outside `deferred`: Ctrl-C lands here immediately
            delay = min(delay * 2, 5.0)

    return wrapper


# --------------------------------------------------------------------------------- locations
def default_store_dir() -> Path:
    return Path(os.environ.get("UNLEARNKIT_STORE", "unlearnkit-store")).resolve()


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Flag > ``MLFLOW_TRACKING_URI`` > the embedded SQLite store; a SQLite path made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return absolute_sqlite(uri)
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///PATH`` with a relative PATH (MLflow's own example, ``sqlite:///mlflow.db``) made
    absolute against the working directory, as MLflow reads it: the store's artifact folder needs an
    absolute path, and a Ray worker or subprocess started elsewhere must open the same file. Every
    other URI, and an in-memory database, is returned as it is."""
    prefix = "sqlite:///"
    if not uri.lower().startswith(prefix):
        return uri
    path, mark, query = uri[len(prefix) :].partition("?")
    if not path or path == ":memory:" or Path(path).is_absolute():
        return uri
    return f"{prefix}{Path(path).resolve()}{mark}{query}"


SHOWN_URI_CHARS = 1024  # a store path printed whole up to this: deep folders, not pasted files


def filter_clause(key: str, value: str) -> str | None:
    """``tags.`unlearnkit.key` = 'value'`` quoted the way MLflow's search grammar allows (it has
    no escapes): single quotes, or double quotes when the value holds a single quote; None when
    it holds both, so the caller filters that key itself."""
    if "'" not in value:
        return f"tags.`{tag(key)}` = '{value}'"
    if '"' not in value:
        return f'tags.`{tag(key)}` = "{value}"'
    return None


TRACKING_URI_FORMS = "sqlite:///PATH, http(s)://HOST:PORT, or a database URL (postgresql://, mysql://, mssql://)"


def uri_problem(uri: str) -> str:
    """Why ``uri`` names no store this toolkit can use ("" when it may): decided from its scheme,
    before MLflow is asked (it answers an unknown scheme with a bare KeyError). Known: a database
    URL, http(s), databricks, a scheme a tracking-store plugin registers, and ``file:`` where MLflow
    is told to open file stores (``MLFLOW_ALLOW_FILE_STORE``)."""
    if uri.lower().startswith("sqlite:") and not uri.lower().startswith("sqlite:///"):
        return f"Bad tracking URI '{redacted(uri)}': a SQLite store is sqlite:///PATH (three slashes, then the path)."
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()  # "databricks" alone is a URI too
    if scheme in (*DATABASE_SCHEMES, "http", "https") or scheme.startswith("databricks") or scheme in plugin_schemes():
        return ""
    if scheme == "file":
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
            return ""
        return (
            f"Unsupported tracking URI '{redacted(uri)}': MLflow keeps file stores in maintenance mode, unopened unless "
            f"MLFLOW_ALLOW_FILE_STORE=true; use {TRACKING_URI_FORMS}."
        )
    return f"Unsupported tracking URI '{redacted(uri)}': use {TRACKING_URI_FORMS}."


@functools.cache
def plugin_schemes() -> frozenset[str]:
    """The URI schemes tracking-store plugins register (MLflow's ``mlflow.tracking_store`` entry points)."""
    from importlib.metadata import entry_points

    return frozenset(ep.name.lower() for ep in entry_points(group="mlflow.tracking_store"))


def authorised_request(url: str, headers: dict[str, str] | None = None) -> Any:
    """A ``urllib`` request for ``url``, its ``user:password@`` sent as HTTP basic auth and not passed
    on to wherever the server redirects: urllib reads them as part of the host name (a DNS error for
    a sound server). The store's health check and a bundle's download both ask through it."""
    import base64
    import urllib.parse
    import urllib.request

    parts = credentials(url)
    if parts is None:
        return urllib.request.Request(url, headers=headers or {})
    head, creds, host, tail = parts
    request = urllib.request.Request(f"{head}://{host}{tail}", headers=headers or {})
    user, _, password = creds.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii"))
    return request


class Store:
    """Thin, typed access to one MLflow experiment."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        if not experiment.strip():
            raise StoreError(f"Bad --experiment {experiment!r}: an experiment needs a name (default: unlearnkit).")
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def remote(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def shown_uri(self) -> str:
        """The tracking URI as a line may print it: a password it carries (``user:password@host``) as
        ``***``, and the rest whole (a store's path is what the line tells; a pasted blob is still cut)."""
        return redacted(self.uri, limit=SHOWN_URI_CHARS)

    def hide(self, text: str) -> str:
        """``text`` (an error MLflow or a library raised, which may quote the URL it called) with the
        URI's password written as ``***``."""
        secret = url_password(self.uri)
        return text.replace(secret, "***") if secret else text

    def health_request(self) -> Any:
        """The request for the server's ``/health``, credentials in the URI sent as HTTP basic auth."""
        import urllib.parse

        parts = urllib.parse.urlsplit(self.uri)
        return authorised_request(
            urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/health", "", ""))
        )

    @property
    def local_db(self) -> Path | None:
        if not self.uri.lower().startswith("sqlite:///"):
            return None
        return Path(self.uri[len("sqlite:///") :].partition("?")[0])  # less the driver's ?options

    @property
    def reads_see_every_write(self) -> bool:
        """Whether a write, once acknowledged, is seen at once by every later read of any process: true of
        one SQLite file (its lock orders every transaction); a server is taken to need a moment, since it
        may answer from a cache or a replica (claims then let a racing claim settle first)."""
        return self.local_db is not None

    # ------------------------------------------------------------------------------- set-up
    def check(self, *, writes: bool = True) -> None:
        """Fail fast, before any compute, if the store cannot be reached or written. A server's
        experiment is looked up, not made: a read-only command (``leaderboard``, an estimate) must
        not add a misspelt ``--experiment`` to a shared server; the first run written makes it.
        ``writes`` False (an estimate): a local store is left as it is (its check would make the
        database and the experiment); a server is still asked whether it answers."""
        if not writes and not self.remote:
            return
        if self.remote:
            import urllib.error
            import urllib.request

            try:
                with urllib.request.urlopen(self.health_request(), timeout=5) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = self.hide(str(getattr(err, "reason", err)))
                raise StoreError(
                    f"Cannot reach the MLflow tracking server at {self.shown_uri} ({shorten(reason, 160)}). Start the "
                    "server, fix --tracking-uri/MLFLOW_TRACKING_URI, or unset it to use the local store "
                    "./unlearnkit-store."
                ) from None
            self._find_experiment()
            return
        if self.local_db is not None:
            folder = self.local_db.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"Cannot create the local store folder {folder}: {err.strerror}.") from None
            if not os.access(folder, os.W_OK):
                raise StoreError(f"The local store folder {folder} is not writable; set UNLEARNKIT_STORE.")
        self.experiment_id  # noqa: B018 - creates the experiment (and the SQLite schema) now

    @store_call
    def _find_experiment(self) -> None:
        """Ask a server for the experiment without making it (its id kept when it is there), so a
        server that refuses this client (credentials, permissions) is one line before any compute."""
        try:
            exp = self.client.get_experiment_by_name(self.experiment_name)
        except StoreError:
            raise
        except Exception as err:
            if is_transient(err):
                raise  # retried by store_call
            raise StoreError(
                f"Cannot open MLflow experiment '{shorten(self.experiment_name)}' at {self.shown_uri}: "
                f"{shorten(self.hide(str(err)), 200)}"
            ) from None
        if exp is not None and self._experiment_id is None:
            self._experiment_id = exp.experiment_id

    def exists(self) -> bool:
        """Whether there is anything to read: a remote store, or a local database file already made.
        A local path that is there but is no file (a folder) is refused, not taken for no store yet."""
        if self.local_db is None:
            return True
        if self.local_db.exists() and not self.local_db.is_file():
            raise StoreError(
                f"The store path {self.local_db} is not a file (a folder?): point --tracking-uri at a .db file."
            )
        return self.local_db.is_file()

    def import_client(self) -> None:
        """Import what :attr:`client` needs, without opening the store: an idle Ray worker does it while
        the driver opens the store and plans its runs (the imports are most of the first call's cost)."""
        from mlflow import MlflowClient  # noqa: F401

        if self.uri.split(":", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES:
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - a database's backend

    @property
    def client(self) -> Any:
        if self._client is None:
            problem = uri_problem(self.uri)
            if problem:
                raise StoreError(problem)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            # MLflow writes "View run ... at: URL" to stdout on every run a server finishes: noise in the
            # CLI's output, and a URL with user:password@ in it would print the password
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            from mlflow import MlflowClient

            for name in ("mlflow", "alembic"):  # mlflow resets its level on import
                logging.getLogger(name).setLevel(logging.WARNING)
            # MLflow logs every database error with its traceback before raising it; the exception
            # itself reaches the caller (and the CLI's one line), so the log record only repeats it
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
            with self._schema_lock():
                if self.local_db is not None and not self.exists():
                    place_empty_schema(self.local_db)  # a copy of the migrated template, not migrations
                elif self.local_db is not None:
                    done = preflight(self.local_db)  # damaged or half-migrated: one line, not a traceback
                    if done:
                        logging.getLogger(__name__).warning(done)
                try:
                    client = MlflowClient(tracking_uri=self.uri)
                    if not self.remote:
                        client.search_experiments(max_results=1)  # opens a database now (under the lock)
                except ImportError as err:  # a database scheme without its driver installed
                    raise StoreError(
                        f"The tracking URI {redacted(self.uri)} needs the Python package '{err.name}', which is not "
                        "installed (pip install it, or use sqlite:///PATH)."
                    ) from None
                except Exception as err:
                    if is_transient(err):
                        raise
                    raise StoreError(
                        f"Cannot open the store {self.shown_uri}: {type(err).__name__}: "
                        f"{shorten(self.hide(str(err)), 200)}"
                    ) from None
                self._client = client
        return self._client

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """Serialise first-time schema creation of a local SQLite store across processes
        (MLflow's migrations race when two sweeps start on a fresh store)."""
        if self.local_db is None:
            yield
            return
        self.local_db.parent.mkdir(parents=True, exist_ok=True)
        with init_lock(self.local_db):  # the lock a repair or a set-aside takes too
            yield

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self.client  # noqa: B018 - created first: its own lock must not nest in the one below
            with self._schema_lock():
                self._experiment_id = self._open_experiment()
        return self._experiment_id

    @store_call
    def _open_experiment(self) -> str:
        try:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is not None:
                return exp.experiment_id
            location = (self.local_db.parent / "artifacts").as_uri() if self.local_db is not None else None
            try:
                return self.client.create_experiment(self.experiment_name, artifact_location=location)
            except Exception:  # noqa: BLE001 - a concurrent process (on a server) created it first
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
                return exp.experiment_id
        except Exception as err:
            if self.remote and is_transient(err):
                raise  # retried by store_call
            raise StoreError(
                f"Cannot open MLflow experiment '{shorten(self.experiment_name)}' at {self.shown_uri}: "
                f"{shorten(self.hide(str(err)), 200)}"
            ) from None

    # --------------------------------------------------------------------------------- runs
    def start_run(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        """A new RUNNING run. Safe to retry: a server may have created the run and then dropped the
        connection before answering, so a retry first looks for the run by a one-off creation tag
        instead of creating a second one (which would look like a rival claim)."""
        nonce = uuid.uuid4().hex
        attempts = 0

        @store_call
        def create(store: Store) -> str:
            nonlocal attempts
            attempts += 1
            existing = store.search({"creation": nonce}, finished_only=False) if attempts > 1 else []
            if existing:
                run_id = existing[0].run_id
            else:
                run_id = store.client.create_run(
                    store.experiment_id, run_name=name, tags={**tags, tag("creation"): nonce}
                ).info.run_id
            store.log_params(run_id, params)
            return run_id

        return create(self)

    @store_call
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    @store_call
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Final values (step 0); NaN values are left out (absent, not zero)."""
        self.log_series(run_id, [(name, value, step) for name, value in sorted(metrics.items())])

    @store_call
    def log_series(self, run_id: str, points: list[tuple[str, float, int]]) -> None:
        """Metric points ``(name, value, step)``: per-epoch trajectories are step metrics in MLflow."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for k, v, s in points if not math.isnan(float(v))]
        for start in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[start : start + 500])

    @store_call
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    @store_call
    def delete_tag(self, run_id: str, key: str) -> None:
        try:
            self.client.delete_tag(run_id, key)
        except Exception as err:  # noqa: BLE001 - an absent tag is fine; a transient error is retried
            if is_transient(err):
                raise

    @store_call
    def finish(self, run_id: str) -> None:
        self.client.set_terminated(run_id, "FINISHED")

    @store_call
    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def fail(self, run_id: str, reason: str) -> None:
        """Record why a run failed; FAILED runs never count in a leaderboard. Best effort: the store
        itself may be what failed, and then the run stays unfinished (claims treat it as abandoned)."""
        token = _no_retry.set(True)  # one attempt: an interrupted process must not wait out an outage
        try:
            self._fail(run_id, reason)
        except Exception as err:  # noqa: BLE001 - nothing more can be done; the failure that led here is what matters
            # a server that is down is said by the caller's own line (the run is not counted); a second
            # line before it would only repeat it. Another failure is worth a warning.
            level = logging.DEBUG if is_transient(err) else logging.WARNING
            logging.getLogger(__name__).log(level, "could not mark run %s failed", run_id)
        finally:
            _no_retry.reset(token)

    @store_call
    def _fail(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, tag("failure"), reason[:5000])
        self.client.set_terminated(run_id, "FAILED")

    @store_call
    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    @store_call
    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    @store_call
    def download(self, run_id: str, artifact: str, dest: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, artifact, str(dest)))

    # ---------------------------------------------------------------------------- searching
    @store_call
    def search(self, filters: dict[str, str] | None = None, *, finished_only: bool = True) -> list[RunRecord]:
        """Runs whose ``unlearnkit.*`` tags equal ``filters``, oldest first."""
        filters = filters or {}
        clauses, by_hand = [], {}
        for key, value in filters.items():
            clause = filter_clause(key, value)
            if clause is None:
                by_hand[key] = value
            else:
                clauses.append(clause)
        if finished_only:
            clauses.append("attributes.status = 'FINISHED'")
        records: list[RunRecord] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=" and ".join(clauses),
                max_results=5000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in page:
                record = RunRecord.from_mlflow(run)
                if all(record.tag(k) == v for k, v in by_hand.items()):
                    records.append(record)
            token = page.token
            if not token:
                return records

    @store_call
    def get(self, run_id: str) -> RunRecord:
        """One run by id (a unique prefix of at least 8 characters works too)."""
        if not self.exists():  # asked of no store: nothing is made to answer it
            raise StoreError(f"No run '{shorten(run_id)}': there is no store at {self.shown_uri} yet.")
        try:
            run = self.client.get_run(run_id)
        except StoreError:
            raise  # the store itself cannot be opened (damaged, half-migrated): not a missing run
        except Exception as err:
            if is_transient(err):
                raise
            matches = (
                [r for r in self.search(finished_only=False) if r.run_id.startswith(run_id)] if len(run_id) >= 8 else []
            )
            if len(matches) == 1:
                return matches[0]
            raise StoreError(
                f"No run '{shorten(run_id)}' in {self.shown_uri} (run ids are shown by `unlearnkit run` and the MLflow UI)."
            ) from None
        return RunRecord.from_mlflow(run)

    def find_finished(self, run_type: str, config_hash: str) -> RunRecord | None:
        """The first finished run of this type and config: later duplicates are ignored."""
        runs = self.search({"run_type": run_type, "config_hash": config_hash})
        return runs[0] if runs else None

    @store_call
    def series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        """A step metric's points ``(step, value)``, in step order."""
        return sorted((m.step, read_back(m.value)) for m in self.client.get_metric_history(run_id, name))

    # -------------------------------------------------------------------------- checkpoints
    @store_call
    def save_checkpoint(self, run_id: str, state: dict[str, Any], name: str = "checkpoint") -> str:
        """Write to a temp file, record its sha256, then upload: a torn write is detectable."""
        import torch

        from unlearnkit.identity import file_sha256  # numpy, which the CLI's start-up need not load

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            torch.save(state, path)
            digest = file_sha256(path)
            self.log_file(run_id, path, name)
        self.client.set_tag(run_id, tag(f"{name}_sha256"), digest)
        return digest

    def load_checkpoint(self, record: RunRecord, name: str = "checkpoint") -> dict[str, Any]:
        """Download and verify against the recorded sha256; raise CorruptCheckpoint on mismatch."""
        import torch

        from unlearnkit.identity import file_sha256

        expected = record.tag(f"{name}_sha256")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.download(record.run_id, f"{name}/model.pt", Path(tmp))
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure to fetch means the checkpoint is unusable
                raise CorruptCheckpoint(f"Checkpoint of run {record.run_id} is missing: {err}") from None
            if not expected or file_sha256(local) != expected:
                raise CorruptCheckpoint(f"Checkpoint of run {record.run_id} fails its sha256 check.")
            try:
                return torch.load(local, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - a pickle, a torn or legacy file: as unusable as a wrong sha256
                detail = (str(err).strip().splitlines() or [""])[0][:160]
                raise CorruptCheckpoint(
                    f"Checkpoint of run {record.run_id} does not load as weights only ({type(err).__name__}: {detail})."
                ) from None
