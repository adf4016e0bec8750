"""The result store: MLflow, and the only module that imports it.

Default: an embedded SQLite store plus an artifacts folder under ``./unlearnkit-store`` (or
``$UNLEARNKIT_STORE``), which needs no server. ``MLFLOW_TRACKING_URI`` or ``--tracking-uri``
points at a real MLflow server instead. Runs are found again through tags, never by parsing
the store's files; only runs with status FINISHED ever count.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import StoreError
from unlearnkit.interrupts import atomic, deferred

TAG = "unlearnkit"
DEFAULT_EXPERIMENT = "unlearnkit"
HEARTBEAT_S = 15.0  # a running claim refreshes its heartbeat tag this often
STALE_S = 90.0  # a claim silent for this long (or whose local process is gone) is abandoned


def tag(key: str) -> str:
    return f"{TAG}.{key}"


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

    def t(self, key: str, default: str = "") -> str:
        return self.tags.get(tag(key), default)


class CorruptCheckpoint(StoreError):
    """A cached checkpoint's bytes do not match the checksum recorded when it was written."""


TRANSIENT = ("API request to", "Connection", "connection", "timed out", "Max retries", "503", "502")


def retry_transient(fn):
    """Retry a store call on a remote server's transient failures (a restart, a dropped
    connection) for about a minute; local stores and real errors pass straight through."""
    import functools

    @functools.wraps(fn)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        delay = 1.0
        for attempt in range(8):
            try:
                return fn(self, *args, **kwargs)
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - only transient remote errors are retried
                remote = self.uri.startswith(("http://", "https://"))
                if not remote or attempt == 7 or not any(t in str(err) for t in TRANSIENT):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    return wrapper


