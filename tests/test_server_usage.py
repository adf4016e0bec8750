"""A team on a shared MLflow tracking server: credentials in the URL, a misspelt experiment, MLflow's
own output. The fast tests use a small fake server; the one marked slow starts a real ``mlflow server``."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port
from unlearnkit.errors import StoreError
from unlearnkit.store.mlflow_store import Store, uri_problem

SECRET = "s3cretPW"


class FakeServer(http.server.ThreadingHTTPServer):
    """Answers ``/health``, holds only the experiment Default; records every request and its auth header."""

    seen: list[tuple[str, str, str]]


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def answer(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/health"):
            body, code = b"OK", 200
        elif "experiments/search" in self.path:
            body, code = json.dumps({"experiments": [{"experiment_id": "0", "name": "Default"}]}).encode(), 200
        else:
            body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}).encode()
            code = 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    srv = FakeServer(("127.0.0.1", 0), Handler)
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_password_in_the_uri_is_never_echoed_by_a_store_error():
    port = free_port()  # nothing listens there
    with pytest.raises(StoreError) as exc:
        Store(f"http://alice:{SECRET}@127.0.0.1:{port}").check()
    line = str(exc.value)
    assert SECRET not in line and f"http://alice:***@127.0.0.1:{port}" in line
    assert "Connection refused" in line  # the health check reached the port, not a DNS lookup of "alice:…@127…"
    for typo in (f"htp://alice:{SECRET}@host:5000", f"sqlite://alice:{SECRET}@x", f"file://alice:{SECRET}@x/y"):
        problem = uri_problem(typo)
        assert problem and SECRET not in problem, problem


def test_credentials_in_the_uri_are_sent_and_a_missing_experiment_is_not_made(fake_server):
    """Before: urllib took ``alice:PW@127.0.0.1`` for the host name (a DNS error against a sound server),
    and ``check`` created the experiment, so ``leaderboard --experiment typo`` left it on the server."""
    import base64

    port = fake_server.server_address[1]
    store = Store(f"http://alice:{SECRET}@127.0.0.1:{port}", "typo")
    store.check()
    health = [s for s in fake_server.seen if s[1] == "/health"]
    assert health and health[0][2] == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert not [s for s in fake_server.seen if "experiments/create" in s[1]], fake_server.seen


def test_a_read_only_command_adds_no_experiment_to_a_server(fake_server, cli):
    port = fake_server.server_address[1]
    code, out, err = cli("leaderboard", "--tracking-uri", f"http://127.0.0.1:{port}", "--experiment", "typo")
    assert code == 2 and err.startswith(
        f"Error: No experiment 'typo' in http://127.0.0.1:{port}; its experiments: Default"
    ), err
    assert not [s for s in fake_server.seen if "experiments/create" in s[1]], fake_server.seen


@pytest.mark.slow
def test_mlflow_prints_no_run_urls_and_no_password_against_a_server(tmp_path, empty_mlflow_db, capfd, monkeypatch):
    """MLflow writes "View run NAME at: URL" to stdout each time a run ends on a server: two lines per run
    in the middle of the CLI's progress, and a URL with ``user:password@`` prints the password."""
    import shutil

    from tests.servers import Server

    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    srv = Server(tmp_path)
    shutil.copyfile(empty_mlflow_db, Path(tmp_path) / "mlflow.db")
    srv.start()
    try:
        store = Store(f"http://alice:{SECRET}@127.0.0.1:{srv.port}", "urls")
        store.check()
        run_id = store.start_run("probe", {"unlearnkit.run_type": "unlearn"}, {})
        store.finish(run_id)
        out, err = capfd.readouterr()
        assert "View run" not in out and SECRET not in out + err, out
        assert store.get(run_id).status == "FINISHED"
    finally:
        srv.kill()


def test_a_server_that_went_away_is_one_line_naming_what_the_socket_said(monkeypatch, caplog):
    """The server stopped mid-run: ``fail`` cannot mark the run (the server is down) and said so in a
    second line before the error; the error quoted urllib3's repr of its pool instead of the refusal."""
    import requests
    from mlflow.exceptions import MlflowException

    from unlearnkit.store import mlflow_store

    store = Store("http://127.0.0.1:9")

    def down(*args: object, **kwargs: object) -> None:
        try:
            raise requests.exceptions.ConnectionError(
                "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /api/2.0/mlflow/runs/get "
                "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to "
                "establish a new connection: [Errno 111] Connection refused'))"
            )
        except requests.exceptions.ConnectionError as low:
            raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/get failed") from low

    monkeypatch.setattr(Store, "_fail", lambda self, run_id, reason: down())
    with caplog.at_level("DEBUG", logger="unlearnkit"):
        store.fail("abc", "interrupted")
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    try:
        down()
    except MlflowException as err:
        line = str(mlflow_store.unavailable(store, err))
    assert "([Errno 111] Connection refused)" in line and "HTTPConnectionPool" not in line, line


def test_no_line_the_code_prints_formats_the_raw_tracking_uri():
    """Before: `run` ended with `Store: http://alice:PASSWORD@host`, and so did `store`, `leaderboard`,
    `reproduce`, `audit`, `export`/`import` and the Ray check: every message formats ``shown_uri``."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "unlearnkit"
    raw = re.compile(r"\{(?:self\.|sweep\.)?store\.uri\}")
    hits = [
        f"{p.relative_to(root)}:{n}"
        for p in root.rglob("*.py")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if raw.search(line)
    ]
    assert hits == []


def test_store_check_against_a_server_does_not_claim_a_database_check(fake_server, cli):
    """Before: "Database: sound (http://...)", though no database check can run over HTTP."""
    port = fake_server.server_address[1]
    code, out, err = cli("store", "check", "--tracking-uri", f"http://127.0.0.1:{port}", "--experiment", "typo")
    assert "Database: sound" not in out and f"Server: answers (http://127.0.0.1:{port};" in out, out + err


def test_a_long_store_path_is_shown_whole_and_only_its_password_hidden(tmp_path):
    """The masking first cut every printed store URI at 60 characters, so a deep store path came out
    as 'sqlite:////tmp/.../test_one_…(92 chars)' in the messages that tell the user where it is."""
    from unlearnkit.store.mlflow_store import Store

    deep = tmp_path / ("folder-" * 12) / "mlflow.db"
    assert Store(f"sqlite:///{deep}").shown_uri == f"sqlite:///{deep}"
    assert Store("http://alice:s3cret@example.org:5000/" + "p" * 100).shown_uri == (
        "http://alice:***@example.org:5000/" + "p" * 100
    )
