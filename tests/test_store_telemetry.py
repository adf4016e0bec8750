"""MLflow's usage telemetry stays off in unlearnkit's processes unless the user turns it on: no
report over the network and no installation id in the user's home. Each case runs in a fresh
interpreter, because MLflow reads the switch once, on its first import, and without the markers by
which MLflow turns its telemetry off by itself under pytest or CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# What MLflow takes as "a test or CI is running" (mlflow/telemetry/utils.py), dropped so that the
# child sees what a user's shell gives it.
QUIET_ANYWAY = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD", "JENKINS_URL")

IMPORT_STORE_THEN_MLFLOW = """
import os
import unlearnkit.store
print("switch", os.environ.get("MLFLOW_DISABLE_TELEMETRY"))
if os.environ.get("MLFLOW_DISABLE_TELEMETRY") in (None, "true"):
    import mlflow
    from mlflow.telemetry.client import get_telemetry_client
    print("client", get_telemetry_client())
"""


def child(tmp_path: Path, **env: str) -> str:
    dropped = (*QUIET_ANYWAY, "DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY")
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    clean |= {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config"), **env}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_STORE_THEN_MLFLOW], env=clean, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_store_turns_mlflow_telemetry_off(tmp_path):
    out = child(tmp_path)
    assert "switch true" in out and "client None" in out, out
    assert not (tmp_path / ".config" / "mlflow").exists()  # no installation id written


@pytest.mark.parametrize("given", ["false", "0"])
def test_a_users_own_telemetry_choice_is_kept(given, tmp_path):
    assert f"switch {given}" in child(tmp_path, MLFLOW_DISABLE_TELEMETRY=given)
