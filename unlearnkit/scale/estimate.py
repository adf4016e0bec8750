"""What a sweep, a tuning study or an audit will cost, worked out before anything is paid.

The runs and reference models a job needs are named by the identities the runner itself would
compute (the data is loaded and split, nothing is trained or evaluated), so "in the store" means
exactly what the job would skip. The wall time of what is left comes from the store's own
measurements: the median time of finished runs of the same method (or reference training) on
the same dataset and model (a training measured on other epochs or another subset is scaled by the
images it trains). Where the store has none, the figure is a stated guess (:data:`GUESS_IMAGES_PER_S`
for a training, a share :data:`GUESS_RUN_SHARE` of it for a method run), and the estimate says so.
Nothing is written: a store or an experiment that is not there yet is read as empty, never made.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np

from unlearnkit.api.contracts import UnlearnOutcome
from unlearnkit.engine.config import Plan
from unlearnkit.engine.references import Reference
from unlearnkit.engine.runner import Runner, Seed
from unlearnkit.errors import counted
from unlearnkit.identity import config_hash, file_sha256
from unlearnkit.scale.sweep import Sweep
from unlearnkit.store.health import experiment_problem
from unlearnkit.store.mlflow_store import DEFAULT_EXPERIMENT, RunRecord, Store

# Used only when the store holds no finished run to measure. A training is priced by the images it
# trains (epochs x training images) at a small CPU model's pace: the compact CNN trains about 4,000
# digits a second on one core, so a guess stays within a few times of what the shipped CPU recipes
# measure, and grows with --epochs and --subset as the real time does.
GUESS_IMAGES_PER_S = 2000.0
GUESS_TRAIN_S = 60.0  # one reference model, where the images it trains are not known
GUESS_RUN_SHARE = 0.25  # one method run (evaluation included): this share of an original's training
GUESS_RUN_S = 20.0  # one method run, where no training of its plan is priced


@dataclass(frozen=True)
class Pace:
    """Seconds per run of one kind, and where the figure comes from."""

    seconds: float
    measured: int  # finished runs it is measured on; 0: a guess
    what: str  # e.g. "lotus on digits/cnn"
    statistic: str = "median"  # how the measured runs' times are combined
    basis: str = ""  # how a guess, or a measured pace scaled to other work, was worked out

    @property
    def guessed(self) -> bool:
        return self.measured == 0

    def describe(self) -> str:
        if self.guessed:
            return f"{self.what}: guess, {self.seconds:.3g} s{self.basis} (no finished run in the store)"
        return f"{self.what}: {self.seconds:.2f} s, the {self.statistic} of {self.measured} finished runs{self.basis}"


#: the outcome's own timing field; the runtime metric logs the method's seconds under its name
OUTCOME_SECONDS = next(f.name for f in fields(UnlearnOutcome) if f.name.endswith("_s"))


def run_seconds(record: RunRecord) -> float:
    """A finished method run's cost: the method's own time plus its evaluation. A reference row
    only evaluates (its model trained in its own run), so its ``time_s`` is not counted."""
    own = 0.0 if record.tag("role") else record.metrics.get(OUTCOME_SECONDS, math.nan)
    return own + record.metrics.get("eval_time_s", 0.0)


def packing(record: RunRecord) -> int:
    """How many models a reference training was packed with (1: trained alone)."""
    text = record.tag("models_per_device")
    return int(text) if text.isascii() and text.isdigit() else 1  # a store's tag: outside input


def trained_images(record: RunRecord) -> float:
    """The images a finished training forwarded (epochs x its split), NaN where it did not log them."""
    return record.metrics.get("train_images", math.nan)


def guess_training(images: int | None) -> tuple[float, str]:
    """A training's guessed seconds and how they were guessed: by the images it trains when known."""
    if images is None:
        return GUESS_TRAIN_S, ""
    return images / GUESS_IMAGES_PER_S, f" ({images:,} images at {GUESS_IMAGES_PER_S:,.0f} images/s)"