def default_store_dir() -> Path:
    return Path(os.environ.get("UNLEARNKIT_STORE", "unlearnkit-store")).resolve()


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Flag > ``MLFLOW_TRACKING_URI`` > the embedded SQLite store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Store:
    """Thin, typed access to one MLflow experiment."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment
        self._client: Any = None
        self._experiment_id: str | None = None

    # ------------------------------------------------------------------------------- set-up
    def check(self) -> None:
        """Fail fast, before any compute, if the store cannot be reached or written."""
        if self.uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=5) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise StoreError(
                    f"Cannot reach the MLflow tracking server at {self.uri} ({reason}). Start the server, fix "
                    "--tracking-uri/MLFLOW_TRACKING_URI, or unset it to use the local store ./unlearnkit-store."
                ) from None
        elif self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///") :])
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"Cannot create the local store folder {db.parent}: {err.strerror}.") from None
            if not os.access(db.parent, os.W_OK):
                raise StoreError(f"The local store folder {db.parent} is not writable; set UNLEARNKIT_STORE.")
        elif "://" not in self.uri and not self.uri.startswith("databricks"):
            raise StoreError(
                f"Unsupported tracking URI '{self.uri}': use sqlite:///PATH, http(s)://HOST:PORT or file:///PATH."
            )
        self.experiment_id  # noqa: B018 - creates the experiment (and the SQLite schema) now

    @property
    def client(self) -> Any:
        if self._client is None:
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            from mlflow import MlflowClient

            for name in ("mlflow", "alembic"):  # mlflow resets its level on import
                logging.getLogger(name).setLevel(logging.WARNING)
            with self._init_lock():
                client = MlflowClient(tracking_uri=self.uri)
                if self.uri.startswith("sqlite:///"):
                    client.search_experiments(max_results=1)  # create/migrate the schema under the lock
                self._client = client
        return self._client

    @contextlib.contextmanager
    def _init_lock(self):
        """Serialise first-time schema creation of a local SQLite store across processes
        (MLflow's migrations race when two sweeps start on a fresh store)."""
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        import fcntl

        lock_path = Path(self.uri[len("sqlite:///") :]).with_suffix(".init.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self.client  # noqa: B018 - created first: its own lock must not nest in the one below
            with self._init_lock(), deferred():
                self._experiment_id = self._open_experiment()
        return self._experiment_id

    def _open_experiment(self) -> str:
        try:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is not None:
                return exp.experiment_id
            location = None
            if self.uri.startswith("sqlite:///"):
                location = (Path(self.uri[len("sqlite:///") :]).parent / "artifacts").as_uri()
            try:
                return self.client.create_experiment(self.experiment_name, artifact_location=location)
            except Exception:  # noqa: BLE001 - a concurrent process (on a server) created it first
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
                return exp.experiment_id
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - MLflow raises many types; the user needs one line
            raise StoreError(f"Cannot open MLflow experiment '{self.experiment_name}' at {self.uri}: {err}") from None

    # --------------------------------------------------------------------------------- runs
    @atomic
    @retry_transient
    def start_run(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        self.log_params(run_id, params)
        return run_id

    @atomic
    @retry_transient
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    @atomic
    @retry_transient
    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items()) if not math.isnan(float(v))]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, metrics=items[start : start + 100])

    @atomic
    @retry_transient
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    @atomic
    @retry_transient
    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @atomic
    def fail(self, run_id: str, reason: str) -> None:
        """Record why a run failed; FAILED runs never count in a leaderboard."""
        try:
            self.client.set_tag(run_id, tag("failure"), reason[:5000])
            self.client.set_terminated(run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store itself may be what failed; the run stays unfinished
            pass

    @atomic
    @retry_transient
    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    @atomic
    @retry_transient
    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    # ---------------------------------------------------------------------------- searching
    @atomic
    @retry_transient
    def search(self, filters: dict[str, str] | None = None, *, finished_only: bool = True) -> list[RunRecord]:
        """Runs whose ``unlearnkit.*`` tags equal ``filters``, oldest first."""
        clauses = [f"tags.`{tag(k)}` = '{v}'" for k, v in (filters or {}).items()]
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
                records.append(
                    RunRecord(
                        run_id=run.info.run_id,
                        status=run.info.status,
                        start_time=run.info.start_time,
                        tags=dict(run.data.tags),
                        params=dict(run.data.params),
                        metrics=dict(run.data.metrics),
                        artifact_uri=run.info.artifact_uri,
                    )
                )
            token = page.token
            if not token:
                return records

    # ------------------------------------------------------------------------------- claims
    def claim(
        self,
        kind: str,
        key: str,
        name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        on_wait: Any = None,
        poll_s: float = 1.0,
    ) -> tuple[str | None, RunRecord | None]:
        """Atomically claim the work (kind, key) among concurrent processes sharing this store.

        Returns ``(run_id, None)`` when this process owns a new RUNNING run and must do the work,
        or ``(None, record)`` when a finished run already exists (possibly finished by another
        process while this one waited). Ownership goes to the earliest live RUNNING claim;
        claims of dead processes (same host: PID gone; any host: heartbeat stale) are failed.
        """
        me = {tag("host"): socket.gethostname(), tag("pid"): str(os.getpid()), tag("heartbeat"): str(time.time())}
        waited = False
        while True:
            done = self.find_finished(kind, key)
            if done is not None:
                return None, done
            run_id = self.start_run(name, {**tags, **me}, params)
            if self._first_live_claim(kind, key, run_id):
                time.sleep(0.2)  # settle: a racing claim committed just now becomes visible
                if self._first_live_claim(kind, key, run_id):
                    done = self.find_finished(kind, key)  # a rival may have finished meanwhile
                    if done is None:
                        return run_id, None
                    with deferred():
                        self.client.delete_run(run_id)
                    return None, done
            with deferred():
                self.client.delete_run(run_id)  # yield: the other process does the work
            if on_wait is not None and not waited:
                on_wait()
                waited = True
            while self._live_claims(kind, key) and self.find_finished(kind, key) is None:
                time.sleep(poll_s)

    @atomic
    @retry_transient
    def _live_claims(self, kind: str, key: str) -> list[RunRecord]:
        running = [
            r for r in self.search({"kind": kind, "config_hash": key}, finished_only=False) if r.status == "RUNNING"
        ]
        live = []
        for rec in running:
            if self._alive(rec):
                live.append(rec)
            else:
                self.fail(rec.run_id, "abandoned: its process stopped before finishing")
        return live

    def _first_live_claim(self, kind: str, key: str, run_id: str) -> bool:
        live = self._live_claims(kind, key)
        order = sorted(live, key=lambda r: (r.start_time, r.run_id))
        return bool(order) and order[0].run_id == run_id

    @staticmethod
    def _alive(rec: RunRecord) -> bool:
        beat = float(rec.t("heartbeat", "0") or 0) or rec.start_time / 1000
        if time.time() - beat > STALE_S:
            return False
        if rec.t("host") == socket.gethostname() and rec.t("pid"):
            try:
                os.kill(int(rec.t("pid")), 0)
            except ProcessLookupError:
                return False
            except (PermissionError, ValueError):
                return True
        return True

    @contextlib.contextmanager
    def heartbeat(self, run_id: str):
        """Refresh the claim's heartbeat in the background while the work runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    self.client.set_tag(run_id, tag("heartbeat"), str(time.time()))
                except Exception:  # noqa: BLE001 - a missed beat only makes the claim look older
                    pass

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def find_finished(self, kind: str, config_hash: str) -> RunRecord | None:
        """The first finished run of this kind and config: later duplicates are ignored."""
        runs = self.search({"kind": kind, "config_hash": config_hash})
        return runs[0] if runs else None

    # -------------------------------------------------------------------------- checkpoints
    @atomic
    @retry_transient
    def save_checkpoint(self, run_id: str, state: dict[str, Any]) -> str:
        """Write atomically to a temp file, record its sha256, then upload: a torn write is detectable."""
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            torch.save(state, path)
            digest = sha256_file(path)
            self.log_file(run_id, path, "checkpoint")
        self.client.set_tag(run_id, tag("checkpoint_sha256"), digest)
        return digest

    @atomic
    def load_checkpoint(self, record: RunRecord) -> dict[str, Any]:
        """Download and verify against the recorded sha256; raise CorruptCheckpoint on mismatch."""
        import torch

        expected = record.t("checkpoint_sha256")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(record.run_id, "checkpoint/model.pt", tmp)
            except Exception as err:  # noqa: BLE001
                raise CorruptCheckpoint(f"Checkpoint of run {record.run_id} is missing: {err}") from None
            if not expected or sha256_file(Path(local)) != expected:
                raise CorruptCheckpoint(f"Checkpoint of run {record.run_id} fails its sha256 check.")
            return torch.load(local, map_location="cpu", weights_only=True)
