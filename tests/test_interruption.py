"""SIGKILL and SIGINT during training, unlearning and evaluation: nothing counted, nothing
corrupted, and the re-run resumes (one finished run per cell)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "interrupt"
ARGS = ["--dataset", "tiny", "--model", "tiny_cnn", "--method", "sleepy", "--seeds", "1", "--device", "cpu"]


def cmd(epochs: int) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", "run", *ARGS, "--epochs", str(epochs), "--plugins-dir", str(PLUGINS)]


def store_runs(run_type: str, role: str | None = None):
    from unlearnkit.store.mlflow_store import Store

    db = Path(os.environ["UNLEARNKIT_STORE"]) / "mlflow.db"
    filters = {"run_type": run_type, **({"role": role} if role else {})}
    return Store().search(filters, finished_only=False) if db.exists() else []


def wait_for(predicate, proc, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"process ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    pytest.fail("stage never reached")


CASES = [
    pytest.param(
        stage,
        sig,
        id=f"{stage}-{sig.name}",
        marks=() if (stage, sig) == ("unlearning", signal.SIGINT) else pytest.mark.slow,
    )
    for stage in ("training", "unlearning", "evaluation")
    for sig in (signal.SIGKILL, signal.SIGINT)
]


@pytest.mark.parametrize("stage, sig", CASES)
def test_interrupted_cell_is_never_counted_and_resumes(stage, sig, tmp_path, monkeypatch, cli):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("SLEEPY_DIR", str(markers))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    epochs = 20000 if stage == "training" else 2  # one step per epoch on tiny data: long enough to be caught
    proc = subprocess.Popen(
        cmd(epochs), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if stage == "training":
            wait_for(lambda: any(r.status == "RUNNING" for r in store_runs("train", "original")), proc)
            time.sleep(1.0)
        else:
            wait_for(lambda: (markers / stage).exists(), proc)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        # 130 from the CLI's handler; -2 (killed by SIGINT) in a rare race seen once under heavy load,
        # where the interrupt escaped during shutdown. Either way the run must not count (below).
        assert proc.returncode in (130, -signal.SIGINT), proc.returncode
    finished = [r for r in store_runs("unlearn") if r.status == "FINISHED" and r.tag("method") == "sleepy"]
    assert finished == []
    if stage == "training":
        assert not [r for r in store_runs("train", "original") if r.status == "FINISHED"]
    # resume: same command, the pause disabled
    (markers / "resume").write_text("")
    code, _, err = cli(*cmd(epochs if stage != "training" else 2)[3:])  # the re-run: here, not a new process
    assert code == 0, err[-2000:]
    unlearn = [r for r in store_runs("unlearn") if r.status == "FINISHED"]
    assert sorted(r.tag("method") for r in unlearn) == ["original", "retrain", "sleepy"]
    originals = [r for r in store_runs("train", "original") if r.status == "FINISHED"]
    assert len(originals) == 1