class Paces:
    """Per-run times read from the store, once per (run type, dataset, model)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._records: dict[tuple[str, str, str], list[RunRecord]] = {}

    @cached_property
    def unread(self) -> str | None:
        """None where the store holds the job's experiment (its runs are read). Else nothing is read, so
        nothing is made by a search either: "" for a store or default experiment not made yet, or the line
        that names a misspelt ``--experiment`` and those the store holds."""
        if not self.store.exists():
            return ""
        problem = experiment_problem(self.store)
        if not problem:
            return None
        return "" if self.store.experiment_name == DEFAULT_EXPERIMENT else problem

    def search(self, filters: dict[str, str]) -> list[RunRecord]:
        """The store's finished runs matching ``filters``; none (and nothing made) where it is unread."""
        return [] if self.unread is not None else self.store.search(filters)

    def records(self, run_type: str, dataset: str, model: str) -> list[RunRecord]:
        key = (run_type, dataset, model)
        if key not in self._records:
            self._records[key] = self.search({"run_type": run_type, "dataset": dataset, "model": model})
        return self._records[key]

    def train(
        self, role: str, dataset: str, model: str, per_device: int | None = 1, *, images: int | None = None
    ) -> Pace:
        """A reference model's training time: the median ``train_time_s`` of its role's finished
        trainings, at the packing asked for (``per_device`` models at once, None: any pack) where the
        store has such trainings, else at any packing (and the pace says so). ``images``: what this
        training forwards (epochs x its split); trainings that forwarded other counts (other --epochs
        or --subset) price it at their median images per second, not at their own seconds."""
        done = [
            r
            for r in self.records("train", dataset, model)
            if r.tag("role") == role and math.isfinite(r.metrics.get("train_time_s", math.nan))
        ]
        packed = [r for r in done if packing(r) == per_device or (per_device is None and packing(r) > 1)]
        what = f"{role} training on {dataset}/{model}"
        if per_device != 1:
            what += f", {per_device or 'auto'} per device"
            if not packed and done:
                what += " (measured at other packings)"
        chosen = packed or done
        if not chosen:
            seconds, basis = guess_training(images)
            return Pace(seconds, 0, what, basis=basis)
        same = [r for r in chosen if images is None or trained_images(r) == images]
        if same or images is None:
            return Pace(statistics.median(r.metrics["train_time_s"] for r in same), len(same), what)
        return scaled_training(chosen, images, what)

    def run(self, method: str, dataset: str, model: str, *, guess: float = GUESS_RUN_S) -> Pace:
        """A method run's time: the median of :func:`run_seconds` over its finished runs, else ``guess``."""
        times = [
            s
            for r in self.records("unlearn", dataset, model)
            if r.tag("method") == method and math.isfinite(s := run_seconds(r))
        ]
        what = f"{method} on {dataset}/{model}"
        if times:
            return Pace(statistics.median(times), len(times), what)
        basis = "" if guess == GUESS_RUN_S else f" ({GUESS_RUN_SHARE:g} of an original's training)"
        return Pace(guess, 0, what, basis=basis)


def scaled_training(records: list[RunRecord], images: int, what: str) -> Pace:
    """``images`` priced at the median images per second of trainings that forwarded other counts."""
    rates = [
        t / n
        for r in records
        if (n := trained_images(r)) > 0 and math.isfinite(n) and (t := r.metrics["train_time_s"]) > 0
    ]
    if not rates:  # trainings from before images were logged: their own seconds, unscaled
        return Pace(statistics.median(r.metrics["train_time_s"] for r in records), len(records), what)
    per_image = statistics.median(rates)
    basis = f", scaled to {images:,} images at their {1 / per_image:,.0f} images/s (they trained other counts)"
    return Pace(images * per_image, len(rates), what, basis=basis)


