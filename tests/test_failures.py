"""Every failure is one line: bad input (the probe's table B), a full disk, a server gone past the
retry window, and a model whose outputs are NaN (that row fails, the next method still runs)."""

from __future__ import annotations

import errno
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

FIXTURES = str(Path(__file__).parent / "fixtures" / "plugins")
RUN = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", FIXTURES, "--seeds", "1"]
RUN += ["--device", "cpu", "--epochs", "2"]


def one_error_line(err: str) -> str:
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["-o", "alpha=inf"], "Bad value 'inf' for option 'alpha' of method 'lotus': Input should be a finite"),
        (["-o", "alpha=1e309"], "Allowed: a finite number > 0."),
        (["-o", "alpha=" + "9" * 5000], "…(5002 chars) for option 'alpha'"),
        (["-o", "lr=inf"], "Bad value 'inf' for option 'lr'"),
        (["-o", "weight_decay=nan"], "Allowed: a finite number >= 0."),
        (["-o", "batch_size=" + "9" * 23], "Input should be a 64-bit integer. Allowed: a 64-bit integer >= 1."),
        (["-o", "x" * 20000 + "=1"], "Unknown option '" + "x" * 60 + "…(20000 chars)' for method 'lotus'"),
        (["-o", "target=../../x"], "Allowed: one of gumbel, softmax."),
        (["--dataset-option", "n=inf"], None),
        (["--forget", "random:nan"], None),
        (["--forget", "class:99"], None),
        (["--subset", "1e309"], None),
        (["--seeds", "99999999999999999999"], None),
        (["--epochs", "-1"], None),
    ],
    ids=lambda v: " ".join(w[:20] for w in v) if isinstance(v, list) else None,
)
def test_bad_input_is_one_short_line_and_exit_2(cli, extra, expected):
    code, _, err = cli(*RUN, "--method", "lotus", *extra)
    assert code == 2, err
    line = one_error_line(err)
    assert len(line) < 400, line
    if expected:
        assert expected in line, line


def test_a_full_disk_is_one_line_exit_1_and_no_finished_run(cli, monkeypatch):
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/store/artifacts/model.pt")

    monkeypatch.setattr(LocalArtifactRepository, "log_artifact", full)
    code, _, err = cli(*RUN, "--method", "lotus")
    line = one_error_line(err)
    assert code == 1 and "No space left on the device writing /store/artifacts/model.pt" in line, err
    from unlearnkit.store.mlflow_store import Store

    assert not Store().search({"run_type": "unlearn"})  # nothing half-written counts


class _HealthThenGone(BaseHTTPRequestHandler):
    """Answers /health (so the store check passes), then the server is gone for every other call."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path.endswith("/health") else 503)
        self.end_headers()
        self.wfile.write(b"OK")

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_server_down_past_the_retry_window_is_one_line(cli, monkeypatch):
    from unlearnkit.store import mlflow_store

    monkeypatch.setattr(mlflow_store, "RETRY_FOR_S", 1.0)
    server = HTTPServer(("127.0.0.1", 0), _HealthThenGone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = cli(*RUN, "--method", "lotus", "--tracking-uri", uri)
    finally:
        server.shutdown()
    line = one_error_line(err)
    assert code == 1 and f"The MLflow tracking server at {uri} did not answer for 1 s" in line, err


def test_a_closed_port_is_one_line(cli):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = cli(*RUN, "--tracking-uri", f"http://127.0.0.1:{port}")
    assert code == 2 and "Cannot reach the MLflow tracking server" in one_error_line(err)


def test_nan_outputs_fail_that_row_and_the_next_method_still_runs(cli):
    nan_dir = str(Path(__file__).parent / "fixtures" / "nan_outputs")
    argv = [w if w != FIXTURES else nan_dir for w in RUN]
    code, _, err = cli(*argv, "--method", "nan_outputs,lotus")
    assert code == 1 and "Traceback" not in err, err
    failed = [ln for ln in err.splitlines() if "nan_outputs (seed 1) failed" in ln and "non-finite outputs" in ln]
    assert failed, err
    from unlearnkit.store.mlflow_store import Store

    done = {r.tag("method") for r in Store().search({"run_type": "unlearn"})}
    assert "lotus" in done and "nan_outputs" not in done


def test_a_full_sqlite_store_is_one_line_exit_1_and_no_finished_run(cli, isolated_store):
    """SQLite itself reports the full disk: every connection to the store's file may not grow it
    past its current size (``PRAGMA max_page_count``), so the first run row that needs a new page
    fails with SQLite's own "database or disk is full" error, wrapped by SQLAlchemy and MLflow."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    db = isolated_store / "store" / "mlflow.db"
    with sqlite3.connect(db) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_connection, _record):
        if str(db) in (dbapi_connection.execute("PRAGMA database_list").fetchone()[2] or ""):
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Engine, "connect", cap)
    try:
        code, _, err = cli(*RUN, "--method", "lotus")
    finally:
        event.remove(Engine, "connect", cap)
    line = one_error_line(err)
    assert code == 1 and "The store's database is full (no space left on its disk)" in line, err
    from unlearnkit.store.mlflow_store import Store

    assert not Store().search({"run_type": "unlearn"})  # nothing half-written counts
