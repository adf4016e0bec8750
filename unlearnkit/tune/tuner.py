"""``unlearnkit tune``: every method tuned with the same budget, on data the reported table never uses.

Papers tune their own method and run the baselines on defaults, so a ranking measures tuning
effort. Here every method of a recipe gets the same number of trials and the same per-trial
compute cap, chosen by a seeded Optuna TPE sampler through ask-and-tell; each trial is an ordinary
unlearnkit run (:class:`~.trials.TuningRunner`, tagged as a tuning trial and hidden from leaderboards),
so the store's caching, claims and resumption apply. The honesty rules (docs/tuning.md), enforced
by the :class:`Tuner` and, for the test split, by :mod:`.sealed_split`:

* the objective reads forget-, retain- and unseen-derived quantities only: the ``test`` split of a
  tuning run is sealed (:class:`SealedSplit`: any use raises :class:`TestSplitAccessError`, which
  stops the tuning); a probe on sealed splits sorts the registered metrics into those that compute
  without it and those that read it, and the latter are evaluated as ``NAME_unseen`` stand-ins
  with the unseen half of the official test split in the test half's place (:func:`stand_in`);
* tuning seeds are disjoint from the recipe's reporting seeds (overlap is refused);
* a fixed forget set (the paper's first-10 % rule, ``first:N``) is tuned on a ``random:`` forget
  set of the same size, since the fixed rule would tune on the reported forget set;
* every method gets the same trials and the same cap: ``--epoch-cap`` times the original's
  training epochs as its epoch option, and a wall-time guard per run.

A killed ``tune`` resumes: finished trials are kept, a trial whose process died is run again with its
parameters (its finished seeds come from the store; owners and storage: :mod:`.studies`), and trial
``n`` is always drawn with the sampler seeded by ``(sampler seed, n)``, so an interrupted study draws
what an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from unlearnkit._version import __version__
from unlearnkit.api.contracts import Method, Metric
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.search_space import Categorical, IntRange, Param, parse_space, space_table
from unlearnkit.discovery.registry import Entry, Registries
from unlearnkit.engine.config import Plan, RunRequest, method_parts, parse_seeds, validate
from unlearnkit.engine.references import ModelMemo
from unlearnkit.engine.splits import parse_scenario
from unlearnkit.errors import ConfigError, counted
from unlearnkit.identity import CORE_VERSION, config_hash, plugin_version
from unlearnkit.scale.sweep_recipes import RecipeFile, expand, load_recipe
from unlearnkit.store.interrupts import deferred
from unlearnkit.store.mlflow_store import Store, tag
from unlearnkit.tune.objective import Objective, objective_names, resolve_objective
from unlearnkit.tune.recipe_toml import dump_toml
from unlearnkit.tune.sealed_split import MetricSets, SealedSplit, probe_metrics, stand_in
from unlearnkit.tune.studies import check_database_url, owner, owner_alive, study_storage
from unlearnkit.tune.trials import TrialFailed, TrialReporter, TuningRunner

DEFAULT_TUNE_SEEDS = (1, 2)
DEFAULT_EPOCH_CAP = 0.1  # about the paper's ratio: 10 unlearning epochs for a 150-epoch original
STARTUP_TRIALS = 5  # TPE's random start: trials drawn before the model of good and bad trials takes over
TIMEOUT_FLOOR_S = 60.0  # the automatic wall-time guard is never below this
TIMEOUT_RETRAINS = 2.0  # ... and otherwise this many retrainings: unlearning that costs more has no point
PENALTY_ATTR = "failure"


def random_stand_in(registries: Registries) -> Entry:
    """The scenario tuning uses in place of a scenario that is the same set at every seed: the
    registered one that draws a seeded random fraction of the training set at every seed."""
    found = [e for e in registries.scenarios.entries() if e.cls.draws_per_seed and e.cls.by_fraction]
    if not found:
        raise ConfigError("No registered scenario draws a random fraction at every seed: tuning has no stand-in.")
    return found[0]


@dataclass
class TuningCell:
    """One benchmark of the recipe, as tuning runs it."""

    label: str
    request: RunRequest  # the recipe's (reporting) request
    scenario: str = ""  # the forget scenario tuning runs use
    scenario_note: str = ""
    timeout_s: float | None = None


@dataclass
class MethodResult:
    """One method's study: its budget, its best trial, its cost."""

    method: str
    study: str
    space: dict[str, Any]
    fixed: dict[str, Any]
    trials: int = 0
    complete: int = 0
    failed: int = 0
    best_value: float = float("nan")
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    default_value: float = float("nan")  # the trial that ran the method's own defaults, if any
    wall_s: float = 0.0  # the trials' wall time, summed over every session of the study
    method_s: float = 0.0  # the unlearning calls alone (time_s of every run), summed
    new_trials: int = 0  # run by this session
    mlflow_run: str = ""

    @property
    def best_options(self) -> dict[str, Any]:
        return {**self.fixed, **self.best_params}


