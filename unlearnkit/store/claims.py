"""Exactly-once work across processes that share a store: claims, leases and liveness.

Before training a model or running a method, a process *claims* the work (its run type and config
hash) by starting a RUNNING run. No host's clock takes part in deciding who does the work or whether
a holder is alive, because hosts' clocks disagree (a skew of two minutes made every config run twice).

What is trusted: the store's reads and writes (a write, once acknowledged, is seen by every later
read), a holder's word about itself (its host, its PID, a heartbeat that changes while it works) and
each process's own monotonic clock for time elapsed. What is not: any wall clock, and any tag value
(it may come from an older version, a bundle, a bug or a hostile writer): a value a holder never
writes is treated as a dead claim, never waited on and never a crash.

Ordering: tickets, as in Lamport's bakery algorithm. A claimant (1) starts its run with no ticket
(it is *choosing*), (2) reads the other RUNNING claims on the work and (3) writes the ticket one above
the highest it saw; (4) once no other live claim is still choosing, the live claim with the lowest
``(ticket, run id)`` does the work and the others remove theirs and wait for its result. A claim
started after a ticket was written sees that ticket and draws a higher one; two claims started
together each see the other's run (made before either read), so both compare the same two tickets.

Liveness: a lease. While it holds a claim, the holder writes a new ``beat`` value every
``HEARTBEAT_S``. A judge notes, on its own monotonic clock, when it first saw each value; the claim
is dead when the value has not changed for ``STALE_S`` by that clock, at once when it is held on this
host by a PID that has ended, and at once when its beat or ticket is not a value a holder writes.
A dead claim is failed ("abandoned: ...", naming the judge), and a claim that wins after failing
one records it in ``taken_over_from``. Everything goes through :class:`~unlearnkit.store.Store`'s
public methods: this module does not know MLflow.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from unlearnkit.store.mlflow_store import RunRecord, Store, tag

HEARTBEAT_S = 15.0  # a holder writes a new beat this often
STALE_S = 90.0  # a beat unchanged this long, on the judge's own clock, means the holder is gone
SETTLE_S = 0.2  # a racing claim written just before our read becomes visible within this (servers only)
POLL_S = 1.0  # how often a waiting claimant looks again
MAX_TAG_TEXT = 64  # a beat or ticket longer than this is not one a holder wrote

log = logging.getLogger(__name__)
_beats = itertools.count(1)  # this process's beat values: each one new, so a judge sees a change


def now() -> float:
    """The judge's clock: this process's monotonic clock, the only one claims trust (tests shift it)."""
    return time.monotonic()


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`: either this process owns a new RUNNING run (``run_id``) and
    must do the work, or the work is already done (``finished``, possibly by another process)."""

    run_id: str | None = None
    finished: RunRecord | None = None

    @property
    def mine(self) -> bool:
        return self.run_id is not None


@dataclass(frozen=True)
class Verdict:
    """A judge's view of one RUNNING claim: alive or not, and why (said to the user while waiting)."""

    alive: bool
    reason: str


# ------------------------------------------------------------------------------- holder side
def beat_tags() -> dict[str, str]:
    """One sign of life: a new ``beat`` (what judges go by) and the holder's wall time in
    ``heartbeat`` (for people, and for older versions that still read it)."""
    return {tag("beat"): str(next(_beats)), tag("heartbeat"): str(time.time())}


def owner_tags() -> dict[str, str]:
    return {tag("host"): socket.gethostname(), tag("pid"): str(os.getpid()), **beat_tags()}


@contextmanager
def heartbeat(store: Store, run_id: str) -> Iterator[None]:
    """Renew the claim's lease in the background while the work runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                store.set_tags(run_id, beat_tags())
            except Exception:  # noqa: BLE001 - a missed beat only brings the lease closer to its end
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def release(store: Store, run_id: str) -> None:
    """Drop the liveness tags from a finished run: they only mean something while it runs."""
    for key in ("heartbeat", "beat", "pid"):
        store.delete_tag(run_id, tag(key))


@contextmanager
def held(store: Store, run_id: str) -> Iterator[None]:
    """Work on a run this process started as a claim: its lease renewed meanwhile, released when
    the block ends, the run failed (and the error raised on) when it does not."""
    try:
        with heartbeat(store, run_id):
            yield
        release(store, run_id)
    except BaseException as err:
        store.fail(run_id, f"{type(err).__name__}: {err}")
        raise


# -------------------------------------------------------------------------------- judge side
def number(text: str) -> float | None:
    """``text`` as a finite, non-negative number; None for anything a holder never writes."""
    if len(text) > MAX_TAG_TEXT:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def ticket_of(rec: RunRecord) -> int | None:
    """A claim's ticket; None while it is still choosing (or for a malformed one, judged dead)."""
    text = rec.tag("ticket")
    if text and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def process_alive(host: str, pid: str) -> bool:
    """Whether process ``pid`` of ``host`` still runs. Only this host can be asked: a process on
    another one, or a PID that cannot be read, is taken to run."""
    if host == socket.gethostname() and pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
    return True


