"""Ensemble scores of one benchmark cell: N repeated runs, their per-example logits cached once, every score.

Member i of an ensemble is the benchmark at seed s+i, exactly as ``unlearnkit run --seeds`` runs it:
its original, its retrained model and each method applied to that original, obtained through the
engine's :class:`~unlearnkit.engine.runner.Runner` (claimed, resumable, found in the store when they
exist: an ensemble of the seeds a leaderboard already has trains nothing). The retrain row is scored
with N *further* retrained models (seeds s+N, ...), so it is compared with references it is
independent of, as a method is.

Three kinds of store runs, each keyed by content:

- ``run_type=ensemble-logits``: one model's float32 clean eval-mode logits on forget / retain / test /
  unseen, a checksummed artifact keyed by the model's identity and the splits' fingerprint. Every
  score, and every re-scoring with other scores, reads these and never forwards a model again;
- the usual ``train`` and ``unlearn`` runs behind the models (the leaderboard shows the latter);
- ``run_type=ensemble``: one row's scores (``challenge_score``, ``klom``, ... with ``_low``/``_high``
  bootstrap bounds), keyed by the members' logits keys, the scores' versions and the bootstrap.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from unlearnkit.api.contracts import Method
from unlearnkit.api.data import Split
from unlearnkit.api.ensemble import Ensemble, EnsembleMetric, Scored
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.audit.design import one_request
from unlearnkit.audit.runner import finite_outputs, logits_problem
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.config import Plan
from unlearnkit.engine.references import Reference
from unlearnkit.engine.runner import Runner, Seed
from unlearnkit.engine.stages import owned, row_tags
from unlearnkit.errors import ConfigError, DivergenceError, UnlearnkitError
from unlearnkit.identity import config_hash, plugin_version
from unlearnkit.store import claims
from unlearnkit.store.health import holds_experiment
from unlearnkit.store.mlflow_store import CorruptCheckpoint, RunRecord, Store, tag

#: The splits whose logits a member keeps (what every ensemble score may read).
ENSEMBLE_SPLITS = ("forget", "retain", "test", "unseen")
#: What the cached logits are: bump when how they are computed changes (it enters their key).
LOGITS_VERSION = "clean-eval-float32-v1"
MIN_MEMBERS = 2
ACCURACY_SPLITS = ("forget", "retain", "test")


@dataclass(frozen=True)
class EnsembleSettings:
    """What an ensemble is, besides its benchmark: members, first seed, scores, bootstrap."""

    members: int
    seed: int
    scores: tuple[str, ...]
    resamples: int = 1000

    def __post_init__(self) -> None:
        if self.members < MIN_MEMBERS:
            raise ConfigError(f"Bad --ensemble {self.members}: an ensemble score needs at least {MIN_MEMBERS} members.")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.members))

    @property
    def reference_seeds(self) -> list[int]:
        """The retrain row's own models: N more retrains, independent of the references it is scored against."""
        return list(range(self.seed + self.members, self.seed + 2 * self.members))


@dataclass
class EnsembleRow:
    method: str
    role: str
    status: str  # finished, skipped (in the store), failed
    scores: dict[str, Scored] = field(default_factory=dict)
    run_id: str = ""
    failure: str = ""


@dataclass
class EnsembleEstimate:
    label: str
    members: int
    models_total: int
    models_to_train: int
    runs_total: int
    runs_to_do: int

    def text(self) -> str:
        return (
            f"Ensemble {self.label}: {self.members} members -> {self.models_to_train} of {self.models_total} "
            f"reference models to train, {self.runs_to_do} of {self.runs_total} method runs to do "
            f"({self.runs_total - self.runs_to_do} in the store)."
        )


@dataclass
class EnsembleReport:
    label: str
    benchmark: str
    settings: EnsembleSettings
    rows: list[EnsembleRow]
    logits_computed: int = 0
    wall_s: float = 0.0


