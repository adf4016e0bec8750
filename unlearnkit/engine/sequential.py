"""Successive deletion requests through the runner's stages (a scenario with ``requests > 1``).

Request j of a seed (docs/protocols.md, "sequential"): the method gets the model the previous request
returned (the original for the first), the request's own forget set as D_f and what is still kept as
D_r; the result is measured on everything forgotten so far (requests 1..j), against a model retrained
on what is kept (trained once per step and cached by content like every reference model), the
original and unseen/test as in any run. The run records each metric as a step curve (step = request)
whose last point is its final value, and its mean over the requests as ``<metric>_mean_requests``.
The last request's evaluation is the benchmark's own split (forget = the union, retain = the rest).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from unlearnkit.api.contracts import UnlearnOutcome
from unlearnkit.api.data import Split, UnlearnData
from unlearnkit.api.scenarios import REQUESTS_MEAN_SUFFIX
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.splits import SplitIndices
from unlearnkit.engine.stages import unlearn_copy

if TYPE_CHECKING:
    from unlearnkit.api.context import UnlearnContext
    from unlearnkit.api.contracts import Method
    from unlearnkit.engine.config import Plan
    from unlearnkit.engine.prepared import Benchmark
    from unlearnkit.engine.references import References
    from unlearnkit.engine.seed_state import Seed

Series = list[tuple[str, float, int]]


@dataclass
class Step:
    """One request of a seed: how it is evaluated (``state``) and what the method sees (``given``)."""

    number: int  # 1-based
    state: Seed  # forget = requests 1..number, retain = the rest, the model retrained on it
    given: dict[str, Split]  # the state's splits with forget = this request alone
    forget_class: int | None  # the request's class (a class scenario's), what the method is told


@dataclass
class SequentialResult:
    outcome: UnlearnOutcome  # the last request's
    data: UnlearnData  # the last request's (what the run declares it touched)
    metrics: dict[str, float]  # the last request's, and the means over the requests
    series: Series  # every request's metrics by step, and the method's own per-epoch series


class StepRunner(Protocol):
    """What the requests need of the runner that owns them (the engine's ``Runner``): its
    benchmark, plan and references, a method's context and its evaluation."""

    bench: Benchmark
    plan: Plan
    references: References

    def context(self, state: Seed, method: str) -> UnlearnContext: ...

    def evaluate(
        self, entry: Entry[Method], state: Seed, ctx: UnlearnContext, outcome: UnlearnOutcome
    ) -> dict[str, float]: ...


class Requests:
    """The steps of every seed of one runner, prepared once and shared by its methods."""

    def __init__(self, runner: StepRunner) -> None:
        self.runner = runner
        self._steps: dict[int, list[Step]] = {}

    def steps(self, state: Seed) -> list[Step]:
        if state.seed not in self._steps:
            self._steps[state.seed] = self._prepare(state)
        return self._steps[state.seed]

    def _prepare(self, state: Seed) -> list[Step]:
        bench, idx = self.runner.bench, state.idx
        pool = np.sort(np.concatenate([idx.forget, idx.retain]))
        steps = []
        for number, request in enumerate(idx.requests, 1):
            last = number == len(idx.requests)
            if last:
                at = state
            else:
                so_far = np.sort(np.concatenate([r.indices for r in idx.requests[:number]]))
                step_idx = SplitIndices(
                    so_far,
                    np.setdiff1d(pool, so_far, assume_unique=True),
                    idx.unseen,
                    idx.test,
                    request.forget_class if number == 1 else common_class(idx.requests[:number]),
                    idx.unseen_from,
                )
                splits = bench.splits(step_idx)
                retrained = self.runner.references.get("retrained", state.seed, step_idx, splits)
                at = replace(state, idx=step_idx, splits=splits, retrained=retrained, shared=type(state.shared)())
            given = {**at.splits, "forget": bench.training_split(request.indices, name="forget")}
            steps.append(Step(number, at, given, request.forget_class))
        return steps

    def run(self, entry: Entry[Method], state: Seed) -> SequentialResult:
        """``entry`` applied request after request, each time to the previous request's output."""
        runner = self.runner
        model = state.original.model
        per_step: list[dict[str, float]] = []
        series: Series = []
        steps = self.steps(state)
        for step in steps:
            ctx: UnlearnContext = runner.context(step.state, entry.name)
            ctx.forget_class = step.forget_class
            data = UnlearnData(step.given, entry.cls.splits(), entry.name)
            options = runner.plan.method_options(entry, ctx.setting)
            where = f" (deletion request {step.number})"
            outcome = unlearn_copy(entry, options, model, data, ctx, state.seed, where=where)
            following = copy.deepcopy(outcome.model).eval()  # before evaluation passes can touch it
            per_step.append(runner.evaluate(entry, step.state, ctx, outcome))
            if step.number < len(steps):  # an earlier request's own series, kept under its number
                series += [(f"request{step.number}.{name}", value, at) for name, value, at in ctx.series]
            else:
                series += ctx.series
            model = following
        metrics = {**per_step[-1]}
        for name in sorted(per_step[-1]):
            values = [m.get(name, math.nan) for m in per_step]
            series += [(name, value, number) for number, value in enumerate(values, 1)]
            metrics[f"{name}{REQUESTS_MEAN_SUFFIX}"] = float(np.mean(values))
        return SequentialResult(outcome, data, metrics, series)


def common_class(requests: tuple) -> int | None:
    classes = {r.forget_class for r in requests}
    return classes.pop() if len(classes) == 1 else None


__all__ = ["Requests", "SequentialResult", "Step"]