class Leases:
    """What this process has seen of RUNNING claims: each one's last beat and when it first saw it,
    on its own monotonic clock. Kept per observing host, so that tests can play two hosts in one
    process; a real process is one observer."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def judge(self, rec: RunRecord) -> Verdict:
        host, pid = rec.tag("host"), rec.tag("pid")
        where = f"run {rec.run_id[:8]}" + (f" on {host}" if host else "") + (f" (pid {pid})" if pid else "")
        if not process_alive(host, pid):
            return Verdict(False, f"{where}: its process has ended")
        beat = rec.tag("beat") or rec.tag("heartbeat")  # an older holder writes only its wall time
        if beat and number(beat) is None:
            return Verdict(False, f"{where}: its heartbeat {beat[:MAX_TAG_TEXT]!r} is not a value a holder writes")
        if rec.tag("ticket") and ticket_of(rec) is None:
            return Verdict(
                False, f"{where}: its ticket {rec.tag('ticket')[:MAX_TAG_TEXT]!r} is not one a holder writes"
            )
        key, at = (socket.gethostname(), rec.run_id), now()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen[0] != beat:
                if len(self._seen) > 10_000:  # claims long gone; only the recent ones matter
                    self._seen.clear()
                self._seen[key] = (beat, at)
                return Verdict(True, f"{where}: heartbeat {beat or '(none)'} seen just now")
        elapsed = at - seen[1]
        if elapsed > STALE_S:
            return Verdict(False, f"{where}: its heartbeat {beat or '(none)'} has not changed for {elapsed:.0f} s")
        return Verdict(True, f"{where}: heartbeat unchanged for {max(elapsed, 0):.0f} of {STALE_S:.0f} s")


LEASES = Leases()


def alive(rec: RunRecord) -> bool:
    """Whether the process behind a RUNNING claim still works on it, as far as this process can tell."""
    return LEASES.judge(rec).alive


def judged_by() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def running(store: Store, run_type: str, key: str) -> list[RunRecord]:
    return [
        r
        for r in store.search({"run_type": run_type, "config_hash": key}, finished_only=False)
        if r.status == "RUNNING"
    ]


def fail_dead(
    store: Store, runs: list[RunRecord], own: str | None = None
) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    """The live ones of ``runs`` (``own`` always counts as live) and ``(run id, reason)`` of the dead
    ones, which are failed with the judge's reason."""
    live: list[RunRecord] = []
    dead: list[tuple[str, str]] = []
    for rec in runs:
        verdict = Verdict(True, "") if rec.run_id == own else LEASES.judge(rec)
        if verdict.alive:
            live.append(rec)
        else:
            store.fail(rec.run_id, f"abandoned: {verdict.reason} (judged by {judged_by()})")
            dead.append((rec.run_id, verdict.reason))
    return live, dead


def live_claims(store: Store, run_type: str, key: str) -> list[RunRecord]:
    """RUNNING claims on the work whose holder still lives; dead ones are marked failed."""
    return fail_dead(store, running(store, run_type, key))[0]


def reap(store: Store, filters: dict[str, str]) -> list[tuple[str, str]]:
    """Fail the RUNNING runs matching ``filters`` whose holder is known dead now (its PID ended on this
    host, a malformed beat, or a beat this process has watched stay unchanged past the lease); returns
    ``(run id, reason)`` for each one failed. Claims with no claimant waiting on them (board runs,
    bundle leftovers) end this way."""
    reaped = []
    for rec in store.search(filters, finished_only=False):
        if rec.status != "RUNNING":
            continue
        verdict = LEASES.judge(rec)
        if not verdict.alive:
            store.fail(rec.run_id, f"abandoned: {verdict.reason} (judged by {judged_by()})")
            reaped.append((rec.run_id, verdict.reason))
    return reaped


