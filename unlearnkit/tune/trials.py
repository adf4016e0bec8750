"""One trial's runs: ordinary engine runs with the test split sealed, a wall-time guard around each
method call, and what a trial that yields no value raises."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from unlearnkit.api.contracts import Method
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.config import Plan
from unlearnkit.engine.references import ModelMemo
from unlearnkit.engine.runner import Identity, Runner, Seed
from unlearnkit.store.mlflow_store import Store, tag
from unlearnkit.tune.sealed_split import SealedSplit

T = TypeVar("T")


class TrialFailed(Exception):
    """A trial without a value (a run failed, diverged, ran past its guard, or its options are invalid):
    told to Optuna as FAIL, which counts as one of the method's trials."""


class TrialTimeout(TrialFailed):
    """A method run went past the per-run wall-time guard."""


class TrialReporter(Reporter):
    """Wraps the CLI's reporter for tuning runs: progress bars pass through and enforce the wall-time
    guard (checked at every epoch and step a method reports through ``ctx.track``/``ctx.steps``),
    warnings are shown once, per-run events are left to the tuner's one line per trial."""

    def __init__(self, inner: Reporter = SILENT) -> None:
        self.inner = inner
        self.deadline: float | None = None
        self.what = ""
        self.limit_s = 0.0
        self.seen: set[str] = set()
        self.events = False  # pass the runner's events on (while the references train), or keep quiet

    @contextmanager
    def armed(self, seconds: float, what: str) -> Iterator[None]:
        self.deadline, self.what, self.limit_s = time.monotonic() + seconds, what, seconds
        try:
            yield
            self.check()  # a method that reports no progress is stopped when it returns
        finally:
            self.deadline = None

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.deadline = None
            raise TrialTimeout(f"{self.what} ran past the trial's wall-time guard of {self.limit_s:.0f} s")

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        inner = self.inner.track(iterable, total=total, description=description)
        try:
            for item in inner:
                self.check()
                yield item
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    @contextmanager
    def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        with self.inner.steps(description, total) as advance:

            def step() -> None:
                self.check()
                advance()

            yield step

    def counter(self, description: str, total: int) -> Callable[[], None]:
        return self.inner.counter(description, total)

    def event(self, message: str) -> None:
        if self.events:
            self.inner.event(message)

    def warn(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.inner.warn(message)


class TuningRunner(Runner):
    """A :class:`Runner` for one tuning trial: the test split sealed, a wall-time guard around each
    method call, and the reference rows tagged as tuning runs too (hidden from leaderboards)."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        reporter: TrialReporter,
        *,
        tuning_trial: str,
        memo: ModelMemo | None = None,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__(plan, store, reporter, tuning_trial=tuning_trial, memo=memo)
        self.trial_reporter = reporter
        self.timeout_s = timeout_s

    def prepare_seed(self, seed: int, memorisation: tuple[float, bool] | None = None) -> Seed:
        state = super().prepare_seed(
            seed, memorisation
        )  # references trained on train/retain; memorisation on forget/unseen
        state.splits = {**state.splits, "test": SealedSplit("test")}  # type: ignore[dict-item]
        return state

    def identify(self, entry: Entry[Method], state: Seed, ctx: Any) -> Identity:
        ident = super().identify(entry, state, ctx)
        if entry.cls.role is not None:  # the references at tuning seeds, with the tuning metrics: not for boards
            ident.tags[tag("tuning_trial")] = self.tuning_trial.rsplit("/", 1)[0] + "/reference"
        return ident

    def execute(self, entry: Entry[Method], state: Seed, ctx: Any, options: Any) -> Any:
        if entry.cls.role is not None or self.timeout_s is None:
            return super().execute(entry, state, ctx, options)
        with self.trial_reporter.armed(self.timeout_s, f"{entry.name} (seed {state.seed})"):
            return super().execute(entry, state, ctx, options)


__all__ = ["TrialFailed", "TrialReporter", "TrialTimeout", "TuningRunner"]
