"""One benchmark cell's U-LiRA audit: shadow models, the audited methods on each, scores, all in the store.

Three kinds of store runs, each keyed by a config hash and claimed (:mod:`unlearnkit.claims`), so a killed
audit resumes where it stopped and a second audit, method or machine reuses what exists:

- ``run_type=train``, roles ``shadow-original`` / ``shadow-retrained``: the K shadow models, through
  :meth:`~unlearnkit.references.References.train_or_reuse` (keyed like every reference model: the
  benchmark's model identity, role, seed and the training indices' fingerprint);
- ``run_type=audit-shadow``: what scoring needs from one row on one shadow — the logits of the audited pool
  followed by those of the retained audit's sample (one checksummed ``logits`` artifact, pool rows first),
  for a method on a shadow original, or for the shadow models themselves (the ``original`` and ``retrain``
  rows). Re-scoring (another ``--mode``, fixed variance or not) reads these and never re-forwards a model;
  unlearned shadow models are not kept;
- ``run_type=audit``: one row's result (``ulira_*`` metrics — AUC, TPRs, direction, over-unlearned share,
  the retained audit, bootstrap intervals —, the per-example scores as ``scores.npz`` and ``scores.csv``),
  tagged with the benchmark key, method, shadows and mode — what the leaderboard merges.

The shadow design and the scoring are in :mod:`unlearnkit.audit.design`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit.api.contracts import Method
from unlearnkit.api.data import Split, UnlearnData
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.audit.design import (
    MIN_SHADOWS,
    POWER_Z,
    PowerCheck,
    RowScores,
    ShadowDesign,
    make_design,
    mode_label,
    one_request,
    power_check,
    retained_metrics,
    score_row,
    scores_csv,
    shadow_seed,
)
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.config import Plan
from unlearnkit.engine.memorisation import score_source
from unlearnkit.engine.prepared import Benchmark
from unlearnkit.engine.references import ModelMemo, Reference, References, Wanted
from unlearnkit.engine.splits import SplitIndices
from unlearnkit.engine.stages import owned, row_tags, unlearn_copy
from unlearnkit.errors import ConfigError, DivergenceError, UnlearnkitError
from unlearnkit.identity import array_fingerprint, config_hash, plugin_version
from unlearnkit.loops.packing import AUTO_CAP
from unlearnkit.store import claims
from unlearnkit.store.health import holds_experiment
from unlearnkit.store.mlflow_store import CorruptCheckpoint, RunRecord, Store, tag

#: Bump when what a row's pool logits are changes (how methods are run on shadows, which examples are
#: forwarded): every cached audit-shadow run is recomputed. Shadow models are keyed by the core and stay valid.
#: 2: the retained audit's sample is forwarded after the pool.
LOGITS_VERSION = 2
#: Bump when the scoring (:mod:`unlearnkit.audit.design`, ``scoring``) or the sanity check changes a number or
#: a verdict: every audit row is re-scored from the cached logits (no training, no forward pass).
#: 3: direction, over-unlearned share, bootstrap intervals and the retained audit.
AUDIT_VERSION = 3
SHADOW_ORIGINAL = "shadow-original"
SHADOW_RETRAINED = "shadow-retrained"
SHADOW_ROLES = (SHADOW_ORIGINAL, SHADOW_RETRAINED)
#: LiRA's advice: below this many shadows, one variance pooled over examples beats per-example ones.
FIXED_VARIANCE_BELOW = 64


@dataclass(frozen=True)
class AuditSettings:
    """What an audit is, besides its benchmark: shadows, test, variance, seed."""

    shadows: int = 16
    mode: str = "online"
    fixed_variance: bool | None = None  # None: fixed below FIXED_VARIANCE_BELOW shadows
    seed: int = 3407

    def __post_init__(self) -> None:
        if self.shadows < MIN_SHADOWS:
            raise ConfigError(f"Bad --shadows {self.shadows}: a U-LiRA audit needs at least {MIN_SHADOWS} shadows.")
        if self.mode not in ("online", "offline"):
            raise ConfigError(f"Bad --mode '{self.mode}'. Valid modes: online, offline.")

    @property
    def variance_fixed(self) -> bool:
        return self.fixed_variance if self.fixed_variance is not None else self.shadows < FIXED_VARIANCE_BELOW

    @property
    def variance_note(self) -> str:
        """Why per-example variances change nothing here (empty: they do). Online at K = 4, leave-one-out and
        balancing leave every example one observation a side, so each fit falls back to the pooled variance."""
        if self.variance_fixed or self.mode != "online" or self.shadows > MIN_SHADOWS:
            return ""
        return (
            f"Per-example variance (--per-example-variance) changes nothing at {self.shadows} shadows online: "
            "after leave-one-out and balancing each example has one observation a side, so every fit uses the "
            "pooled variance (the numbers of --fixed-variance, under another label); more shadows give "
            "per-example variances."
        )

    def describe(self) -> str:
        variance = "fixed variance" if self.variance_fixed else "per-example variance"
        return f"{self.shadows} shadows, {mode_label(self.mode)}, {variance}, seed {self.seed}"


@dataclass
class AuditRow:
    """One row of an audit table: a method (or a reference) and its U-LiRA numbers."""

    method: str
    role: str  # "original", "retrained" or "" (an unlearning method)
    status: str  # "finished", "skipped" (already in the store) or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN
    run_id: str = ""
    failure: str = ""


@dataclass
class Estimate:
    """What an audit cell will cost, from its recipe and what the store already holds."""

    label: str
    shadows: int
    models_total: int  # 2 per shadow (original + retrain)
    models_to_train: int
    method_runs_total: int  # methods x shadows (references excluded: their logits are one forward)
    method_runs_to_do: int
    audits_total: int
    audits_done: int
    models_shared: int = 0  # of models_total, those an earlier cell of the job trains or finds (counted there)
    model_seconds: float = math.nan  # mean training time of this audit's cached shadow models
    run_seconds: float = math.nan  # mean time of this audit's cached method runs

    @property
    def seconds(self) -> float:
        """Expected compute left, from cached timings (NaN when nothing is cached yet)."""
        parts = []
        if self.models_to_train:
            parts.append(self.models_to_train * self.model_seconds)
        if self.method_runs_to_do:
            parts.append(self.method_runs_to_do * self.run_seconds)
        return float(sum(parts)) if parts else 0.0

    def text(self) -> str:
        cached_models = self.models_total - self.models_to_train - self.models_shared
        cached_runs = self.method_runs_total - self.method_runs_to_do
        shared = f", {self.models_shared} shared with an earlier cell" if self.models_shared else ""
        line = (
            f"Audit {self.label}: {self.shadows} shadows -> {self.models_to_train} of {self.models_total} shadow "
            f"models to train ({cached_models} in the store{shared}), {self.method_runs_to_do} of {self.method_runs_total} "
            f"method runs to do ({cached_runs} in the store), {self.audits_done} of {self.audits_total} rows scored"
        )
        if self.audits_done == self.audits_total:
            return line + ": nothing to compute."
        seconds = self.seconds
        if seconds == 0:
            return line + ": scoring only."
        if math.isnan(seconds):
            return line + "."
        return line + f"; about {seconds / 60:.1f} min at the cached runs' pace."


@dataclass
class CellReport:
    """A finished audit cell: its rows, the sanity verdict, what it cost."""

    label: str
    benchmark: str
    settings: AuditSettings
    rows: list[AuditRow]
    power: PowerCheck | None
    underpowered: bool
    pool: int
    estimate: Estimate
    wall_s: float = 0.0
    models_trained: int = 0
    method_runs: int = 0

    @property
    def failed(self) -> list[AuditRow]:
        return [r for r in self.rows if r.status == "failed"]


class AuditRunner:
    """The U-LiRA audit of one validated plan (one recipe cell) against a store."""

    def __init__(
        self, plan: Plan, store: Store, settings: AuditSettings, reporter: Reporter = SILENT, label: str = ""
    ) -> None:
        self.plan = plan
        self.store = store
        self.settings = settings
        self.reporter = reporter
        self.bench = Benchmark(plan, reporter, scores=score_source)
        self.bench.store = store  # memorisation scores may read the shadow originals from it
        self.label = label or f"{plan.dataset.name}/{plan.model_name}/{plan.scenario.key}"
        self._done: dict[tuple[str, str], RunRecord] = {}
        self._failed: dict[str, str] = {}  # row -> failure
        self._keys: dict[tuple[str, int], str] = {}
        self._packed: ModelMemo = {}  # shadow models trained in packs, until their shadow's pass takes them
        self._pack_splits: dict[int, dict[str, Split]] = {}  # ... and the splits they were trained on

    # ------------------------------------------------------------------------------------ set-up
    def check(self, *, writes: bool = True) -> None:
        """Everything that needs the data and the store, before anything trains (``writes`` False: an
        estimate, which makes nothing: :meth:`Store.check`)."""
        one_request(self.plan.scenario.key, self.plan.scenario.requests, "a U-LiRA audit")
        self.bench.check()
        self.store.check(writes=writes)
        design = self.design
        if len(design.pool) < 2:
            raise ConfigError(
                f"Audit {self.label}: the audit pool (the forget set) has {len(design.pool)} example; an audit "
                "needs at least 2 to rank: give a larger forget set."
            )
        if len(design.pool) == len(design.universe):
            raise ConfigError(f"Audit {self.label}: the forget set is the whole training set; nothing is retained.")

    @cached_property
    def idx(self) -> SplitIndices:
        return self.bench.indices(self.settings.seed)

    @cached_property
    def design(self) -> ShadowDesign:
        return make_design(self.idx.forget, self.idx.retain, self.settings.shadows, self.settings.seed)

    @cached_property
    def labels(self) -> np.ndarray:
        return np.asarray(self.bench.raw.y_train[self.design.pool]).astype(np.int64)

    @cached_property
    def retained_labels(self) -> np.ndarray:
        return np.asarray(self.bench.raw.y_train[self.design.retained]).astype(np.int64)

    def forward_split(self, indices: np.ndarray) -> Split:
        """Training examples as a split to forward (evaluation transforms, like the benchmark's forget set)."""
        idx = self.idx
        pick = SplitIndices(indices, indices[:0], idx.unseen, idx.test, idx.forget_class, idx.unseen_from)
        return self.bench.splits(pick)["forget"]

    @cached_property
    def pool_split(self) -> Split:
        return self.forward_split(self.design.pool)

    @cached_property
    def retained_split(self) -> Split:
        return self.forward_split(self.design.retained)

    @property
    def forwarded(self) -> int:
        """Rows of a logits artifact: the pool, then the retained sample."""
        return len(self.design.pool) + len(self.design.retained)

    @property
    def entries(self) -> list[Entry[Method]]:
        return list(self.plan.methods)

    def seed_of(self, k: int) -> int:
        return shadow_seed(self.settings.seed, k)

    def shadow_indices(self, k: int) -> SplitIndices:
        d, idx = self.design, self.idx
        return SplitIndices(d.forget(k), d.retain(k), idx.unseen, idx.test, idx.forget_class, idx.unseen_from)

    def trained_on(self, role: str, k: int) -> np.ndarray:
        return self.design.trained_on(k) if role == SHADOW_ORIGINAL else self.design.retain(k)

    # ---------------------------------------------------------------------------------- identity
    def model_key(self, role: str, k: int) -> str:
        """The store key :meth:`References.train_or_reuse` gives shadow model ``k``: its own formula
        (a pinned thread count included), so the two cannot drift apart."""
        return config_hash(self.references.identity(role, self.seed_of(k), self.trained_on(role, k)))

    @cached_property
    def references(self) -> References:
        """Identities only: the shadows' models are trained by a References of their own, one shadow at a time."""
        return References(self.bench, self.store, self.reporter, memo={})

    def options(self, entry: Entry[Method]) -> dict[str, Any]:
        return self.plan.method_options(entry, self.bench.setting()).model_dump()

    def shadow_key(self, entry: Entry[Method], k: int) -> str:
        """Identity of one row's pool logits on shadow ``k`` (computed once per row and shadow)."""
        cached = self._keys.get((entry.name, k))
        if cached is None:
            cached = self._keys[(entry.name, k)] = self._shadow_key(entry, k)
        return cached

    def _shadow_key(self, entry: Entry[Method], k: int) -> str:
        base: dict[str, Any] = {
            "audit_version": LOGITS_VERSION,
            "pool": array_fingerprint(self.design.pool),
            "retained": array_fingerprint(self.design.retained),
        }
        role = entry.cls.role
        if role == "original":
            return config_hash({**base, "model": self.model_key(SHADOW_ORIGINAL, k)})
        if role == "retrained":
            return config_hash({**base, "model": self.model_key(SHADOW_RETRAINED, k)})
        return config_hash(
            {
                **base,
                "method": plugin_version(entry),
                "options": self.options(entry),
                "seed": self.seed_of(k),
                "splits": self.shadow_indices(k).fingerprint(),
                "original": self.model_key(SHADOW_ORIGINAL, k),
                "retrained": self.model_key(SHADOW_RETRAINED, k),
                "returned_mode": self.plan.protocol.returned_mode,
            }
        )

    @cached_property
    def group_key(self) -> str:
        """Identity of the audit all rows of this cell share (the leaderboard groups rows by it)."""
        s = self.settings
        return config_hash(
            {
                "audit_version": AUDIT_VERSION,
                "benchmark": self.bench.key,
                "seed": s.seed,
                "shadows": s.shadows,
                "mode": s.mode,
                "fixed_variance": s.variance_fixed,
                "design": self.design.fingerprint(),
            }
        )

    def audit_key(self, entry: Entry[Method]) -> str:
        ident: dict[str, Any] = {
            "group": self.group_key,
            "method": plugin_version(entry),
            "shadow_runs": [self.shadow_key(entry, k) for k in range(self.settings.shadows)],
        }
        if entry.cls.role is None:
            ident["options"] = self.options(entry)
        return config_hash(ident)

    # ---------------------------------------------------------------------------- store look-ups
    def prefetch(self) -> None:
        """Every finished run this audit could reuse, in a few searches (not one per key)."""
        done: dict[tuple[str, str], RunRecord] = {}
        # an estimate under an experiment not made yet reads nothing: a search would make it
        if holds_experiment(self.store):
            plan = self.plan
            for role in SHADOW_ROLES:
                for rec in self.store.search(
                    {"run_type": "train", "role": role, "dataset": plan.dataset.name, "model": str(plan.model_name)}
                ):
                    done.setdefault(("train", rec.tag("config_hash")), rec)
            for run_type in ("audit-shadow", "audit"):
                for rec in self.store.search({"run_type": run_type, "benchmark": self.bench.key}):
                    done.setdefault((run_type, rec.tag("config_hash")), rec)
        self._done = done

    def finished(self, run_type: str, key: str) -> RunRecord | None:
        return self._done.get((run_type, key))

    def estimate(self, counted: set[str] | None = None) -> Estimate:
        """Models to train and method runs to do, from the store (call after :meth:`check`).
        ``counted``: the shadow models earlier cells of the job count (updated): cells of two
        scenarios share their shadow originals, which the run trains once."""
        counted = set() if counted is None else counted
        self.prefetch()
        k_all = range(self.settings.shadows)
        pending = [e for e in self.entries if self.finished("audit", self.audit_key(e)) is None]
        needed = self.needed_rows(pending)
        models_to_train = method_runs_to_do = shared = 0
        model_times: list[float] = []
        run_times: list[float] = []
        for k in k_all:
            missing = self.missing_rows(needed, k)
            wants = self.wanted_roles(missing)
            for role in SHADOW_ROLES:
                key = self.model_key(role, k)
                rec = self.finished("train", key)
                if key in counted:
                    shared += 1
                elif rec is not None:
                    model_times.append(rec.metrics.get("train_time_s", math.nan))
                    counted.add(key)
                elif wants[role]:
                    models_to_train += 1
                    counted.add(key)
            method_runs_to_do += sum(1 for e in missing if e.cls.role is None)
            for e in self.entries:
                rec = self.finished("audit-shadow", self.shadow_key(e, k))
                if rec is not None and e.cls.role is None:
                    run_times.append(rec.metrics.get("seconds", math.nan))
        learners = sum(1 for e in self.entries if e.cls.role is None)
        return Estimate(
            label=self.label,
            shadows=self.settings.shadows,
            models_total=2 * self.settings.shadows,
            models_to_train=models_to_train,
            models_shared=shared,
            method_runs_total=learners * self.settings.shadows,
            method_runs_to_do=method_runs_to_do,
            audits_total=len(self.entries),
            audits_done=len(self.entries) - len(pending),
            model_seconds=_mean(model_times),
            run_seconds=_mean(run_times),
        )

    def missing_rows(self, needed: list[Entry[Method]], k: int) -> list[Entry[Method]]:
        """The rows whose logits on shadow ``k`` the store does not hold."""
        return [e for e in needed if self.finished("audit-shadow", self.shadow_key(e, k)) is None]

    @staticmethod
    def wanted_roles(missing: list[Entry[Method]]) -> dict[str, bool]:
        """Which shadow models ``missing`` rows run on: the original for every row but the retrain
        row, which is the retrained model itself (a method reaches that one only if it asks)."""
        return {
            SHADOW_ORIGINAL: any(e.cls.role != "retrained" for e in missing),
            SHADOW_RETRAINED: any(e.cls.role == "retrained" for e in missing),
        }

    def needed_rows(self, pending: list[Entry[Method]]) -> list[Entry[Method]]:
        """Rows whose logits are needed: the pending ones, plus both references (the sanity check)."""
        if not pending:
            return []
        names = {e.name for e in pending}
        return [e for e in self.entries if e.name in names or e.cls.role in ("original", "retrained")]

    # ---------------------------------------------------------------------------------- driver
    def run(self) -> CellReport:
        started = time.perf_counter()
        estimate = self.estimate()
        self.reporter.event(f"Audit {self.label}: {self.settings.describe()}, {len(self.design.pool)} audited examples")
        pending = [e for e in self.entries if self.finished("audit", self.audit_key(e)) is None]
        rows: dict[str, AuditRow] = {}
        for entry in self.entries:
            rec = self.finished("audit", self.audit_key(entry))
            if rec is not None:
                rows[entry.name] = AuditRow(
                    entry.name, entry.cls.role or "", "skipped", dict(rec.metrics), _notes(rec), rec.run_id
                )
        report = CellReport(self.label, self.bench.key, self.settings, [], None, False, len(self.design.pool), estimate)
        if pending:
            logits = self.collect(self.needed_rows(pending), estimate, report)
            live = {name: np.stack(per_shadow) for name, per_shadow in logits.items() if name not in self._failed}
            n = len(self.design.pool)
            scored = {name: self.score(arr[:, :n], self.labels, self.design.masks()) for name, arr in live.items()}
            kept = {
                name: self.score(arr[:, n:], self.retained_labels, self.design.retained_masks())
                for name, arr in live.items()
            }
            ref = {e.cls.role: e.name for e in self.entries if e.cls.role in ("original", "retrained")}
            for role, name in ref.items():
                if name in self._failed:
                    raise UnlearnkitError(
                        f"Audit {self.label}: the {role} reference row failed ({self._failed[name]})."
                    )
            report.power = power_check(scored[ref["original"]], scored[ref["retrained"]], seed=self.settings.seed)
            for entry in pending:
                if entry.name in self._failed:
                    rows[entry.name] = AuditRow(
                        entry.name, entry.cls.role or "", "failed", failure=self._failed[entry.name]
                    )
                    continue
                rows[entry.name] = self.record(entry, scored[entry.name], kept[entry.name], report.power)
        report.rows = [rows[e.name] for e in self.entries]
        if report.power is None:  # every row in the store: the verdict as the first run computed it
            report.power = self.stored_power()
        report.underpowered = self.underpowered(report)
        report.wall_s = time.perf_counter() - started
        return report

    def score(self, logits: np.ndarray, labels: np.ndarray, masks: tuple[np.ndarray, np.ndarray]) -> RowScores:
        """One row's leave-one-out scores over one audited sample (the pool, or the retained sample)."""
        return score_row(
            logits,
            labels,
            *masks,
            mode=self.settings.mode,  # type: ignore[arg-type]
            fixed_variance=self.settings.variance_fixed,
            seed=self.settings.seed,
        )

    def stored_power(self) -> PowerCheck | None:
        """The sanity check as the stored reference rows recorded it, so that a resumed audit reports its
        numbers (AUCs, threshold) as the first run did; None when a row or one of its numbers is missing."""
        records = {e.cls.role: self.finished("audit", self.audit_key(e)) for e in self.entries if e.cls.role}
        original, retrain = records.get("original"), records.get("retrained")
        if original is None or retrain is None:
            return None
        numbers = (
            original.metrics.get("ulira_auc", math.nan),
            retrain.metrics.get("ulira_auc", math.nan),
            original.metrics.get("ulira_power_threshold", math.nan),
        )
        if any(math.isnan(v) for v in numbers):
            return None
        return PowerCheck(*numbers, ok=original.tag("ulira_power") == "ok")

    def underpowered(self, report: CellReport) -> bool:
        """The sanity verdict: computed now, or read back from the rows already in the store."""
        if report.power is not None:
            return not report.power.ok
        records = [self.finished("audit", self.audit_key(e)) for e in self.entries]
        return any(rec is not None and rec.tag("ulira_power") == "underpowered" for rec in records)

    # ------------------------------------------------------------------------------- the shadows
    def collect(self, needed: list[Entry[Method]], estimate: Estimate, report: CellReport) -> dict[str, list]:
        """Every needed row's pool logits on every shadow: loaded from the store or computed now."""
        shadows = self.settings.shadows
        logits: dict[str, list] = {e.name: [None] * shadows for e in needed}
        advance_shadow = self.reporter.counter(f"audit {self.label}: shadows", shadows)
        advance_model = self.reporter.counter(f"audit {self.label}: shadow models to train", estimate.models_to_train)
        advance_run = self.reporter.counter(f"audit {self.label}: method runs", estimate.method_runs_to_do)
        chunk = self.shadows_per_pack()
        for k in range(shadows):
            if chunk and k % chunk == 0:  # the next shadows' models, trained together before they are visited
                for _ in range(self.pack_shadows(needed, range(k, min(k + chunk, shadows)))):
                    report.models_trained += 1
                    advance_model()
            self.shadow_pass(k, needed, logits, advance_model, advance_run, report)
            advance_shadow()
        return logits

    def shadows_per_pack(self) -> int:
        """Shadows whose models are trained in one call (two models each; 0: one model at a time):
        twice as many models as train at once, so a worker that finishes a short retrain takes the
        next model instead of waiting. Only these weights wait in memory for their shadows' visit."""
        per_device = self.plan.models_per_device
        if per_device == 1:
            return 0
        return per_device or AUTO_CAP

    def pack_shadows(self, needed: list[Entry[Method]], shadows: range) -> int:
        """Train the models of ``shadows`` that the rows still need, ``models_per_device`` at a time,
        before those shadows are visited (each then takes its models from memory, stored under the
        keys :meth:`model_key` computes). Returns how many it trained."""
        wanted: list[Wanted] = []
        for k in shadows:
            wants = self.wanted_roles(self.missing_rows(needed, k))
            roles = [r for r in SHADOW_ROLES if wants[r] and self.finished("train", self.model_key(r, k)) is None]
            if roles:
                splits = self._pack_splits[k] = self.bench.splits(self.shadow_indices(k))
                for role in roles:
                    split = splits["train"] if role == SHADOW_ORIGINAL else splits["retain"]
                    wanted.append(Wanted(role, self.seed_of(k), split, self.trained_on(role, k)))
        refs = References(self.bench, self.store, self.reporter, memo=self._packed)
        trained = refs.train_many(wanted, self.plan.models_per_device)
        if trained:
            self.prefetch()  # the packed models are in the store now
        return trained

    def load_logits(self, record: RunRecord) -> np.ndarray | None:
        """A stored row's logits on one shadow, or None (warned, the run failed, recomputed by the caller):
        its sha256 only proves the file is the one recorded, so its content is checked before it is scored."""
        try:
            state = self.store.load_checkpoint(record, name="logits")
        except CorruptCheckpoint as err:
            self.reporter.warn(f"{err} Recomputing it.")
            self.store.fail(record.run_id, f"logits corrupt: {err}")
            self._done.pop(("audit-shadow", record.tag("config_hash")), None)
            return None
        arr = state.get("logits") if isinstance(state, dict) else None
        problem = logits_problem(arr, self.forwarded, self.bench.raw.num_classes)
        if problem:
            self.reporter.warn(f"Logits of run {record.run_id} are unusable ({problem}): recomputing them.")
            self.store.fail(record.run_id, f"logits unusable: {problem}")
            self._done.pop(("audit-shadow", record.tag("config_hash")), None)
            return None
        assert isinstance(arr, torch.Tensor)  # logits_problem says so
        return arr.numpy()

    def shadow_pass(
        self,
        k: int,
        needed: list[Entry[Method]],
        logits: dict[str, list],
        advance_model: Callable[[], None],
        advance_run: Callable[[], None],
        report: CellReport,
    ) -> None:
        """Shadow ``k``: reuse the rows' logits in the store; train (or reuse) its models and run the
        methods only for what is missing."""
        missing = []
        for entry in needed:
            if entry.name in self._failed:
                continue
            rec = self.finished("audit-shadow", self.shadow_key(entry, k))
            got = self.load_logits(rec) if rec is not None else None
            if got is None:
                missing.append(entry)
            else:
                logits[entry.name][k] = got
        if not missing:
            return
        splits = self._pack_splits.pop(k, None) or self.bench.splits(self.shadow_indices(k))
        # one shadow's models in memory at a time: the packed ones handed over (no store round trip)
        keys = [self.model_key(role, k) for role in SHADOW_ROLES]
        memo = {key: self._packed.pop(key) for key in keys if key in self._packed}
        refs = References(self.bench, self.store, self.reporter, memo=memo)
        models: dict[str, Reference] = {}

        def model(role: str) -> Reference:
            if role not in models:
                cached = self.finished("train", self.model_key(role, k)) is not None
                split = splits["train"] if role == SHADOW_ORIGINAL else splits["retain"]
                models[role] = refs.train_or_reuse(role, self.seed_of(k), split, self.trained_on(role, k))
                if models[role].key != self.model_key(role, k):  # the formula here drifted from references.py
                    raise RuntimeError(
                        f"The store key of {role} model {k} differs from the one the audit computed (model_key "
                        "mirrors References.train_or_reuse, which changed, or this runs under torchrun, which "
                        "audits do not support): cached logits would be mislabelled, so the audit stops."
                    )
                if not cached:
                    report.models_trained += 1
                    advance_model()
            return models[role]

        for entry in missing:
            self.shadow_run(entry, k, splits, model, logits)
            if entry.cls.role is None:
                report.method_runs += 1
                advance_run()

    def shadow_run(
        self,
        entry: Entry[Method],
        k: int,
        splits: dict[str, Split],
        model: Callable[[str], Reference],
        logits: dict[str, list],
    ) -> None:
        """One row on shadow ``k``, claimed: its pool logits saved as a checksummed artifact."""
        key = self.shadow_key(entry, k)
        seed = self.seed_of(k)
        tags = {
            **row_tags(self.bench, seed, entry, "audit-shadow", key),
            tag("shadow"): str(k),
            tag("shadow_original"): self.model_key(SHADOW_ORIGINAL, k),
        }
        params = {"shadow": k, "seed": seed, "n_pool": len(self.design.pool), "n_retained": len(self.design.retained)}
        if entry.cls.role is None:
            params.update({f"method.{name}": v for name, v in self.options(entry).items()})
        tags = {t: v for t, v in tags.items() if v != ""}
        name = f"audit-{entry.name}-{self.plan.dataset.name}-{self.plan.model_name}-shadow{k}"
        while True:  # one process computes; the others wait for its logits (a corrupt artifact is redone)
            got = claims.claim(
                self.store,
                "audit-shadow",
                key,
                name,
                tags,
                params,
                on_wait=lambda: self.reporter.event(f"Waiting for another process: {entry.name} on shadow {k}"),
                notify=self.reporter.event,
            )
            if got.finished is None:
                break
            arr = self.load_logits(got.finished)
            if arr is not None:
                logits[entry.name][k] = arr
                return
        run_id = got.run_id
        assert run_id is not None
        try:
            with owned(self.store, run_id):
                arr, seconds = self.compute(entry, k, splits, model)
                finite_outputs(arr, "its model")
                self.store.save_checkpoint(run_id, {"logits": torch.from_numpy(arr)}, name="logits")
                predicted = arr[: len(self.design.pool)].argmax(1) == self.labels
                member = self.design.pool_halves[k]
                self.store.log_metrics(
                    run_id,
                    {
                        "seconds": seconds,
                        "acc_forgotten": float(predicted[member].mean()) if member.any() else math.nan,
                        "acc_never_seen": float(predicted[~member].mean()) if (~member).any() else math.nan,
                    },
                )
                self.store.finish(run_id)
        except UnlearnkitError as err:  # the method's own failure: the row fails, the audit goes on
            self._failed[entry.name] = f"shadow {k}: {err}"
            self.reporter.warn(f"{entry.name} failed on shadow {k}: {err}")
            return
        logits[entry.name][k] = arr

    def compute(
        self, entry: Entry[Method], k: int, splits: dict[str, Split], model: Callable[[str], Reference]
    ) -> tuple[np.ndarray, float]:
        """The row's model on shadow ``k`` (the shadow original or retrain, or the method applied to the
        original) and its float32 logits on the pool, then on the retained sample."""
        role = entry.cls.role
        if role in ("original", "retrained"):
            ref = model(SHADOW_ORIGINAL if role == "original" else SHADOW_RETRAINED)
            return self.forward(ref.model, keep_mode=False), 0.0 if role == "original" else ref.seconds
        seed = self.seed_of(k)
        ctx = self.bench.context(seed, self.idx.forget_class, method=entry.name)

        def gold() -> tuple[nn.Module, float]:
            ref = model(SHADOW_RETRAINED)
            return copy.deepcopy(ref.model), ref.seconds

        ctx.gold_standard = gold
        data = UnlearnData(splits, entry.cls.splits(), entry.name)
        options = self.plan.method_options(entry, ctx.setting)
        outcome = unlearn_copy(entry, options, model(SHADOW_ORIGINAL).model, data, ctx, seed, where=f" on shadow {k}")
        keep = self.plan.protocol.returned_mode
        if not keep:
            outcome.model.eval()
        return self.forward(outcome.model, keep_mode=keep), float(
            outcome.time_s if outcome.time_s is not None else math.nan
        )

    def forward(self, model: nn.Module, keep_mode: bool) -> np.ndarray:
        """float32 logits of the pool, then of the retained sample (each its own pass: the pool's logits are
        what they were before the retained audit existed, batch statistics included)."""
        splits = [self.pool_split] + ([self.retained_split] if len(self.design.retained) else [])
        parts = [predict_logits(model, split, keep_mode=keep_mode).cpu().numpy() for split in splits]
        return np.concatenate(parts).astype(np.float32)

    # ---------------------------------------------------------------------------------- results
    def record(self, entry: Entry[Method], row: RowScores, retained: RowScores, power: PowerCheck) -> AuditRow:
        """One row's audit run: metrics (the retained audit's too), the per-example scores, the sanity verdict."""
        key = self.audit_key(entry)
        s = self.settings
        tags = {
            **row_tags(self.bench, s.seed, entry, "audit", key),
            tag("audit"): self.group_key,
            tag("shadows"): str(s.shadows),
            tag("mode"): s.mode,
            tag("fixed_variance"): str(s.variance_fixed).lower(),
            tag("ulira_power"): "ok" if power.ok else "underpowered",
        }
        if row.notes:
            tags[tag("ulira_nan")] = json.dumps(row.notes, sort_keys=True)[:5000]
        params: dict[str, Any] = {
            "shadows": s.shadows,
            "mode": s.mode,
            "fixed_variance": s.variance_fixed,
            "seed": s.seed,
            "n_pool": len(self.design.pool),
            "n_retained": len(self.design.retained),
            "n_universe": len(self.design.universe),
            "power_z": POWER_Z,
            **self.bench.train_recipe.as_params(),
        }
        if entry.cls.role is None:
            params.update({f"method.{name}": v for name, v in self.options(entry).items()})
        got = claims.claim(
            self.store,
            "audit",
            key,
            f"audit-{entry.name}-{self.plan.dataset.name}-{self.plan.model_name}-{self.plan.scenario.key}-k{s.shadows}",
            {t: v for t, v in tags.items() if v != ""},
            params,
            notify=self.reporter.event,
        )
        if got.finished is not None:
            rec = got.finished
            return AuditRow(entry.name, entry.cls.role or "", "skipped", dict(rec.metrics), _notes(rec), rec.run_id)
        run_id = got.run_id
        assert run_id is not None
        metrics = {
            **row.metrics(),
            **retained_metrics(retained),
            "ulira_power_difference": power.difference,
            "ulira_power_threshold": power.threshold,
        }
        with owned(self.store, run_id):
            self.store.log_metrics(run_id, metrics)
            buf = io.BytesIO()
            arrays: dict[str, Any] = {  # Any: numpy's stub would read a key as its allow_pickle flag
                "pool": self.design.pool,
                **score_arrays("", self.labels, row),
                "retained": self.design.retained,
                **score_arrays("retained_", self.retained_labels, retained),
            }
            np.savez_compressed(buf, **arrays)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "scores.npz"
                path.write_bytes(buf.getvalue())
                self.store.log_file(run_id, path)
            csv = scores_csv(self.design, self.labels, row, (self.retained_labels, retained))
            self.store.log_text(run_id, csv, "scores.csv")
            self.store.finish(run_id)
        return AuditRow(entry.name, entry.cls.role or "", "finished", metrics, row.notes, run_id)


def finite_outputs(logits: np.ndarray, what: str, examples: str = "audited examples") -> None:
    """Refuse a model whose outputs are not finite (weights that overflow, NaN BatchNorm statistics): as a
    run with non-finite weights, it diverged. Scored, its NaN rows would silently be no observations."""
    bad = int((~np.isfinite(logits)).any(axis=-1).sum())
    if bad:
        raise DivergenceError(f"{what} gave non-finite outputs on {bad} of {len(logits)} {examples}")


def logits_problem(arr: Any, rows: int, classes: int) -> str:
    """Why a loaded logits artifact is not ``rows`` examples' logits over ``classes`` (empty: it is): a
    float tensor of finite values, (rows, classes), or (0, 0) for an empty split. Anything else would crash
    the scoring, or be scored as if a model had given it (a NaN row would silently be no observation)."""
    if not isinstance(arr, torch.Tensor):
        return "no logits tensor"
    shapes = [(rows, classes)] + ([(0, 0)] if rows == 0 else [])
    if not arr.is_floating_point() or tuple(arr.shape) not in shapes:
        return f"a {str(arr.dtype).removeprefix('torch.')} {tuple(arr.shape)} tensor, not float {(rows, classes)}"
    bad = int((~torch.isfinite(arr)).any(dim=1).sum())
    return f"non-finite values in {bad} of {rows} rows" if bad else ""


def score_arrays(prefix: str, labels: np.ndarray, scores: RowScores) -> dict[str, np.ndarray]:
    """One audited sample's arrays in ``scores.npz``, named alike for the pool (no prefix) and the
    retained sample (``retained_``), so a reader finds either by the same names."""
    return {
        f"{prefix}labels": labels,
        f"{prefix}scaled_logit": scores.scaled,
        f"{prefix}score": scores.scores,
        f"{prefix}in_mask": scores.in_mask,
        f"{prefix}out_mask": scores.out_mask,
    }


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _notes(rec: RunRecord) -> dict[str, str]:
    """Why some of a stored row's numbers are NaN (NaN metrics are not stored: the reasons are)."""
    try:
        notes = json.loads(rec.tag("ulira_nan") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}


__all__ = [
    "AUDIT_VERSION",
    "FIXED_VARIANCE_BELOW",
    "LOGITS_VERSION",
    "SHADOW_ORIGINAL",
    "SHADOW_RETRAINED",
    "AuditRow",
    "AuditRunner",
    "AuditSettings",
    "CellReport",
    "Estimate",
]
