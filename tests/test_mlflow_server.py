"""A real MLflow server over HTTP: a sweep survives the server being killed and restarted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.servers import Server, free_port

HERE = Path(__file__).parent
RECIPE = HERE / "fixtures" / "recipes" / "tiny-one.toml"  # original, retrain, lotus: 3 runs
PLUGINS = HERE / "fixtures" / "plugins"

pytestmark = pytest.mark.xdist_group("mlflow-server")  # one worker, one server
pytest.importorskip("mlflow.server", reason="the MLflow server is not installed (pip install 'unlearnkit[dev]')")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, empty_mlflow_db):
    """One server for the module (starting one costs seconds of CPU); tests that kill it restart it
    through ``server`` below, and each test writes to its own experiment."""
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    shutil.copyfile(empty_mlflow_db, srv.root / "mlflow.db")  # the schema made: no migrations at start
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def server(shared_server):
    if not shared_server.running:
        shared_server.start()
    return shared_server


def finished(uri: str, experiment: str) -> Counter:
    from unlearnkit.store.mlflow_store import Store

    return Counter(r.tag("config_hash") for r in Store(uri, experiment).search({"run_type": "unlearn"}))


def started(uri: str, experiment: str) -> bool:
    """Whether the sweep has begun writing runs (a claim exists): from here the whole cell is ahead."""
    from unlearnkit.store.mlflow_store import Store

    try:
        return bool(Store(uri, experiment).search({}, finished_only=False))
    except Exception:  # noqa: BLE001 - the experiment does not exist yet
        return False


def sweep(experiment: str) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", "sweep", str(RECIPE), "--plugins-dir", str(PLUGINS),
            "--experiment", experiment]  # fmt: skip


def test_sweep_over_http_survives_a_server_restart(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        sweep("restart"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not started(server.uri, "restart") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    server.kill()  # mid-sweep: the client's retries must carry it over the outage
    time.sleep(1)
    server.start()
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    counts = finished(server.uri, "restart")
    assert len(counts) == 3 and set(counts.values()) == {1}

    from unlearnkit.board.leaderboard import leaderboard, metric_info
    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.store.mlflow_store import Store

    boards = leaderboard(Store(server.uri, "restart"), metric_info(PluginHost().registries))
    assert len(boards) == 1 and all(len(r.seeds) == 1 for b in boards for r in b.rows)


def test_ctrl_c_is_answered_at_once_while_the_store_retries(server, tmp_path, monkeypatch):
    """With the server gone, store calls back off and retry; Ctrl-C must still stop the process
    within a couple of seconds (the back-off sleeps run outside the deferred-signal blocks)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        sweep("ctrl-c"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not started(server.uri, "ctrl-c") and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
        server.kill()
        time.sleep(4)  # the sweep is now inside a retry loop (or about to enter one)
        assert proc.poll() is None, "the sweep gave up at once instead of riding out the outage"
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        waited = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, -signal.SIGINT), proc.stderr.read()[-2000:]
    # wall time to exit, interpreter shutdown included, on a loaded machine; before the back-off
    # sleeps left the deferred-signal block it was the whole retry budget (about a minute)
    assert waited < 5.0, f"Ctrl-C took {waited:.1f} s to answer"


def test_unreachable_server_is_one_line_before_any_compute(tmp_path, capsys, monkeypatch):
    from unlearnkit.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard"])
    assert exc.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith("Error: Cannot reach the MLflow tracking server at http://127.0.0.1:")
    )
