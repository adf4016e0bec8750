"""Store calls against a flaky server: a dropped response is retried, and a retried run creation
never leaves a second (orphan) run that claims would mistake for a rival."""

from __future__ import annotations

import http.client

import pytest
import requests
from mlflow.exceptions import MlflowException

from unlearnkit.store import mlflow_store as store_module
from unlearnkit.store.mlflow_store import Store, is_transient


def dropped_response() -> MlflowException:
    """What MLflow's REST client raises when the server dies mid-response (seen in CI)."""
    try:
        try:
            raise http.client.IncompleteRead(b"", 3577)
        except http.client.IncompleteRead as low:
            raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead") from low
    except requests.exceptions.ChunkedEncodingError:
        try:
            raise MlflowException("API request to http://127.0.0.1/api/2.0/mlflow/runs/create failed")
        except MlflowException as err:
            return err


def test_a_dropped_response_is_transient_and_a_real_error_is_not():
    assert is_transient(dropped_response())
    assert not is_transient(MlflowException("RESOURCE_DOES_NOT_EXIST: no such run"))
    assert not is_transient(ValueError("bad value"))


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    """A SQLite store treated as remote (so it retries) whose first run creation succeeds on the
    server but loses its answer."""
    monkeypatch.setattr(Store, "remote", property(lambda self: True))
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    st = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    real = st.client.create_run
    calls = []

    def create_run(*args, **kwargs):
        run = real(*args, **kwargs)
        calls.append(run.info.run_id)
        if len(calls) == 1:
            raise dropped_response()
        return run

    monkeypatch.setattr(st.client, "create_run", create_run)
    return st, calls


def test_a_retried_run_creation_returns_the_run_the_server_made(flaky):
    st, calls = flaky
    run_id = st.start_run("lotus-digits-cnn-s1", {"unlearnkit.run_type": "unlearn"}, {"lr": 0.1})
    assert calls == [run_id]  # found by its creation tag, not created twice
    runs = st.search({"run_type": "unlearn"}, finished_only=False)
    assert [r.run_id for r in runs] == [run_id]
    assert runs[0].params == {"lr": "0.1"}


def test_a_real_error_is_raised_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "remote", property(lambda self: True))
    st = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise MlflowException("INVALID_PARAMETER_VALUE: bad tag")

    monkeypatch.setattr(st.client, "create_run", broken)
    with pytest.raises(MlflowException):
        st.start_run("x", {}, {})
    assert len(calls) == 1