# ------------------------------------------------------------------------------- the protocol
def claim(
    store: Store,
    run_type: str,
    key: str,
    name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    on_wait: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
    notify: Callable[[str], None] | None = None,
) -> Claim:
    """Claim the work ``(run_type, key)`` among all processes sharing ``store``. ``on_wait`` is called
    once when this process starts waiting for another one; ``notify`` gets one line for each holder
    waited for (who, and until when) and each takeover."""
    say = notify or log.info
    waited = False
    while True:
        done = store.find_finished(run_type, key)
        if done is not None:
            return Claim(finished=done)
        what = {tag("run_type"): run_type, tag("config_hash"): key}  # what rivals search for, whatever ``tags`` say
        run_id = store.start_run(name, {**tags, **what, **owner_tags()}, params)
        try:
            with heartbeat(store, run_id):
                first, taken = contest(store, run_type, key, run_id, poll_s, say)
            done = store.find_finished(run_type, key)  # a rival may have finished meanwhile
        except BaseException:
            store.fail(run_id, "interrupted while claiming")
            raise
        if first and done is None:
            if taken:  # each abandoned claim named with why it was judged dead (its heartbeat, its process)
                store.set_tags(run_id, {tag("taken_over_from"): ",".join(t for t, _ in taken)})
                say(f"Took over {run_type} {key[:12]} from abandoned {'; '.join(reason for _, reason in taken)}")
            return Claim(run_id=run_id)
        store.delete_run(run_id)  # yield: the other process does the work (or has done it)
        if done is not None:
            return Claim(finished=done)
        if on_wait is not None and not waited:
            on_wait()
            waited = True
        wait_for_holder(store, run_type, key, poll_s, say)


def contest(
    store: Store, run_type: str, key: str, run_id: str, poll_s: float, say: Callable[[str], None]
) -> tuple[bool, list[tuple[str, str]]]:
    """Draw a ticket for claim ``run_id`` and wait until no live rival is still choosing (each such
    wait ends when the rival draws, finishes or stops beating); returns whether this claim is first,
    and the dead claims failed on the way."""
    live, taken = fail_dead(store, running(store, run_type, key), own=run_id)
    ticket = 1 + max((t for r in live if (t := ticket_of(r)) is not None), default=0)
    store.set_tags(run_id, {tag("ticket"): str(ticket)})
    if not store.reads_see_every_write:
        time.sleep(SETTLE_S)
    told: set[str] = set()
    while True:
        live, dead = fail_dead(store, running(store, run_type, key), own=run_id)
        taken += dead
        choosing = [r for r in live if r.run_id != run_id and ticket_of(r) is None]
        if not choosing:
            ranked = sorted((r for r in live if ticket_of(r) is not None), key=lambda r: (ticket_of(r), r.run_id))
            return bool(ranked) and ranked[0].run_id == run_id, taken
        if store.find_finished(run_type, key) is not None:
            return False, taken
        say_once(told, choosing, say, ticket_wait_message)
        time.sleep(poll_s)


def wait_for_holder(store: Store, run_type: str, key: str, poll_s: float, say: Callable[[str], None]) -> None:
    """Wait while another live claim holds the work: until it finishes, fails, or stops beating for
    ``STALE_S`` (judged on this process's clock, so no value the holder writes can stretch it)."""
    told: set[str] = set()
    while store.find_finished(run_type, key) is None:
        live = live_claims(store, run_type, key)
        if not live:
            return
        say_once(told, live, say, holder_wait_message)
        time.sleep(poll_s)


def ticket_wait_message(rec: RunRecord) -> str:
    """The line for a rival claim that has not drawn its ticket yet."""
    return (
        f"Waiting for rival claim {rec.run_id[:8]} on {rec.tag('host') or '?'} to draw its ticket "
        f"(at most {STALE_S:.0f} s without a heartbeat)"
    )


def holder_wait_message(rec: RunRecord) -> str:
    """The line for a live claim that holds the work this one waits for."""
    return (
        f"Waiting for run {rec.run_id[:8]} on {rec.tag('host') or '?'} (pid {rec.tag('pid') or '?'}): "
        f"until it finishes, fails or its heartbeat stops for {STALE_S:.0f} s"
    )


def say_once(
    told: set[str], claims: list[RunRecord], say: Callable[[str], None], message: Callable[[RunRecord], str]
) -> None:
    """Say ``message`` of each claim not yet in ``told`` (and add it there): a wait names each rival once,
    however many polls it lasts."""
    for rec in claims:
        if rec.run_id not in told:
            told.add(rec.run_id)
            say(message(rec))