@dataclass
class Estimate:
    """What a job needs, what the store already holds, and the time the rest should take."""

    label: str
    runs_total: int = 0
    runs_in_store: int = 0
    models_total: int = 0  # reference models the job trains itself (not files the user brought)
    models_in_store: int = 0  # ... of which the store (or an earlier cell of the job) holds
    seconds: float = 0.0
    paces: dict[str, Pace] = field(default_factory=dict)  # every pace a figure used, by what it prices
    notes: list[str] = field(default_factory=list)  # what the counts rest on (e.g. an experiment not there)

    @property
    def runs_to_do(self) -> int:
        return self.runs_total - self.runs_in_store

    @property
    def models_to_train(self) -> int:
        return self.models_total - self.models_in_store

    @property
    def guessed(self) -> list[Pace]:
        return [p for p in self.paces.values() if p.guessed]

    def charge(self, pace: Pace, count: int = 1) -> None:
        """Add ``count`` runs at ``pace``; a pace that prices nothing here is not listed."""
        if count <= 0:
            return
        self.seconds += count * pace.seconds
        self.paces[pace.what] = pace

    def summary(self) -> str:
        """One line: runs to do and in the store, reference models to train and reused, the time."""
        time = (
            "nothing to compute" if self.runs_to_do == self.models_to_train == 0 else f"about {minutes(self.seconds)}"
        )
        if self.guessed and time != "nothing to compute":
            unmeasured = len(self.guessed)
            time += (
                " (a guess: the store has no finished run to measure)"
                if unmeasured == len(self.paces)
                else f" (partly a guess: {unmeasured} of {len(self.paces)} paces unmeasured)"
            )
        return (
            f"{self.label}: {counted(self.runs_to_do, 'run')} to do, {self.runs_in_store} in the store; "
            f"{counted(self.models_to_train, 'reference model')} to train, {self.models_in_store} reused; {time}."
        )

    def add(self, other: Estimate) -> None:
        self.runs_total += other.runs_total
        self.runs_in_store += other.runs_in_store
        self.models_total += other.models_total
        self.models_in_store += other.models_in_store
        self.seconds += other.seconds
        self.paces.update(other.paces)
        self.notes += [note for note in other.notes if note not in self.notes]


