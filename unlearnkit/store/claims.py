"""Exactly-once work across processes that share a store: claims, heartbeats and liveness.

Before training a model or running a method, a process *claims* the work (its run type and
config hash) by starting a RUNNING run tagged with its host, PID and a heartbeat. Among
concurrent claims the earliest live one wins; the others delete theirs and wait for its result.
A claim whose process is gone (same host: PID not alive; any host: heartbeat older than
``STALE_S``) is marked failed, so a killed sweep never blocks the next one. Everything goes
through :class:`~unlearnkit.store.Store`'s public methods: this module does not know MLflow.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from unlearnkit.store.mlflow_store import RunRecord, Store, tag

HEARTBEAT_S = 15.0  # a running claim refreshes its heartbeat tag this often
STALE_S = 90.0  # a claim silent for this long (or whose local process is gone) is abandoned
SETTLE_S = 0.2  # a racing claim committed just before ours becomes visible within this


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`: either this process owns a new RUNNING run (``run_id``) and
    must do the work, or the work is already done (``finished``, possibly by another process)."""

    run_id: str | None = None
    finished: RunRecord | None = None

    @property
    def mine(self) -> bool:
        return self.run_id is not None


def owner_tags() -> dict[str, str]:
    return {tag("host"): socket.gethostname(), tag("pid"): str(os.getpid()), tag("heartbeat"): str(time.time())}


def claim(
    store: Store,
    run_type: str,
    key: str,
    name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    on_wait: Callable[[], None] | None = None,
    poll_s: float = 1.0,
) -> Claim:
    """Claim the work ``(run_type, key)`` among all processes sharing ``store``."""
    waited = False
    while True:
        done = store.find_finished(run_type, key)
        if done is not None:
            return Claim(finished=done)
        run_id = store.start_run(name, {**tags, **owner_tags()}, params)
        if first_live_claim(store, run_type, key, run_id):
            time.sleep(SETTLE_S)
            if first_live_claim(store, run_type, key, run_id):
                done = store.find_finished(run_type, key)  # a rival may have finished meanwhile
                if done is None:
                    return Claim(run_id=run_id)
                store.delete_run(run_id)
                return Claim(finished=done)
        store.delete_run(run_id)  # yield: the other process does the work
        if on_wait is not None and not waited:
            on_wait()
            waited = True
        while live_claims(store, run_type, key) and store.find_finished(run_type, key) is None:
            time.sleep(poll_s)


def live_claims(store: Store, run_type: str, key: str) -> list[RunRecord]:
    """RUNNING claims on the work whose process still lives; dead ones are marked failed."""
    running = [
        r
        for r in store.search({"run_type": run_type, "config_hash": key}, finished_only=False)
        if r.status == "RUNNING"
    ]
    live = []
    for rec in running:
        if alive(rec):
            live.append(rec)
        else:
            store.fail(rec.run_id, "abandoned: its process stopped before finishing")
    return live


def first_live_claim(store: Store, run_type: str, key: str, run_id: str) -> bool:
    order = sorted(live_claims(store, run_type, key), key=lambda r: (r.start_time, r.run_id))
    return bool(order) and order[0].run_id == run_id


def alive(rec: RunRecord) -> bool:
    """Whether the process behind a RUNNING claim still works on it."""
    beat = float(rec.tag("heartbeat", "0") or 0) or rec.start_time / 1000
    if time.time() - beat > STALE_S:
        return False
    return process_alive(rec.tag("host"), rec.tag("pid"))


def process_alive(host: str, pid: str) -> bool:
    """Whether process ``pid`` of ``host`` still runs. Only this host can be asked: a process on
    another one, or a PID that cannot be read, is taken to run."""
    if host == socket.gethostname() and pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
    return True


@contextmanager
def heartbeat(store: Store, run_id: str) -> Iterator[None]:
    """Refresh the claim's heartbeat in the background while the work runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                store.set_tags(run_id, {tag("heartbeat"): str(time.time())})
            except Exception:  # noqa: BLE001 - a missed beat only makes the claim look older
                pass

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def release(store: Store, run_id: str) -> None:
    """Drop the liveness tags from a finished run: they only mean something while it runs."""
    for key in ("heartbeat", "pid"):
        store.delete_tag(run_id, tag(key))
