"""Claims without trusted clocks: two "hosts" whose clocks are two minutes apart share one store and
still do each piece of work once, never mistake a live holder for a dead one, and no heartbeat value
(nan, inf, the far future, text, a negative number) stalls a claimant or crashes it.

Both hosts live in this process: a thread plays host B, and while it runs its wall clock
(``time.time``, which MLflow stamps a run's start with), its monotonic clock and its host name are
its own. Leases are shortened so that a holder's work outlasts two of them."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import Store, tag

KEY = "0" * 63 + "1"
WHAT = {tag("run_type"): "train", tag("config_hash"): KEY}  # what every caller tags a claim with
REAL_TIME, REAL_MONOTONIC, REAL_HOSTNAME = time.time, time.monotonic, socket.gethostname


class Hosts:
    """Per-thread clock offsets and host names: ``play("hostB", 120)`` in a thread makes that thread
    another host whose clocks run two minutes ahead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.local = threading.local()
        monkeypatch.setattr(time, "time", lambda: REAL_TIME() + self.offset())
        monkeypatch.setattr(time, "monotonic", lambda: REAL_MONOTONIC() + self.offset())
        monkeypatch.setattr(socket, "gethostname", lambda: getattr(self.local, "host", None) or REAL_HOSTNAME())

    def offset(self) -> float:
        return getattr(self.local, "offset", 0.0)

    def play(self, host: str, offset: float) -> None:
        self.local.host, self.local.offset = host, offset