@dataclass
class TuneReport:
    recipe: str
    objective: str
    tune_seeds: list[int]
    trials: int
    storage: str
    methods: list[MethodResult] = field(default_factory=list)
    references_s: float = 0.0
    wall_s: float = 0.0


class Tuner:
    """A recipe's methods tuned under one budget: validated in the constructor, run by :meth:`run`."""

    sampler_startup: ClassVar[int] = STARTUP_TRIALS

    def __init__(
        self,
        recipe: str | Path,
        registries: Registries,
        store: Store,
        *,
        methods: list[str],
        trials: int,
        tune_seeds: str | list[int] | None = None,
        objective: str = "avg_gap",
        epoch_cap: float = DEFAULT_EPOCH_CAP,
        trial_timeout: float | None = None,
        study_storage: str | None = None,
        sampler_seed: int = 0,
        epochs: int | None = None,
        subset: str | None = None,
        data_dir: Path | None = None,
        device: str | None = None,
    ) -> None:
        self.path = Path(recipe)
        self.spec: RecipeFile = load_recipe(recipe, registries)
        self.registries = registries
        self.store = store
        if trials < 1:
            raise ConfigError(f"Bad --trials {trials}: every method needs at least one trial.")
        self.trials = trials
        if not 0 < epoch_cap <= 1 or math.isnan(epoch_cap):
            raise ConfigError(f"Bad --epoch-cap {epoch_cap}: a fraction of the original's epochs in (0, 1].")
        self.epoch_cap = epoch_cap
        if trial_timeout is not None and not (math.isfinite(trial_timeout) and trial_timeout > 0):  # nan is not <= 0
            raise ConfigError(f"Bad --trial-timeout {trial_timeout}: expected a finite number of seconds > 0.")
        self.trial_timeout = trial_timeout
        objective_names(objective, registries)  # syntax and names now; test-split readers after the probe
        self.objective = Objective(objective, ())
        self.metric_sets = MetricSets()
        self.stand_ins: list[Entry[Metric]] = []
        self.cost_metric = next((e.name for e in registries.metrics.entries() if e.cls.cost_axis), "")
        self.sampler_seed = sampler_seed
        self.storage_arg = study_storage
        if study_storage and "://" in study_storage:
            check_database_url(study_storage)  # now, not after the references are prepared
        self.overrides = {"epochs": epochs, "subset": subset, "data_dir": data_dir}
        self.report_seeds = list(self.spec.seeds)
        self.tune_seeds = parse_seeds(tune_seeds if tune_seeds is not None else list(DEFAULT_TUNE_SEEDS))
        overlap = sorted(set(self.tune_seeds) & set(self.report_seeds))
        if overlap:
            free = [s for s in range(1, 1000) if s not in self.report_seeds][: len(self.tune_seeds)]
            raise ConfigError(
                f"Tuning seeds {', '.join(map(str, overlap))} are reporting seeds of recipe '{self.spec.name}' "
                f"({', '.join(map(str, self.report_seeds))}): tune on disjoint seeds, "
                f"e.g. --tune-seeds {','.join(map(str, free))}."
            )
        self.methods = self._methods(methods)
        self.cells = self._cells({**self.overrides, "device": device})
        self.spaces = {m: self._space(m) for m in self.methods}
        self.memo: ModelMemo = {}
        self.reporter = TrialReporter()
        self.prepared = False
        self.cap_epochs = 0
        self.fixed: dict[str, dict[str, Any]] = {}
        self.defaults: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------ checks
    def _methods(self, names: list[str]) -> list[str]:
        out: list[str] = []
        for part in method_parts(names):
            entry = self.registries.methods.get(part)
            if entry.cls.role is not None:
                raise ConfigError(f"'{part}' is a reference row ({entry.cls.role}), not a method to tune.")
            if "test" in entry.cls.splits():
                raise ConfigError(f"Method '{part}' reads the test split: it cannot be tuned without seeing it.")
            out.append(part)
        if not out:
            raise ConfigError("Name the methods to tune: --method M [--method ...].")
        grid = sorted(set(out) & set(self.spec.grid))
        if grid:
            raise ConfigError(
                f"Recipe '{self.spec.name}' has a [grid.{grid[0]}] table: tune searches {grid[0]}'s options "
                "itself; drop the grid (or tune another method)."
            )
        return list(dict.fromkeys(out))

    def _space(self, method: str) -> dict[str, Any]:
        entry = self.registries.methods.get(method)
        table = self.spec.tune.get(method)
        where = f"[tune.{method}] of recipe '{self.path}'" if table is not None else f"method '{method}'"
        space = parse_space(table if table is not None else entry.cls.search_space, where)
        if not space:
            raise ConfigError(
                f"Method '{method}' declares no search space: give one in a [tune.{method}] table (docs/tuning.md)."
            )
        unknown = sorted(set(space) - set(entry.cls.Options.model_fields))
        if unknown:
            valid = ", ".join(sorted(entry.cls.Options.model_fields))
            raise ConfigError(f"Search space of {where} names unknown option '{unknown[0]}'. Valid options: {valid}.")
        return space

    def _cells(self, overrides: dict[str, Any]) -> list[TuningCell]:
        spec = self.spec.model_copy(update={"grid": {}})
        cells = []
        for cell in expand(spec, overrides, registries=self.registries):
            request = cell.request
            protocol = validate(replace(request, methods=[self.methods[0]], options={}), self.registries).protocol
            if protocol.membership_pass_first:
                raise ConfigError(
                    f"Protocol '{protocol.name}' forwards the test split in its membership pass: tune under the "
                    "clean protocol (the tuned options then serve either protocol)."
                )
            if request.no_retrain or request.retrained is not None:
                raise ConfigError(
                    "Tuning measures the gap to a retrained model trained at each tuning seed: drop no_retrain / retrained."
                )
            scenario = parse_scenario(request.forget, self.registries.scenarios)
            if not (scenario.draws_per_seed or scenario.tuning_stand_in):
                raise ConfigError(
                    f"Forget scenario '{request.forget}' is the same set at every seed, so tuning on it would tune on "
                    "the reported forget set: tune a recipe with a random: scenario of similar size instead."
                )
            cells.append(TuningCell(cell.label, request))
        return cells

    # ----------------------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """What needs the data: the tuning forget sets, the epoch cap in each method's epochs, the
        defaults' trial. Still nothing trained."""
        if self.prepared:
            return
        from unlearnkit.engine.memorisation import score_source
        from unlearnkit.engine.prepared import Benchmark
        from unlearnkit.engine.splits import make_splits

        caps = []
        setting = None
        for cell in self.cells:
            plan = validate(
                replace(cell.request, methods=[self.methods[0]], options={}, seeds=list(self.tune_seeds)),
                self.registries,
            )
            bench = Benchmark(plan, scores=score_source)
            caps.append(bench.train_recipe.epochs)
            cell.scenario = plan.scenario.key
            if plan.scenario.tuning_stand_in:  # the same set at every seed: tune on a random set of its size
                idx = bench.indices(self.report_seeds[0])
                n_forget, n_train = len(idx.forget), len(idx.forget) + len(idx.retain)
                cell.scenario = f"{random_stand_in(self.registries).name}:{n_forget / n_train!r}"
                raw = bench.raw
                got = make_splits(
                    raw.y_train,
                    raw.y_test,
                    parse_scenario(cell.scenario, self.registries.scenarios),
                    self.tune_seeds[0],
                    raw.class_names,
                    plan.subset,
                    groups=raw.groups,
                    y_unseen=raw.y_unseen,
                )
                assert len(got.forget) == n_forget, (len(got.forget), n_forget)
                cell.scenario_note = (
                    f"{plan.scenario.key} is the same set at every seed: tuned on {n_forget} random images"
                )
            if setting is None:  # the first cell: the metric probe, on its splits at a tuning seed
                setting = bench.setting()
                self.metric_sets = self.probe(bench)
        self.stand_ins = [stand_in(e) for e in self.metric_sets.reads_test]
        self.objective = resolve_objective(self.objective.name, self.registries, self.metric_sets)
        if min(caps) < 1:
            raise ConfigError("--epoch-cap needs a trained original: the recipe trains it for 0 epochs.")
        self.cap_epochs = max(1, round(self.epoch_cap * min(caps)))
        assert setting is not None
        for method in self.methods:
            entry = self.registries.methods.get(method)
            fixed = dict(self.spec.options.get(method, {}))
            space = self.spaces[method]
            if "epochs" in entry.cls.Options.model_fields:
                if isinstance(space.get("epochs"), IntRange):
                    space["epochs"] = space["epochs"].capped(self.cap_epochs)
                    fixed.pop("epochs", None)
                else:
                    space.pop("epochs", None)
                    fixed["epochs"] = self.cap_epochs
            for name in space:
                fixed.pop(name, None)
            self._check_bounds(entry, fixed, space, setting)
            self.fixed[method] = fixed
            defaults = entry.cls.parse_options(fixed, defaults=entry.cls.default_options(setting)).model_dump()
            chosen = {k: defaults.get(k) for k in space}
            self.defaults[method] = chosen if all(inside(space[k], v) for k, v in chosen.items()) else {}
        self.prepared = True

    def probe(self, bench: Any) -> MetricSets:
        """Every registered metric computed once on an untrained network's outputs with the test split
        sealed: which ones read it (no training, one pass over forget, retain and unseen)."""
        from unlearnkit.engine.prepared import seed_everything

        seed = self.tune_seeds[0]
        idx = bench.indices(seed)
        splits = {**bench.splits(idx), "test": SealedSplit("test")}
        seed_everything(seed)
        model = bench.build_model().eval()
        ctx = bench.context(seed, idx.forget_class)
        ev = Evaluation({"unlearned": model, "original": model, "retrained": model}, splits, ctx)
        return probe_metrics(self.registries, ev)

    def _check_bounds(self, entry: Entry[Method], fixed: dict[str, Any], space: dict[str, Any], setting: Any) -> None:
        for name, spec in space.items():
            for value in spec.bounds():
                try:
                    entry.cls.parse_options({**fixed, name: value}, defaults=entry.cls.default_options(setting))
                except ConfigError as err:
                    raise ConfigError(f"Search space of '{entry.name}', {name} = {spec.describe()}: {err}") from None

    def study_name(self, method: str) -> str:
        entry = self.registries.methods.get(method)
        # what changes no number (original_min_retain only judges the original), and fields added
        # after a study was named that still hold their default (a None thread count): either way
        # the study's name, and so its resumption, must not move
        ignore: tuple[str, ...] = (
            "methods",
            "options",
            "seeds",
            "metrics",
            "device",
            "save_models",
            "data_dir",
            "compile",
        )
        ignore += ("original_min_retain",)
        unset_later = {"threads": None}
        config = {
            "core": CORE_VERSION,
            "recipe": self.spec.name,
            "cells": [
                {
                    k: v
                    for k, v in asdict(c.request).items()
                    if k not in ignore and not (k in unset_later and v == unset_later[k])
                }
                | {"tuning_forget": c.scenario}
                for c in self.cells
            ],
            "method": plugin_version(entry),
            "space": space_table(self.spaces[method]),
            "fixed": self.fixed[method],
            "tune_seeds": self.tune_seeds,
            "objective": list(self.objective.metrics),
            "sampler_seed": self.sampler_seed,
        }
        return f"tune-{self.spec.name}-{method}-{config_hash(config)[:8]}"

    def sampler(self, number: int) -> Any:
        """TPE seeded by (sampler seed, trial number): trial n is drawn alike whether or not the study was interrupted."""
        import optuna

        seed = int(config_hash({"sampler_seed": self.sampler_seed, "trial": number})[:8], 16)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.sampler_startup)

    # --------------------------------------------------------------------------------- run
    def run(self, reporter: Reporter = SILENT) -> TuneReport:
        import optuna

        started = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.reporter = TrialReporter(reporter)
        self.store.check()
        self.prepare()
        storage, where = study_storage(self.store, self.storage_arg)
        report = TuneReport(self.spec.name, self.objective.name, list(self.tune_seeds), self.trials, where)
        for cell in self.cells:
            if cell.scenario_note:
                reporter.event(f"{cell.label}: {cell.scenario_note} ({cell.scenario})")
        sets = self.metric_sets
        reporter.event(
            f"Tuning runs evaluate {', '.join(sets.names)} (test-split readers as _unseen stand-ins); "
            f"objective {self.objective.name} over {', '.join(self.objective.metrics)}"
        )
        for name, why in sets.failing.items():
            reporter.warn(f"Metric '{name}' is left out of tuning runs: it fails on the probe ({why}).")
        report.references_s = self.train_references(reporter)
        for method in self.methods:
            report.methods.append(self.tune_method(method, storage, reporter))
        report.wall_s = time.perf_counter() - started
        return report

    def plan(self, cell: TuningCell, method: str, options: Mapping[str, Any]) -> Plan:
        request = replace(
            cell.request,
            methods=[method],
            options={f"{method}.{k}": v for k, v in options.items()},
            seeds=list(self.tune_seeds),
            metrics=[e.name for e in self.metric_sets.clean],
            forget=cell.scenario,
            save_models=False,  # trial models are never reused: keep no artifact
        )
        plan = validate(request, self.registries)
        plan = replace(plan, metrics=[*plan.metrics, *self.stand_ins])  # a Plan is immutable
        return plan

    def train_references(self, reporter: Reporter) -> float:
        """The original and retrained models at every tuning seed, before any trial: shared by every
        method, so no method's tuning time carries them; also sets each cell's automatic guard."""
        start = time.perf_counter()
        self.reporter.events = True
        for cell in self.cells:
            method = self.methods[0]
            plan = self.plan(cell, method, self.fixed[method])
            runner = TuningRunner(plan, self.store, self.reporter, tuning_trial="references/0", memo=self.memo)
            runner.check()
            seconds = []
            for seed in plan.seeds:
                state = runner.prepare_seed(seed)
                if state.retrained is not None:
                    seconds.append(state.retrained.seconds)
                for entry in plan.methods:  # the reference rows, evaluated once with the tuning metrics
                    if entry.cls.role is not None:
                        runner.run_method(entry, state)
            longest = max(seconds) if seconds else float("nan")
            auto = max(TIMEOUT_FLOOR_S, TIMEOUT_RETRAINS * longest) if math.isfinite(longest) else 600.0
            cell.timeout_s = self.trial_timeout or auto
            reporter.event(
                f"{cell.label}: references ready at tuning seeds {', '.join(map(str, plan.seeds))}; "
                f"wall-time guard {cell.timeout_s:.0f} s per run"
            )
        self.reporter.events = False
        return time.perf_counter() - start

    def tune_method(self, method: str, storage: Any, reporter: Reporter) -> MethodResult:
        import optuna
        from optuna.trial import TrialState

        name = self.study_name(method)
        result = MethodResult(method, name, space_table(self.spaces[method]), dict(self.fixed[method]))
        study = optuna.create_study(
            study_name=name, storage=storage, direction="minimize", load_if_exists=True, sampler=self.sampler(0)
        )
        if not study.user_attrs:
            study.set_user_attr("recipe", self.spec.name)
            study.set_user_attr("method", method)
            study.set_user_attr("objective", self.objective.name)
            study.set_user_attr("tune_seeds", list(self.tune_seeds))
            study.set_user_attr("space", result.space)
            study.set_user_attr("fixed", result.fixed)
        if not study.trials and self.defaults[method]:
            study.enqueue_trial(self.defaults[method], user_attrs={"defaults": True})
        distributions = {k: spec.distribution() for k, spec in self.spaces[method].items()}
        before = len(self.finished(study.get_trials(deepcopy=False)))
        again = f"; {before} of them finished before, not run again" if before else ""
        reporter.event(f"Tuning {method}: study {name}, {counted(self.trials, 'trial')}{again}")
        # a trial whose process died (killed tune): run again with its parameters; its finished seeds are in the store
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number < self.trials and not owner_alive(str(frozen.user_attrs.get("owner", ""))):
                trial = optuna.trial.Trial(study, frozen._trial_id)
                trial.set_user_attr("owner", owner())
                reporter.event(f"{method} trial {frozen.number}: resumed (its process is gone)")
                self.run_trial(study, trial, frozen.number, dict(frozen.params), method, reporter)
                result.new_trials += 1
        while True:
            trials = study.get_trials(deepcopy=False)
            waiting = [t for t in trials if t.state == TrialState.WAITING]
            if not waiting and len(trials) >= self.trials:
                break
            study.sampler = self.sampler(waiting[0].number if waiting else len(trials))
            with deferred():  # Ctrl-C or SIGTERM after the ask, not between it and the owner's record
                trial = study.ask(distributions)
                trial.set_user_attr("owner", owner())
            self.run_trial(study, trial, trial.number, dict(trial.params), method, reporter)
            result.new_trials += 1
        beyond = len(study.get_trials(deepcopy=False)) - self.trials
        if beyond > 0:
            reporter.event(
                f"{method}: study {name} holds {counted(beyond, 'trial')} past --trials {self.trials}: left out, "
                "so every method is judged on the same budget"
            )
        self.summarise(study, result)
        result.mlflow_run = self.log_study(result)
        return result

    def run_trial(
        self, study: Any, trial: Any, number: int, params: dict[str, Any], method: str, reporter: Reporter
    ) -> None:
        from optuna.trial import TrialState

        start = time.perf_counter()
        options = {**self.fixed[method], **params}
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
        try:
            value, info = self.evaluate(method, number, study.study_name, options)
        except TrialFailed as err:
            trial.set_user_attr(PENALTY_ATTR, str(err))
            trial.set_user_attr("wall_s", time.perf_counter() - start)
            study.tell(number, state=TrialState.FAIL)
            reporter.warn(f"{method} trial {number} ({shown}) failed: {err}")
            return
        wall = time.perf_counter() - start
        for key, val in {**info, "wall_s": wall}.items():
            trial.set_user_attr(key, val)
        study.tell(number, value)
        reporter.event(
            f"{method} trial {number}/{self.trials}: {self.objective.name} {value:.4f} ({shown}) in {wall:.1f} s"
        )

    def evaluate(self, method: str, number: int, study: str, options: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """The objective of one trial: every cell, every tuning seed, as ordinary (tagged) runs."""
        gaps: list[float] = []
        per_seed: dict[str, float] = {}
        runs: list[str] = []
        method_s = 0.0
        for cell in self.cells:
            try:
                plan = self.plan(cell, method, options)
            except ConfigError as err:
                raise TrialFailed(f"invalid options: {err}") from None
            gold_name = next(e.name for e in plan.methods if e.cls.role == "retrained")
            runner = TuningRunner(
                plan,
                self.store,
                self.reporter,
                tuning_trial=f"{study}/{number}",
                memo=self.memo,
                timeout_s=cell.timeout_s,
            )
            results = runner.run()
            gold = {r.seed: r.metrics for r in results if r.method == gold_name}
            for r in results:
                if r.method != method:
                    continue
                if r.status == "failed":
                    raise TrialFailed(f"seed {r.seed}: {r.failure}")
                value = self.objective.gap(r.metrics, gold[r.seed])
                gaps.append(value)
                per_seed[f"{cell.label} s{r.seed}"] = value
                runs.append(r.run_id)
                method_s += float(r.metrics.get(self.cost_metric, 0.0))
        value = statistics.fmean(gaps)
        if not math.isfinite(value):
            raise TrialFailed(f"the objective is {value}")
        return value, {"per_seed": per_seed, "runs": runs, "method_s": method_s}

    def summarise(self, study: Any, result: MethodResult) -> None:
        from optuna.trial import TrialState

        trials = self.budget(study.get_trials(deepcopy=False))
        result.trials = len(trials)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        result.complete = len(done)
        result.failed = sum(t.state == TrialState.FAIL for t in trials)
        result.wall_s = sum(float(t.user_attrs.get("wall_s", 0.0)) for t in trials)
        result.method_s = sum(float(t.user_attrs.get("method_s", 0.0)) for t in trials)
        defaults = [t for t in done if t.user_attrs.get("defaults")]
        if defaults:
            result.default_value = float(defaults[0].value)
        if done:
            best = min(done, key=lambda t: (t.value, t.number))  # the first of equal values: deterministic
            result.best_value, result.best_trial, result.best_params = float(best.value), best.number, dict(best.params)

    def finished(self, trials: list[Any]) -> list[Any]:
        """The trials of this budget that are done for good: complete, or failed (a failed trial counts
        as one of the method's trials and is not run again)."""
        from optuna.trial import TrialState

        return [t for t in self.budget(trials) if t.state in (TrialState.COMPLETE, TrialState.FAIL)]

    def budget(self, trials: list[Any]) -> list[Any]:
        """The trials this session's ``--trials`` covers: numbers 0 .. trials-1. A study run before with more
        trials holds later ones; counted, they would give that method a larger budget than the others.
        Trial n is drawn from trials 0 .. n-1 alone, so these are exactly what a study of this size holds."""
        return [t for t in trials if t.number < self.trials]

    def log_study(self, result: MethodResult) -> str:
        """One MLflow run per study (``run_type=tuning``): its budget, best trial and total tuning time."""
        filters = {"run_type": "tuning", "study": result.study}
        found = self.store.search(filters)
        if found:
            run_id = found[0].run_id
        else:
            tags = {
                tag("run_type"): "tuning",
                tag("study"): result.study,
                tag("method"): result.method,
                tag("recipe"): self.spec.name,
                tag("objective"): self.objective.name,
            }
            params = {
                "tune_seeds": ",".join(map(str, self.tune_seeds)),
                "objective_metrics": ",".join(self.objective.metrics),
                "epoch_cap": self.epoch_cap,
                "cap_epochs": self.cap_epochs,
                "sampler": f"TPE seed {self.sampler_seed}, {self.sampler_startup} random start",
                "space": json.dumps(result.space, sort_keys=True),
                "fixed": json.dumps(result.fixed, sort_keys=True, default=str),
                "tuning_forget": ",".join(c.scenario for c in self.cells),
            }
            run_id = self.store.start_run(result.study, tags, params)
        metrics = {
            "trials": float(result.trials),
            "trials_complete": float(result.complete),
            "trials_failed": float(result.failed),
            "tuning_wall_s": result.wall_s,
            "tuning_method_s": result.method_s,
            "best_value": result.best_value,
            "default_value": result.default_value,
        }
        self.store.log_metrics(run_id, metrics)
        best = json.dumps(result.best_params, sort_keys=True) if result.best_trial is not None else ""
        self.store.set_tags(run_id, {tag("best_params"): best, tag("best_trial"): str(result.best_trial)})
        if not found:
            self.store.finish(run_id)
        return run_id

    # ----------------------------------------------------------------------------- writing
    def write_recipe(self, path: str | Path, report: TuneReport) -> Path:
        """The recipe with each tuned method's best options as ``[options.M]`` and its provenance as
        comments; reporting runs it on the recipe's (reporting) seeds like any other recipe."""
        path = Path(path)
        tuned = [m for m in report.methods if m.best_trial is not None]
        if not tuned:
            raise ConfigError("No method has a finished trial: nothing to write.")
        doc = self.spec.model_dump(exclude_unset=True, mode="python")
        for key in ("tune", "grid"):
            doc.pop(key, None)
        for key, value in self.overrides.items():
            if value is not None:
                doc[key] = str(value) if isinstance(value, Path) else value
        doc["name"] = path.stem
        doc["description"] = (
            f"{', '.join(m.method for m in tuned)} tuned by `unlearnkit tune` from recipe '{self.spec.name}': "
            f"{self.trials} trials each, objective {self.objective.name}, tuning seeds "
            f"{','.join(map(str, self.tune_seeds))}; report on the seeds below."
        )
        doc["methods"] = [m.method for m in tuned]
        doc["options"] = {m.method: m.best_options for m in tuned}
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = [
            f"Written by `unlearnkit tune {self.path}` on {date} (unlearnkit {__version__}).",
            f"Budget per method: {self.trials} trials, epoch cap {self.epoch_cap:g} x the original's epochs "
            f"= {self.cap_epochs} epochs, a seeded TPE sampler (seed {self.sampler_seed}).",
            f"Objective: {self.objective.name} = mean |unlearned - retrained| over {', '.join(self.objective.metrics)}, "
            f"on tuning seeds {', '.join(map(str, self.tune_seeds))} (disjoint from the reporting seeds below);",
            "the test split was never read. Forget sets tuned on: "
            + "; ".join(f"{c.label} -> {c.scenario}" for c in self.cells)
            + ".",
            f"Report: unlearnkit sweep {path}",
        ]
        notes = {
            m.method: [
                f"{m.method}: study {m.study}; {counted(m.trials, 'trial')} ({m.complete} complete, {m.failed} failed);",
                f"best {self.objective.name} {m.best_value:.4f} at trial {m.best_trial}"
                + (f" (the method's defaults: {m.default_value:.4f})" if math.isfinite(m.default_value) else "")
                + f"; tuning time {m.wall_s:.1f} s ({m.method_s:.1f} s unlearning).",
                "searched: " + "; ".join(f"{k} {self.spaces[m.method][k].describe()}" for k in self.spaces[m.method]),
            ]
            for m in tuned
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_toml(doc, header, notes), encoding="utf-8")
        check = load_recipe(path)
        for m in tuned:  # the file reproduces the best options exactly
            assert check.options[m.method] == m.best_options, (check.options[m.method], m.best_options)
        return path


def inside(spec: Param, value: Any) -> bool:
    """Whether ``value`` is a point of the spec (the defaults' trial needs every default inside)."""
    if value is None:
        return False
    if isinstance(spec, Categorical):
        return value in spec.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(spec, IntRange):
        return float(value).is_integer() and spec.low <= value <= spec.high and (value - spec.low) % spec.step == 0
    return bool(spec.low <= value <= spec.high)


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["DEFAULT_EPOCH_CAP", "DEFAULT_TUNE_SEEDS", "MethodResult", "TuneReport", "Tuner"]