class EnsembleRunner:
    """The ensemble scores of one validated plan (one recipe cell, its seeds the members')."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        settings: EnsembleSettings,
        metrics: Sequence[Entry[EnsembleMetric]],
        reporter: Reporter = SILENT,
        label: str = "",
    ) -> None:
        if list(plan.seeds) != settings.seeds:
            raise ValueError(f"the plan's seeds {plan.seeds} are not the ensemble's {settings.seeds}")
        if not plan.request.save_models:
            raise ConfigError("Ensemble scores read every member's unlearned model: drop --no-save-models.")
        if plan.request.no_retrain:
            raise ConfigError("Ensemble scores compare with retrained models: drop no_retrain.")
        self.plan = plan
        self.store = store
        self.settings = settings
        self.metrics = list(metrics)
        self.reporter = reporter
        self.runner = Runner(plan, store, reporter)
        self.bench = self.runner.bench
        self.label = label or f"{plan.dataset.name}/{plan.model_name}/{plan.scenario.key}"
        self.logits_computed = 0
        self._forget_fingerprint = ""

    # ------------------------------------------------------------------------------------ set-up
    def check(self, *, writes: bool = True) -> None:
        """The data, the scenario and the store, before anything trains: members must share D_f."""
        one_request(self.plan.scenario.key, self.plan.scenario.requests, "an ensemble score")
        self.runner.check(writes=writes)
        prints = {self._paired_fingerprint(s) for s in (*self.settings.seeds, *self.settings.reference_seeds)}
        if len(prints) > 1:
            raise ConfigError(
                f"Scenario '{self.plan.scenario.key}' draws another forget set for every seed, and ensemble scores "
                "compare the same forget examples across members: use a fixed rule (instance, class, first, identity)."
            )

    def _paired_fingerprint(self, seed: int) -> str:
        idx = self.bench.indices(seed)
        return config_hash({"forget": idx.forget.tolist(), "retain": idx.retain.tolist()})

    @property
    def methods(self) -> list[Entry[Method]]:
        return [e for e in self.plan.methods if e.cls.role is None]

    @property
    def references_of_rows(self) -> list[Entry[Method]]:
        return [e for e in self.plan.methods if e.cls.role is not None]

    def estimate(self) -> EnsembleEstimate:
        """What is left to compute, from the store (reference keys as References computes them)."""
        # no store, or no experiment of that name: everything is to do, and none is made by asking
        stored = holds_experiment(self.store)
        todo_models = total_models = 0
        for seed in self.settings.seeds + self.settings.reference_seeds:
            idx = self.bench.indices(seed)
            roles = ("original", "retrained") if seed in self.settings.seeds else ("retrained",)
            for role in roles:
                total_models += 1
                key = self.reference_key(role, seed, idx)
                todo_models += not stored or self.store.find_finished("train", key) is None
        total_runs, todo_runs = self.method_runs(stored)
        return EnsembleEstimate(self.label, self.settings.members, total_models, todo_models, total_runs, todo_runs)

    def reference_key(self, role: str, seed: int, idx: Any) -> str:
        """A member's reference model's store key, as :class:`References` computes it."""
        trained_on = np.sort(np.concatenate([idx.forget, idx.retain])) if role == "original" else idx.retain
        return config_hash(self.runner.references.identity(role, seed, trained_on))

    def method_runs(self, stored: bool) -> tuple[int, int]:
        """The members' method runs and how many of them the store lacks, by the identity the runner
        gives each (so a run of the method with other options, at the same seed, is not one of them)."""
        filters = {"run_type": "unlearn", "benchmark": self.bench.key}
        done = {r.tag("config_hash") for r in self.store.search(filters)} if stored else set()
        total = todo = 0
        for seed in self.settings.seeds:
            idx = self.bench.indices(seed)
            original, retrained = (
                Reference(role, cast(Any, None), math.nan, self.reference_key(role, seed, idx))
                for role in ("original", "retrained")
            )
            state = Seed(seed, idx, {}, original, retrained)
            for entry in self.methods:
                ident = self.runner.identify(entry, state, self.runner.context(state, entry.name))
                total += 1
                todo += ident.key not in done
        return total, todo

    # ---------------------------------------------------------------------------------- running
    def run(self) -> EnsembleReport:
        """Members first (models and their logits, each cached), then every row's scores."""
        import time

        started = time.perf_counter()
        s = self.settings
        outputs: dict[str, list[dict[str, np.ndarray]]] = {"original": [], "retrained": [], "retrain-row": []}
        per_method: dict[str, list[dict[str, np.ndarray]]] = {e.name: [] for e in self.methods}
        keys: dict[str, list[str]] = {"original": [], "retrained": [], "retrain-row": []}
        method_keys: dict[str, list[str]] = {e.name: [] for e in self.methods}
        failed: dict[str, str] = {}
        labels: dict[str, list[np.ndarray]] = {split: [] for split in ENSEMBLE_SPLITS}
        advance = self.reporter.counter(f"ensemble {self.label}: members", s.members)
        # with --models-per-device N: every member's references and the retrain row's retrains, N at a time
        self.runner.pack_references(s.seeds, list(zip(s.seeds, s.reference_seeds, strict=True)))
        for seed in s.seeds:
            state = self.runner.prepare_seed(seed)
            assert state.retrained is not None
            for split in ENSEMBLE_SPLITS:
                labels[split].append(state.splits[split].y.cpu().numpy())
            for entry in self.references_of_rows:  # their ordinary rows too (evaluation only): the board's references
                self.runner.run_method(entry, state)
            for role, ref in (("original", state.original), ("retrained", state.retrained)):
                outputs[role].append(self.cached_logits(ref.key, ref.model, state, f"{role} s{seed}"))
                keys[role].append(self.logits_key(ref.key, state))
            for entry in self.methods:
                if entry.name in failed:
                    continue
                got = self.unlearned(entry, state)
                if isinstance(got, str):
                    failed[entry.name] = got
                    continue
                model_key, model = got
                try:
                    logits = self.cached_logits(model_key, model, state, f"{entry.name} s{seed}")
                except DivergenceError as err:  # this method's model at this member: its row fails, the rest go on
                    failed[entry.name] = str(err)
                    continue
                per_method[entry.name].append(logits)
                method_keys[entry.name].append(self.logits_key(model_key, state))
            advance()
        for member, seed in zip(s.seeds, s.reference_seeds, strict=True):  # the retrain row's own retrains
            # trained at its own seed on D_r (the same examples in every member), evaluated on member i's
            # splits: its test half is member i's, so its accuracies pair with member i's labels
            idx = self.bench.indices(member)
            splits = self.bench.splits(idx)
            extra = self.runner.references.get("retrained", seed, idx, splits)
            assert extra is not None
            state = Seed(member, idx, splits, extra, extra)
            outputs["retrain-row"].append(self.cached_logits(extra.key, extra.model, state, f"retrained s{seed}"))
            keys["retrain-row"].append(self.logits_key(extra.key, state))
        targets = {split: np.stack(v) for split, v in labels.items()}
        rows: list[EnsembleRow] = []
        for entry in self.references_of_rows:
            which = "original" if entry.cls.role == "original" else "retrain-row"
            rows.append(self.score_row(entry, outputs[which], keys[which], outputs, keys, targets))
        for entry in self.methods:
            if entry.name in failed:
                rows.append(EnsembleRow(entry.name, "", "failed", failure=failed[entry.name]))
                continue
            rows.append(self.score_row(entry, per_method[entry.name], method_keys[entry.name], outputs, keys, targets))
        return EnsembleReport(self.label, self.bench.key, s, rows, self.logits_computed, time.perf_counter() - started)

    def unlearned(self, entry: Entry[Method], state: Seed) -> tuple[str, nn.Module] | str:
        """The method's model at this member: its run, through the runner (found in the store when it
        exists), then its stored weights. A failure's reason instead of a model."""
        result = self.runner.run_method(entry, state)
        if result.status == "failed" or result.run_id is None:
            return result.failure or f"{entry.name} failed at seed {state.seed}"
        record = self.store.get(result.run_id)
        try:
            weights = self.store.load_checkpoint(record, name="model")
        except (CorruptCheckpoint, UnlearnkitError) as err:
            return f"its stored model (run {record.run_id[:8]}) cannot be read: {err}"
        model = copy.deepcopy(state.original.model)
        try:
            model.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as err:  # a store's file: not this model's weights
            detail = (str(err).strip().splitlines() or [""])[0][:160]
            return f"its stored model (run {record.run_id[:8]}) is not this model's weights: {detail}"
        return record.tag("unlearning_hash") or record.tag("config_hash"), model.eval()

    @staticmethod
    def logits_key(model_key: str, state: Seed) -> str:
        """What a cached logits artifact is: the model, the splits it was evaluated on, how. A row's
        scores are a function of its members' artifacts, so their keys enter the row's key."""
        return config_hash({"model": model_key, "splits": state.idx.fingerprint(), "logits": LOGITS_VERSION})

    def cached_logits(self, model_key: str, model: nn.Module, state: Seed, what: str) -> dict[str, np.ndarray]:
        """``model``'s logits on the member's splits: from the store if this model's were computed
        (a corrupt artifact is recomputed), else computed now and kept as a checksummed artifact."""
        key = self.logits_key(model_key, state)
        tags = {
            **self.bench.tags(state.seed),
            tag("run_type"): "ensemble-logits",
            tag("config_hash"): key,
            tag("benchmark"): self.bench.key,
            tag("model_key"): model_key,
        }
        while True:
            got = claims.claim(self.store, "ensemble-logits", key, f"logits-{what}", tags, {"seed": state.seed})
            if got.finished is None:
                break
            try:
                stored = self.store.load_checkpoint(got.finished, name="logits")
            except CorruptCheckpoint as err:
                self.reporter.warn(f"{err} Recomputing it.")
                self.store.fail(got.finished.run_id, f"logits corrupt: {err}")
                continue
            problem = self.stored_problem(stored, state)
            if not problem:
                return {split: stored[split].numpy() for split in ENSEMBLE_SPLITS}
            self.reporter.warn(f"Logits of run {got.finished.run_id} are unusable ({problem}): recomputing them.")
            self.store.fail(got.finished.run_id, f"logits unusable: {problem}")
        run_id = got.run_id
        assert run_id is not None
        with owned(self.store, run_id):
            arrays = {split: _logits(model, state.splits[split]) for split in ENSEMBLE_SPLITS}
            for split, arr in arrays.items():
                finite_outputs(arr, f"The model behind {what}", f"{split} examples")
            self.store.save_checkpoint(run_id, {k: torch.from_numpy(v) for k, v in arrays.items()}, name="logits")
            self.store.finish(run_id)
        self.logits_computed += 1
        return arrays

    def stored_problem(self, stored: Any, state: Seed) -> str:
        """Why a stored logits artifact is not this member's (empty: it is): its sha256 proves only that
        the file is the one recorded, so every split's logits are checked before a score reads them."""
        if not isinstance(stored, dict):
            return "no logits tensors"
        for split in ENSEMBLE_SPLITS:
            problem = logits_problem(stored.get(split), len(state.splits[split]), self.bench.raw.num_classes)
            if problem:
                return f"{split}: {problem}"
        return ""

    # ---------------------------------------------------------------------------------- scoring
    def score_row(
        self,
        entry: Entry[Method],
        members: list[dict[str, np.ndarray]],
        member_keys: list[str],
        outputs: dict[str, list[dict[str, np.ndarray]]],
        keys: dict[str, list[str]],
        targets: dict[str, np.ndarray],
    ) -> EnsembleRow:
        """One row's scores, recorded once: a second call with the same members and scores reads them."""
        s = self.settings
        options = self.plan.method_options(entry, self.bench.setting()).model_dump() if entry.cls.role is None else {}
        key = config_hash(
            {
                "benchmark": self.bench.key,
                "method": plugin_version(entry),
                "options": options,
                "members": member_keys,
                "retrained": keys["retrained"],
                "original": keys["original"],
                "scores": sorted(plugin_version(m) for m in self.metrics),
                "resamples": s.resamples,
                "seed": s.seed,
            }
        )
        row_tag = {
            **row_tags(self.bench, s.seed, entry, "ensemble", key),
            tag("members"): str(s.members),
            tag("scores"): ",".join(m.name for m in self.metrics),
        }
        name = f"ensemble-{entry.name}-{self.plan.dataset.name}-{self.plan.model_name}-n{s.members}"
        params = {"members": s.members, "seed": s.seed, "resamples": s.resamples}
        got = claims.claim(
            self.store,
            "ensemble",
            key,
            name,
            {t: v for t, v in row_tag.items() if v},
            params,
            notify=self.reporter.event,
        )
        if got.finished is not None:
            return EnsembleRow(entry.name, entry.cls.role or "", "skipped", _stored(got.finished, self.metrics))
        run_id = got.run_id
        assert run_id is not None
        ens = Ensemble(
            {
                "unlearned": _stack(members),
                "retrained": _stack(outputs["retrained"]),
                "original": _stack(outputs["original"]),
            },
            targets,
            seed=s.seed,
            resamples=s.resamples,
        )
        scores = {m.name: _score(m, ens) for m in self.metrics}
        with owned(self.store, run_id):
            # the row's members' mean accuracies: what the scores' utility terms read, kept for checking
            values: dict[str, float] = {
                f"members_acc_{split}": float(ens.accuracy("unlearned", split).mean()) for split in ACCURACY_SPLITS
            }
            for name, sc in scores.items():
                values[name] = sc.value
                values[f"{name}_low"], values[f"{name}_high"] = sc.low, sc.high
            self.store.log_metrics(run_id, {k: v for k, v in values.items() if not math.isnan(v)})
            self.store.finish(run_id)
        return EnsembleRow(entry.name, entry.cls.role or "", "finished", scores, run_id)


def _logits(model: nn.Module, split: Split) -> np.ndarray:
    out = predict_logits(model, split)
    if out.shape[0] == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return out.cpu().numpy().astype(np.float32)


def _stack(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {split: np.stack([m[split] for m in members]) for split in ENSEMBLE_SPLITS}


def _score(metric: Entry[EnsembleMetric], ens: Ensemble) -> Scored:
    if ens.members < metric.cls.min_members:
        return Scored(math.nan)
    return metric.cls(metric.cls.Options()).score(ens)


def _stored(record: RunRecord, metrics: Sequence[Entry[EnsembleMetric]]) -> dict[str, Scored]:
    m = record.metrics
    return {
        e.name: Scored(m.get(e.name, math.nan), m.get(f"{e.name}_low", math.nan), m.get(f"{e.name}_high", math.nan))
        for e in metrics
    }


__all__ = [
    "ENSEMBLE_SPLITS",
    "EnsembleEstimate",
    "EnsembleReport",
    "EnsembleRow",
    "EnsembleRunner",
    "EnsembleSettings",
]
