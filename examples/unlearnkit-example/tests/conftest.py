"""Fixtures for the example package's tests: an isolated result store, and one tiny benchmark."""

from __future__ import annotations

import pytest

# Run from unlearnkit's own checkout (`python -m pytest` there collects these too), the package
# may not be installed: skip with the command that installs it.
pytest.importorskip("unlearnkit_example", reason="pip install -e examples/unlearnkit-example")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Each test writes to its own MLflow store and cache, never to ./unlearnkit-store."""
    monkeypatch.setenv("UNLEARNKIT_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("UNLEARNKIT_LOAD_PLUGINS", "UNLEARNKIT_DISABLE_PLUGINS", "UNLEARNKIT_PLUGINS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def tiny():
    """Trained tiny original and retrained models (about two seconds on a CPU), shared by the tests."""
    from unlearnkit.testing import tiny_bench

    return tiny_bench()