class Beats:
    """When each beat was written, on the real monotonic clock: a failure names the longest silence,
    which tells a holder starved past its lease (a loaded machine) from a judge that misread a clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: dict[str, list[float]] = {}  # per heartbeat thread, which is per claim
        real = claims.beat_tags

        def noted() -> dict[str, str]:
            self.at.setdefault(threading.current_thread().name, []).append(REAL_MONOTONIC())
            return real()

        monkeypatch.setattr(claims, "beat_tags", noted)

    def gap(self) -> float:
        return max((b - a for at in self.at.values() for a, b in zip(at, at[1:])), default=0.0)


@pytest.fixture
def short_leases(monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(claims, "STALE_S", 1.5)  # 15 beats: a loaded CI machine stalls a thread for ~1 s
    monkeypatch.setattr(claims, "SETTLE_S", 0.05)


def work(uri: str, hosts: Hosts, host: str, offset: float, delay: float, hold_s: float, out: dict) -> None:
    """One claimant: claim, and when it wins, hold the work (beating) for ``hold_s``, then finish."""
    hosts.play(host, offset)
    try:
        time.sleep(delay)
        store = Store(uri)
        got = claims.claim(store, "train", KEY, f"train-{host}", WHAT, {}, poll_s=0.05)
        if got.mine:
            assert got.run_id is not None
            with claims.heartbeat(store, got.run_id):
                time.sleep(hold_s)  # longer than a lease: only a renewed lease keeps the claim
                store.log_metrics(got.run_id, {"train_time_s": hold_s})
                store.finish(got.run_id)
            claims.release(store, got.run_id)
        out[host] = got
    except BaseException as err:  # noqa: BLE001 - reported by the test
        out[host] = err


def all_runs(uri: str):
    return Store(uri).search({"run_type": "train"}, finished_only=False)


@pytest.mark.parametrize(
    "skew, delay",
    [
        pytest.param(120.0, 0.3, id="B-ahead-later"),  # the probe's case: B judged A's live claim dead
        pytest.param(-120.0, 0.3, id="B-behind-later"),  # B's claim sorted before A's, which was working
        pytest.param(120.0, 0.0, id="B-ahead-together", marks=pytest.mark.slow),
        pytest.param(-120.0, 0.0, id="B-behind-together", marks=pytest.mark.slow),
    ],
)
def test_skewed_clocks_do_each_config_once_and_never_abandon_a_live_holder(
    skew, delay, tmp_path, monkeypatch, short_leases
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Store(uri).check()
    hosts = Hosts(monkeypatch)
    beats = Beats(monkeypatch)
    out: dict = {}
    threads = [
        threading.Thread(target=work, args=(uri, hosts, "hostA", 0.0, 0.0, 3.2, out)),
        threading.Thread(target=work, args=(uri, hosts, "hostB", skew, delay, 3.2, out)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a claimant never returned"
    assert not [e for e in out.values() if isinstance(e, BaseException)], out
    runs = all_runs(uri)
    said = f"runs {[(r.run_id[:8], r.status, r.tag('failure')) for r in runs]}; longest gap between beats {beats.gap():.2f} s"
    assert sorted(got.mine for got in out.values()) == [False, True], said  # one worked, the other found it done
    assert [r.status for r in runs].count("FINISHED") == 1
    assert [r.tag("failure") for r in runs if r.tag("failure")] == []  # no live holder tagged abandoned
    loser = next(got for got in out.values() if not got.mine)
    assert loser.finished is not None and loser.finished.status == "FINISHED"


def plant(uri: str, beat: str, *, field: str = "heartbeat", host: str = "otherhost") -> str:
    """A RUNNING claim as another host (or a bundle, or a hostile writer) might have left it."""
    return Store(uri).start_run(
        "planted",
        {tag("run_type"): "train", tag("config_hash"): KEY, tag("host"): host, tag("pid"): "4242", tag(field): beat},
        {},
    )


def claim_in_thread(uri: str, limit_s: float, said: list[str]):
    """``claims.claim`` with a time limit: a claim that waits without end is a failure, not a hang."""
    out: dict = {}

    def go() -> None:
        try:
            out["got"] = claims.claim(
                Store(uri), "train", KEY, "mine", {tag("run_type"): "train"}, {}, poll_s=0.05, notify=said.append
            )
        except BaseException as err:  # noqa: BLE001 - reported by the test
            out["err"] = err

    start = time.monotonic()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"claim still waiting after {limit_s} s"
    assert "err" not in out, out.get("err")
    return out["got"], time.monotonic() - start


@pytest.mark.parametrize(
    "beat",
    ["nan", "inf", "-inf", "-5", "abc", "1e309", "x" * 5000],
    ids=["nan", "inf", "-inf", "-5", "abc", "1e309", "long"],
)
def test_a_heartbeat_no_holder_writes_is_a_dead_claim_taken_over_at_once(beat, tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "SETTLE_S", 0.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    planted = plant(uri, beat)
    said: list[str] = []
    got, seconds = claim_in_thread(uri, claims.STALE_S / 3, said)  # well inside one lease
    assert got.mine
    dead = Store(uri).get(planted)
    assert dead.status == "FAILED" and "is not a value a holder writes" in dead.tag("failure")
    assert Store(uri).get(got.run_id).tag("taken_over_from") == planted
    assert any(planted[:8] in line for line in said)  # the takeover is said


@pytest.mark.parametrize(
    "field, beat",
    [("heartbeat", str(REAL_TIME() + 3600)), ("heartbeat", "1e300"), ("beat", "7"), ("beat", "")],
    ids=["future", "huge", "counter", "none"],
)
def test_a_frozen_well_formed_heartbeat_is_judged_by_the_judges_clock_alone(field, beat, tmp_path, monkeypatch):
    """A value far in the future (a dead host whose clock ran an hour ahead) buys nothing: the claim
    is dead once the value has stayed the same for one lease on the judge's own clock."""
    monkeypatch.setattr(claims, "SETTLE_S", 0.0)
    monkeypatch.setattr(claims, "STALE_S", 1.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    planted = plant(uri, beat, field=field)
    said: list[str] = []
    got, seconds = claim_in_thread(uri, 20.0, said)
    assert got.mine and seconds >= claims.STALE_S  # not before one full lease...
    assert seconds < claims.STALE_S + 10  # ...and not much after it
    dead = Store(uri).get(planted)
    assert dead.status == "FAILED" and "has not changed for" in dead.tag("failure")
    assert any(planted[:8] in line and "heartbeat" in line for line in said)  # what it waited for, and how long


@pytest.mark.slow  # holds the work for three leases on purpose
def test_a_live_holder_keeps_the_work_past_many_leases_whatever_its_clock_says(tmp_path, monkeypatch):
    """Another host's holder, its run started an hour "later" and its wall time an hour "earlier"
    by its own clock, keeps the work while its beat changes: order is the tickets', liveness the
    judge's, and the waiter takes the holder's result when it finishes."""
    monkeypatch.setattr(claims, "SETTLE_S", 0.0)
    monkeypatch.setattr(claims, "STALE_S", 2.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = Store(uri)
    store.check()
    with monkeypatch.context() as later:
        later.setattr(time, "time", lambda: REAL_TIME() + 3600)
        holder = plant(uri, "1", field="beat")
    store.set_tags(holder, {tag("ticket"): "1", tag("heartbeat"): str(REAL_TIME() - 3600)})
    stop = threading.Event()

    def keep_beating() -> None:
        for n in range(2, 10_000):
            if stop.wait(0.1):
                return
            if n == 60:  # three leases in, or more: done
                store.log_metrics(holder, {"train_time_s": 1.0})
                store.finish(holder)
                return
            store.set_tags(holder, {tag("beat"): str(n)})

    beater = threading.Thread(target=keep_beating, daemon=True)
    beater.start()
    said: list[str] = []
    try:
        got, seconds = claim_in_thread(uri, 30.0, said)
    finally:
        stop.set()
    assert not got.mine and got.finished is not None and got.finished.run_id == holder
    assert store.get(holder).tag("failure") == ""
    assert any(holder[:8] in line and "until it finishes" in line for line in said)


def test_the_judge_never_reads_a_wall_clock(monkeypatch):
    """A beat's value is only compared with the last one seen; time.time may say anything."""
    from unlearnkit.store.mlflow_store import RunRecord

    monkeypatch.setattr(time, "time", lambda: math.nan)
    rec = RunRecord("r" * 32, "RUNNING", 0, tags={tag("host"): "elsewhere", tag("beat"): "3"})
    leases = claims.Leases()
    assert leases.judge(rec).alive and leases.judge(rec).alive


def test_only_a_store_that_may_lag_waits_for_a_racing_claim_to_settle(tmp_path, monkeypatch):
    """One SQLite file shows every acknowledged write to every later read, so a claim on it takes no
    settling sleep; a server (which may answer from a cache or a replica) still waits SETTLE_S."""
    slept: list[float] = []
    monkeypatch.setattr(claims.time, "sleep", slept.append)
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.check()
    assert store.reads_see_every_write
    assert claims.claim(store, "train", KEY, "train-a", WHAT, {}).mine
    assert slept == []
    monkeypatch.setattr(Store, "reads_see_every_write", property(lambda self: False))
    assert claims.claim(store, "train", "0" * 63 + "2", "train-b", WHAT, {}).mine
    assert slept == [claims.SETTLE_S]