class PlanEstimator:
    """Estimates plans against one store; reference models shared between plans are counted once
    (a sweep trains each once and reuses it in every cell)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.paces = Paces(store)
        self.planned: set[str] = set()  # reference models an earlier plan of this job already counted

    def plan(
        self,
        plan: Plan,
        label: str,
        *,
        grid_point: str = "",
        sweep: str = "",
        tuning_trial: str = "",
        references_only: bool = False,
    ) -> Estimate:
        """``plan``'s runs and reference models, by the identities :class:`Runner` computes.
        ``references_only``: the reference models and reference rows alone (a study's shared part)."""
        runner = Runner(plan, self.store, grid_point=grid_point, sweep=sweep, tuning_trial=tuning_trial)
        bench = runner.bench
        dataset, model = plan.dataset.name, plan.model_name
        runs_done = self.finished_keys({"run_type": "unlearn", "benchmark": bench.key})
        models_done = self.finished_keys({"run_type": "train", "dataset": dataset, "model": model})
        est = Estimate(label, notes=self.notes())
        for seed in plan.seeds:
            idx = bench.indices(seed)
            refs: dict[str, Reference | None] = {}
            for role in ("original", "retrained"):
                key, trains = self.reference_key(runner, role, seed, idx)
                refs[role] = None if key is None else Reference(role, cast(Any, None), math.nan, key)
                if key is None or not trains:
                    continue
                est.models_total += 1
                if key in models_done or key in self.planned:
                    est.models_in_store += 1
                else:
                    self.planned.add(key)
                    images = training_images(plan, role, idx)
                    est.charge(self.paces.train(role, dataset, model, plan.models_per_device, images=images))
            guess = run_guess(self.paces, plan, idx)
            original = refs["original"]
            assert original is not None
            state = Seed(seed, idx, {}, original, refs["retrained"])
            for entry in plan.methods:
                if references_only and entry.cls.role is None:
                    continue
                ident = runner.identify(entry, state, runner.context(state, entry.name))
                est.runs_total += 1
                if ident.key in runs_done:
                    est.runs_in_store += 1
                else:
                    est.charge(self.paces.run(entry.name, dataset, model, guess=guess))
        return est

    def finished_keys(self, filters: dict[str, str]) -> set[str]:
        return {r.tag("config_hash") for r in self.paces.search(filters)}

    def notes(self) -> list[str]:
        """A misspelt ``--experiment``: said, as every run then counts as to do."""
        return notes(self.paces)

    @staticmethod
    def reference_key(runner: Runner, role: str, seed: int, idx: Any) -> tuple[str | None, bool]:
        """A reference model's identity as :class:`References` computes it, and whether the job trains
        it (False: a file the user brought; None: no gold standard at all)."""
        request = runner.plan.request
        if role == "retrained" and request.no_retrain:
            return None, False
        brought = request.original if role == "original" else request.retrained
        if brought is not None:
            return f"file:{file_sha256(Path(brought))[:20]}", False
        indices = np.sort(np.concatenate([idx.forget, idx.retain])) if role == "original" else idx.retain
        return config_hash(runner.references.identity(role, seed, indices)), True


def training_images(plan: Plan, role: str, idx: Any) -> int:
    """The images a reference training forwards: every epoch its split (forget and retain for the original)."""
    size = len(idx.retain) + (len(idx.forget) if role == "original" else 0)
    return plan.train_recipe.epochs * size


def run_guess(paces: Paces, plan: Plan, idx: Any) -> float:
    """A method run with no finished run to measure: a share of the plan's original training (its measured
    pace where the store has one, else its guess), so the guess grows with the data and the epochs."""
    images = training_images(plan, "original", idx)
    return GUESS_RUN_SHARE * paces.train("original", plan.dataset.name, plan.model_name, images=images).seconds


def notes(paces: Paces) -> list[str]:
    """What an estimate's counts rest on: a store that holds no experiment of the name asked for."""
    return [f"{paces.unread} Every run is counted as to do."] if paces.unread else []


def estimate_trials(estimator: PlanEstimator, plan: Plan, label: str, *, trials: int, done: int, idx: Any) -> Estimate:
    """A tuning study of ``plan``'s method: ``trials`` trials of one run per seed, ``done`` of them
    finished; each trial to do priced at the method's pace on the benchmark's dataset and model.
    ``idx``: the split of the cell's first seed (:func:`first_indices`, once per cell), which a guess reads."""
    est = Estimate(label, notes=notes(estimator.paces))
    learners = [e for e in plan.methods if e.cls.role is None]
    per_trial = len(learners) * len(plan.seeds)
    done = min(done, trials)
    est.runs_total, est.runs_in_store = trials * per_trial, done * per_trial
    guess = run_guess(estimator.paces, plan, idx)
    for entry in learners:
        pace = estimator.paces.run(entry.name, plan.dataset.name, plan.model_name, guess=guess)
        est.charge(pace, (trials - done) * len(plan.seeds))
    return est


def estimate_audit(
    paces: Paces,
    plan: Plan,
    label: str,
    *,
    models: tuple[int, int, float],
    runs: tuple[int, int, float],
    idx: Any,
) -> Estimate:
    """An audit cell: ``models`` and ``runs`` are (total, to do, the audit's own mean seconds, NaN when
    none is cached) for its shadow models and its method runs. Without its own times, a shadow model
    is priced as an ordinary reference training and a method run as the methods' ordinary runs, on
    ``idx`` (the split of the cell's first seed, from the benchmark the cell already loaded)."""
    est = Estimate(label, runs_total=runs[0], runs_in_store=runs[0] - runs[1], notes=notes(paces))
    est.models_total, est.models_in_store = models[0], models[0] - models[1]
    if math.isfinite(models[2]):
        model_pace = Pace(models[2], est.models_in_store, f"shadow model of {label}", "mean")
    else:
        model_pace = ordinary_training(paces, plan, idx)
    if math.isfinite(runs[2]):
        run_pace = Pace(runs[2], est.runs_in_store, f"method run of {label}", "mean")
    else:
        run_pace = ordinary_run(paces, plan, idx)
    est.charge(model_pace, models[1])
    est.charge(run_pace, runs[1])
    return est


def first_indices(paces: Paces, plan: Plan) -> Any:
    """The split of ``plan``'s first seed, as its runner computes it (the data loaded: once per cell)."""
    return Runner(plan, paces.store).bench.indices(plan.seeds[0])


def ordinary_training(paces: Paces, plan: Plan, idx: Any) -> Pace:
    """A shadow or ensemble model priced as the mean of the cell's original and retrained trainings
    (the measured ones where the store has some). A shadow trains on fewer images than the original:
    an upper bound. Named "reference model", as an ensemble's own lines call its models."""
    dataset, model = plan.dataset.name, plan.model_name
    trainings = [
        paces.train(role, dataset, model, plan.models_per_device, images=training_images(plan, role, idx))
        for role in ("original", "retrained")
    ]
    measured = [p for p in trainings if not p.guessed]
    seconds = statistics.fmean(p.seconds for p in measured or trainings)
    what = f"reference model (an original or retrained training on {dataset}/{model})"
    basis = "" if measured else f" (the mean of {' and '.join(p.basis.strip(' ()') for p in trainings)})"
    return Pace(seconds, sum(p.measured for p in measured), what, basis=basis)


def ordinary_run(paces: Paces, plan: Plan, idx: Any) -> Pace:
    """An audit's method run priced as the mean of its methods' ordinary runs (measured where there are)."""
    dataset, model = plan.dataset.name, plan.model_name
    learners = [e.name for e in plan.methods if e.cls.role is None]
    guess = run_guess(paces, plan, idx)
    each = [paces.run(name, dataset, model, guess=guess) for name in learners]
    measured = [p for p in each if not p.guessed]
    seconds = statistics.fmean(p.seconds for p in measured or each) if each else guess
    what = f"method run ({', '.join(learners)} on {dataset}/{model})"
    return Pace(seconds, sum(p.measured for p in measured), what, basis="" if measured or not each else each[0].basis)


def estimate_sweep(sweep: Sweep) -> list[Estimate]:
    """One estimate per cell of ``sweep``, reference models shared between its cells counted once."""
    estimator = PlanEstimator(sweep.store)
    return [
        estimator.plan(plan, cell.label, grid_point=cell.grid_point, sweep=sweep.name) for cell, plan in sweep.plans
    ]


def total(label: str, parts: list[Estimate]) -> Estimate:
    out = Estimate(label)
    for part in parts:
        out.add(part)
    return out


def report_lines(title: str, parts: list[Estimate]) -> list[str]:
    """What ``--estimate`` prints: a line per part, the total, and every pace with its basis."""
    whole = total(title, parts)
    lines = [part.summary() for part in parts] if len(parts) > 1 else []
    lines.append(whole.summary())
    lines += [f"  pace: {pace.describe()}" for pace in sorted(whole.paces.values(), key=lambda p: p.what)]
    if whole.guessed:
        lines.append(
            f"  A guess prices a training at {GUESS_IMAGES_PER_S:,.0f} images/s (a small CPU model; {GUESS_TRAIN_S:g} s "
            f"where its images are not known) and a method run at {GUESS_RUN_SHARE:g} of an original's training "
            f"({GUESS_RUN_S:g} s where none is priced); finished runs of the same method, dataset and model replace "
            "it with their measured times."
        )
    lines += [f"  {note}" for note in whole.notes]
    return lines


def minutes(seconds: float) -> str:
    """A duration as people plan with it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "GUESS_IMAGES_PER_S",
    "GUESS_RUN_S",
    "GUESS_RUN_SHARE",
    "GUESS_TRAIN_S",
    "Estimate",
    "Pace",
    "Paces",
    "PlanEstimator",
    "estimate_audit",
    "estimate_sweep",
    "estimate_trials",
    "minutes",
    "report_lines",
    "run_seconds",
    "total",
]
