"""One benchmark: data -> original -> retrained -> each method -> every metric, all in the store.

Per seed the runner obtains the reference models (:mod:`unlearnkit.references`), then runs each
method in three steps that each fit on a screen: ``identify`` (what makes this run this run:
its config hash, tags and params), ``execute`` (the method on a private copy of the original,
timed) and ``evaluate`` (every metric under the plan's protocol). A run whose config hash is
already finished in the store is skipped; a failing or interrupted run is recorded as failed and
never counted. Under torchrun every rank runs this same loop: rank 0 alone talks to the store and
evaluates, the others follow its decisions (:mod:`unlearnkit.ddp`); methods that declare
``distributed`` train on every rank, the others on rank 0 alone while the other ranks go on.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Method, Metric, UnlearnOutcome
from unlearnkit.api.data import Split, UnlearnData
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.weights import cpu_state_dict
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.config import Plan
from unlearnkit.engine.memorisation import score_source
from unlearnkit.engine.prepared import Benchmark, resolve_device, synchronize
from unlearnkit.engine.references import ModelMemo, References
from unlearnkit.engine.seed_state import Seed
from unlearnkit.engine.sequential import Requests
from unlearnkit.engine.splits import SplitIndices
from unlearnkit.engine.stages import (
    ImagesWritten,
    equal_state,
    numerics,
    owned,
    row_tags,
    same_outputs,
    unlearn_copy,
)
from unlearnkit.errors import ConfigError, DivergenceError, PluginError, UnlearnkitError, shorten
from unlearnkit.identity import config_hash, identity_json, plugin_version
from unlearnkit.loops.threads import pinned_threads
from unlearnkit.parallel import torchrun as ddp
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import CorruptCheckpoint, RunRecord, Store, tag

# The original must be measurably better on D_f than on unseen data, or there is nothing to unlearn
# and every unlearning number is noise (docs/protocols.md): it has memorised D_f when its forget
# accuracy beats its unseen accuracy by MEMORISATION_GAP, or, on easy data where unseen accuracy
# leaves no such headroom, when it makes at most MEMORISED_ERROR_RATIO of its unseen error rate on D_f.
MEMORISATION_GAP = 0.05
MEMORISED_ERROR_RATIO = 0.5


def memorised(acc_forget: float, acc_unseen: float) -> bool:
    # accuracies arrive as float32 means: 90/100 against 425/500 is a gap of 0.05, not 0.0499999
    gap = acc_forget - acc_unseen + 1e-6
    return gap >= MEMORISATION_GAP or (1 - acc_forget) <= MEMORISED_ERROR_RATIO * (1 - acc_unseen) + 1e-6


# The learning bar: an original that has not learnt its own training data (an under-trained CPU
# model) is no stand-in for a trained one, whatever its forget/unseen gap; a request may declare a
# lower bar (``original_min_retain``) for data where 0.9 is out of reach (docs/protocols.md).
ORIGINAL_MIN_RETAIN = 0.9


def accuracy(logits: torch.Tensor, split: Split) -> float:
    """The share of ``split`` whose top logit is its label."""
    return float((logits.argmax(1) == split.y).float().mean())


def weak_original_reasons(acc: dict[str, float], min_retain: float, *, memorisation: bool = True) -> list[str]:
    """The reference-quality rules the original fails (docs/protocols.md): ``memorisation`` (D_f not
    measurably better than unseen data; not judged when ``memorisation`` is False) and ``learning``
    (retain accuracy under ``min_retain``)."""
    failed = []
    if memorisation and not memorised(acc["forget"], acc["unseen"]):
        failed.append("memorisation")
    if acc["retain"] < min_retain:
        failed.append("learning")
    return failed


#: what may differ between the ranks of one run: where each node keeps a brought model file
PER_NODE = ("weights", "original", "retrained")


def same_request_text(plan: Plan) -> str:
    """The resolved request, as every rank of one torchrun job must hold it (its files' paths aside)."""
    resolved = {k: v for k, v in plan.resolved().items() if k not in PER_NODE}
    return json.dumps(resolved, sort_keys=True, default=str)


@dataclass
class RunResult:
    """One method on one seed: what the CLI prints and tests assert on."""

    method: str
    seed: int
    status: str  # "finished", "skipped" (already in the store) or "failed" (torchrun: rank 0's, on every rank)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    failure: str = ""
    benchmark: str = ""


# what rank 0 tells the other ranks under torchrun (claims, results): agree sends JSON, and rebuilds only these
ddp.agreeable(claims.Claim, RunRecord, RunResult)


@dataclass
class Identity:
    key: str  # the run: everything that can change its numbers
    unlearning: str  # the unlearned model alone: the run without its evaluation (protocol, metrics)
    tags: dict[str, str]
    params: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)  # what `key` hashes (identity.json)
    options: Any = None  # the method's Options as resolved for `key`: what `execute` runs, not resolved again


class Runner:
    """Executes a validated :class:`Plan` against a :class:`Store`."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        reporter: Reporter = SILENT,
        *,
        grid_point: str = "",
        sweep: str = "",
        tuning_trial: str = "",
        memo: ModelMemo | None = None,
        bench: Benchmark | None = None,
        on_result: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.plan = plan
        # under torchrun: join the process group first (each rank then takes its GPU); rank 0 alone
        # talks to the store and reports
        device = resolve_device(plan.request.device)  # once, here: where the run runs
        self.world = ddp.init(device)
        if not self.world.main:
            store, reporter = cast(Store, ddp.RankZeroOnly("the store")), SILENT
        self.store = store
        self.reporter = reporter
        # a benchmark prepared elsewhere (a Ray task: the data its sweep loaded once), else loaded here
        self.bench = bench if bench is not None else Benchmark(plan, reporter, device, scores=score_source)
        if self.bench.store is None and self.world.main:  # memorisation scores may read shadow models from it
            self.bench.store = store
        self.references = References(self.bench, store, reporter, memo)
        self.grid_point = grid_point  # a recipe's option-grid point, e.g. "METHOD.alpha=8"
        self.sweep = sweep  # the name of the sweep recipe this run belongs to
        self.tuning_trial = tuning_trial  # "study/trial" when the run is a tuning trial (hidden by default)
        self.on_result = on_result or (lambda result: None)
        self.reused_from = ""  # the run whose unlearned model the current run reuses, if any
        self.no_op = ""  # why the current run's model is indistinguishable from the original, if it is
        self.checked = False  # whether check() ran (the CLI checks before it opens its progress display)
        # a scenario of successive deletion requests runs each method request after request
        self.sequential = Requests(self) if plan.scenario.requests > 1 else None
        self._seed_splits: dict[int, tuple[SplitIndices, dict[str, Split]]] = {}  # built by pack_references

    # ------------------------------------------------------------------------------- driver
    def check(self, *, writes: bool = True) -> None:
        """Every check that needs the data (and the model files a user brings), then the store:
        still nothing trained or written. Under torchrun rank 0 checks first (and downloads the
        data), then the other ranks. Once per runner: :meth:`run` checks only if no one did.
        ``writes`` False (an estimate): nothing is made (:meth:`Store.check`), and :meth:`run` checks again."""
        if self.checked:
            return
        # ranks started with other requests would part at their first claim, after rank 0 had written
        self.world.same_everywhere("requests", same_request_text(self.plan))

        def check() -> None:
            request = self.plan.request
            if self.sequential is not None and request.retrained is not None:
                raise ConfigError(
                    f"Scenario '{self.plan.scenario.key}' retrains after every deletion request: a brought "
                    "--retrained model is one model. Drop --retrained (or use --no-retrain)."
                )
            self.bench.check()
            for role, path in (("original", request.original), ("retrained", request.retrained)):
                if path is not None:
                    self.references.from_file(role, Path(path))
            if self.world.main:
                self.store.check(writes=writes)

        ddp.main_first("check", check)
        self.checked = writes

    def run(self) -> list[RunResult]:
        """Every seed, every method; returns one result per (method, seed)."""
        self.check()
        results: list[RunResult] = []
        self.pack_references(self.plan.seeds)
        for seed in self.plan.seeds:
            state = self.prepare_seed(seed)
            for entry in self.plan.methods:
                result = self.run_method(entry, state)
                results.append(result)
                if self.world.main:
                    self.on_result(result)
        if self.world.active:  # every rank returns rank 0's results (the others hold placeholders)
            results = ddp.agree("results", results)
            ddp.barrier()
        return results

    def pack_references(self, seeds: Sequence[int], retrains: Sequence[tuple[int, int]] = ()) -> int:
        """Train the seeds' reference models (and ``retrains``: (member seed, training seed) gold
        standards on a member's splits) ``models_per_device`` at a time, before any seed runs; each
        seed then finds its models in the store. Nothing to do at one per device. Returns how many
        trained."""
        if self.plan.models_per_device == 1 or self.sequential is not None:
            return 0
        wanted = []
        for seed in seeds:  # each seed's splits are kept for its prepare_seed, which would build them again
            idx, splits = self._seed_splits[seed] = self.seed_splits(seed)
            wanted += self.references.to_train(seed, idx, splits)
        for member, seed in retrains:
            idx = self.bench.indices(member)
            wanted.append(self.references.wanted("retrained", seed, idx, self.bench.splits(idx)))
        with pinned_threads(self.plan.request.threads):
            return self.references.train_many(wanted, self.plan.models_per_device)

    def prepare_seed(self, seed: int, memorisation: tuple[float, bool] | None = None) -> Seed:
        with pinned_threads(self.plan.request.threads):  # trains: at the request's thread count
            return self._prepare_seed(seed, memorisation)

    def seed_splits(self, seed: int) -> tuple[SplitIndices, dict[str, Split]]:
        """A seed's index sets and splits: the ones :meth:`pack_references` built, else built now."""
        if seed in self._seed_splits:
            return self._seed_splits.pop(seed)
        idx = self.bench.indices(seed)
        return idx, self.bench.splits(idx)

    def _prepare_seed(self, seed: int, memorisation: tuple[float, bool] | None) -> Seed:
        idx, splits = self.seed_splits(seed)
        original = self.references.get("original", seed, idx, splits)
        assert original is not None
        retrained = self.references.get("retrained", seed, idx, splits)
        state = Seed(seed, idx, splits, original, retrained)
        if self.world.main:  # rank 0 evaluates
            self.check_memorisation(state, memorisation)
        return state

    def check_memorisation(self, state: Seed, known: tuple[float, bool] | None = None) -> None:
        """Compare the original's accuracy on D_f and on unseen data (outputs every method reuses
        anyway) and its accuracy on D_r (the learning bar); warn when it has not memorised D_f (class
        unlearning is exempt: the forgotten class is not in the unseen-vs-forget comparison's terms)
        or has not learnt D_r. ``known``: the (gap, weak) an
        earlier check of this seed found (a Ray sweep's stage one, which warned): not measured again."""
        if known is not None:
            state.memorisation_gap, state.weak_original = known
            return
        ctx = self.context(state, "")
        references = {"original": state.original.model}
        if state.retrained is not None:
            references["retrained"] = state.retrained.model
        # the passes land in the seed's shared outputs: every evaluation of this seed reads them
        # instead of forwarding the references over the same split again
        ev = Evaluation(references, state.splits, ctx, shared=state.shared)
        logits = {split: ev.logits("original", split) for split in ("forget", "unseen", "retain")}
        acc = {s: accuracy(out, state.splits[s]) for s, out in logits.items()}
        state.memorisation_gap = acc["forget"] - acc["unseen"]
        bar = self.plan.request.original_min_retain
        min_retain = ORIGINAL_MIN_RETAIN if bar is None else bar
        if state.retrained is not None:
            self.check_gold_standard(state, ev, min_retain)
        failed = weak_original_reasons(acc, min_retain, memorisation=self.plan.scenario.expects_memorisation)
        state.weak_original, state.weak_reason = bool(failed), ",".join(failed)
        if state.weak_original:
            what = {
                "memorisation": f"has not memorised the forget set (forget accuracy {acc['forget']:.3f} vs unseen "
                f"{acc['unseen']:.3f})",
                "learning": f"has not learnt its training data (retain accuracy {acc['retain']:.3f}, under the bar "
                f"{min_retain:.2f})",
            }
            self.reporter.warn(
                f"The original model (seed {state.seed}) {' and '.join(what[r] for r in failed)}. Unlearning numbers "
                "will be noise: train longer (--epochs), use a smaller --subset or a larger model"
                + (", or declare a lower bar (--original-min-retain)" if "learning" in failed else "")
                + " (docs/protocols.md)."
            )

    def check_gold_standard(self, state: Seed, ev: Evaluation, min_retain: float) -> None:
        """Warn when the retrained model has not learnt D_r, its whole training set, to the learning
        bar: every distance to it (Avg Gap, JSD) then measures a weak gold standard. A judgement
        only, as the original's: no identity or number moves."""
        acc = accuracy(ev.logits("retrained", "retain"), state.splits["retain"])
        if acc < min_retain - 1e-6:
            self.reporter.warn(
                f"The retrained model (seed {state.seed}) has not learnt its training data (retain accuracy "
                f"{acc:.3f}, under the bar {min_retain:.2f}): every method's distance to it measures a weak gold "
                "standard. Train longer (--epochs), or look for a last training batch of a few images "
                "(docs/protocols.md)."
            )

    def context(self, state: Seed, method: str) -> UnlearnContext:
        ctx = self.bench.context(state.seed, state.idx.forget_class, method=method, idx=state.idx)
        if state.retrained is not None:
            gold = state.retrained
            ctx.gold_standard = lambda: (copy.deepcopy(gold.model), gold.seconds)
        return ctx

    # ---------------------------------------------------------------------------- one method
    def run_method(self, entry: Entry[Method], state: Seed) -> RunResult:
        """One method on one seed, at the request's thread count (recorded in its tags either way)."""
        with pinned_threads(self.plan.request.threads):
            return self._run_method(entry, state)

    def _run_method(self, entry: Entry[Method], state: Seed) -> RunResult:
        self.reused_from = self.no_op = ""
        ctx = self.context(state, entry.name)
        together = self.world.active and entry.cls.distributed  # every rank runs the method
        if together:
            ctx.world = self.world
        ident = self.identify(entry, state, ctx)
        seed = state.seed
        got = ddp.on_main(
            f"claim {ident.key}",
            lambda: claims.claim(
                self.store,
                "unlearn",
                ident.key,
                self.run_name(entry, seed),
                ident.tags,
                ident.params,
                on_wait=lambda: self.reporter.event(f"Waiting for another process running {entry.name} (seed {seed})"),
                notify=self.reporter.event,
            ),
        )
        if got.finished is not None:
            record = got.finished
            self.reporter.event(f"{entry.name} (seed {seed}): already in the store, run {record.run_id[:8]}")
            return RunResult(entry.name, seed, "skipped", record.metrics, record.run_id, benchmark=self.bench.key)
        run_id = got.run_id
        assert run_id is not None
        if not self.world.main:
            return self.follow(entry, state, ctx, run_id, ident.options)
        told = not self.world.active  # whether the other ranks know if they run the method with rank 0
        try:
            with owned(self.store, run_id):
                # successive requests: every request's evaluation is needed, not only the last model
                reused = None if self.sequential is not None else self.reuse(entry, state, ident)
                if self.world.active:
                    told = self.tell(entry, together and reused is None)
                    if reused is None and not together and entry.cls.role is None:  # reference rows train nothing
                        others = "rank waits" if self.world.size == 2 else f"{self.world.size - 1} ranks wait"
                        self.reporter.event(
                            f"{entry.name} does not declare distributed support: it runs on rank 0 alone "
                            f"while the other {others}"
                        )
                steps = self.sequential.run(entry, state) if self.sequential is not None and reused is None else None
                outcome, data = (
                    (steps.outcome, steps.data) if steps else (reused or self.execute(entry, state, ctx, ident.options))
                )
                outcome_time = float(outcome.time_s if outcome.time_s is not None else float("nan"))
                # the model as the method returned it (the paper protocol's passes move BatchNorm statistics)
                weights = None if self.reused_from else self.weights_to_keep(entry, outcome)
                returned = {
                    tag("returned_mode"): "train" if outcome.model.training else "eval",
                    tag("info_keys"): ",".join(sorted(outcome.info)),
                    tag("unlearning_s"): repr(outcome_time),  # the method's own cost, reused with its model
                }
                if steps:  # the last request's numbers and the means; every request's as step curves
                    ctx.series[:] = steps.series
                    metrics = {**last_points(ctx.series), **steps.metrics}
                else:
                    metrics = {**last_points(ctx.series), **self.evaluate(entry, state, ctx, outcome)}
                self.record(run_id, state, ctx, data, metrics, weights, returned, ident)
        except ImagesWritten:  # every later row of this seed would read the changed images: the command stops
            if not told:
                self.tell(entry, False)
            raise
        except UnlearnkitError as err:  # a method's own failure (divergence, bad data access): a failed row
            if not told:
                self.tell(entry, False)
            self.reporter.warn(f"{entry.name} (seed {seed}) failed: {err}")
            return RunResult(entry.name, seed, "failed", run_id=run_id, failure=str(err), benchmark=self.bench.key)
        took = f"in {outcome_time:.2f} s" if math.isfinite(outcome_time) else "(no time: a brought or imported model)"
        self.reporter.event(f"{entry.name} (seed {seed}): done {took}")
        return RunResult(entry.name, seed, "finished", metrics, run_id, benchmark=self.bench.key)

    def tell(self, entry: Entry[Method], together: bool) -> bool:
        """Rank 0 tells the other ranks whether they run the method with it (see :meth:`follow`)."""
        ddp.agree(f"together {entry.name}", together)
        return True

    def follow(self, entry: Entry[Method], state: Seed, ctx: UnlearnContext, run_id: str, options: Any) -> RunResult:
        """A rank other than 0 on a run rank 0 claimed: run the method with rank 0 when it says so
        (the same steps on this rank's parts of the batches); else rank 0 runs it alone or reuses
        its stored model, and this rank goes on. The result is a placeholder: ``run`` returns rank 0's."""
        placeholder = RunResult(entry.name, state.seed, "elsewhere", run_id=run_id, benchmark=self.bench.key)
        if not ddp.agree(f"together {entry.name}"):
            return placeholder
        try:
            self.execute(entry, state, ctx, options)
        except UnlearnkitError as err:  # raised on every rank alike (the divergence check is agreed)
            placeholder.status, placeholder.failure = "failed", str(err)
        return placeholder

    def identify(self, entry: Entry[Method], state: Seed, ctx: UnlearnContext) -> Identity:
        """The run's identity: everything that can change its numbers, hashed."""
        options = self.plan.method_options(entry, ctx.setting)
        reference = entry.cls.role is not None
        grid_point = "" if reference else self.grid_point
        identity = {
            "benchmark": self.bench.key,
            "seed": state.seed,
            "method": plugin_version(entry),
            "options": options.model_dump(),
            "splits": state.idx.fingerprint(),
            "original": state.original.key,
            "retrained": state.retrained.key if state.retrained is not None else None,
            "metrics": sorted(plugin_version(m) for m in self.metrics(state)),
        }
        given = {
            m.name: self.plan.metric_options[m.name].model_dump()
            for m in self.metrics(state)
            if m.name in self.plan.metric_options
        }
        if given:  # only when given: runs with every metric at its defaults keep their identity
            identity["metric_options"] = given
        if grid_point:
            identity["grid_point"] = grid_point
        if ctx.world.active:  # a data-parallel run: the number of ranks shapes its numbers (reduction order)
            identity["world_size"] = ctx.world.size
        if self.plan.request.threads is not None:  # only when pinned: unpinned runs keep their identity
            identity["threads"] = self.plan.request.threads
        if self.tuning_trial and not reference:
            identity["tuning_trial"] = self.tuning_trial
        key = config_hash(identity)
        unlearning = {k: v for k, v in identity.items() if k not in ("metrics", "metric_options")}
        unlearning["benchmark"] = self.bench.protocol_key if entry.cls.uses_protocol else self.bench.unlearning_key
        unlearning_key = config_hash(unlearning)
        tags = {
            **row_tags(self.bench, state.seed, entry, "unlearn", key),
            tag("unlearning_hash"): unlearning_key,
            # the code that made the numbers: the leaderboard shows a method's newest code only
            tag("code"): config_hash({"method": identity["method"], "metrics": identity["metrics"]}),
            # the versions themselves: a later run of fewer metrics supersedes none of these numbers
            tag("versions"): ",".join([identity["method"], *identity["metrics"]]),
            tag("splits"): state.idx.fingerprint(),
            tag("grid_point"): grid_point,
            tag("sweep"): self.sweep,
            tag("tuning_trial"): self.tuning_trial if not reference else "",
            tag("original_run"): state.original.run_id,
            tag("world_size"): str(ctx.world.size) if ctx.world.active else "",
        }
        params = {
            **{f"method.{k}": v for k, v in options.model_dump().items()},
            **self.bench.train_recipe.as_params(),
            "seed": state.seed,
            "protocol": self.plan.protocol.name,
            "n_forget": len(state.idx.forget),
            "n_retain": len(state.idx.retain),
            "n_unseen": len(state.idx.unseen),
            "n_test": len(state.idx.test),
            "torch": torch.__version__,
        }
        return Identity(key, unlearning_key, {k: v for k, v in tags.items() if v != ""}, params, identity, options)

    def run_name(self, entry: Entry[Method], seed: int) -> str:
        plan = self.plan
        return f"{entry.name}-{plan.dataset.name}-{plan.model_name}-{plan.scenario.key}-s{seed}"

    def reuse(self, entry: Entry[Method], state: Seed, ident: Identity) -> tuple[UnlearnOutcome, UnlearnData] | None:
        """The unlearned model of a finished run that differs from this one only in how it was
        evaluated (another protocol, other metrics), loaded from its checksummed artifact in the
        mode its method returned it in: the method is not run twice for the same model."""
        if entry.cls.role is not None:
            return None
        for record in self.store.search({"run_type": "unlearn", "unlearning_hash": ident.unlearning}):
            if not record.tag("model_sha256") or not record.tag("returned_mode"):
                continue
            try:
                weights = self.store.load_checkpoint(record, name="model")
            except CorruptCheckpoint:
                continue
            model = copy.deepcopy(state.original.model)
            model.load_state_dict(weights)
            model.train(record.tag("returned_mode") == "train")
            info = {k: record.metrics[k] for k in record.tag("info_keys").split(",") if k in record.metrics}
            data = UnlearnData(state.splits, entry.cls.splits(), entry.name)
            data.touched = set(filter(None, record.tag("touched").split(",")))
            self.reporter.event(
                f"{entry.name} (seed {state.seed}): unlearned model reused from run {record.run_id[:8]}"
            )
            seconds = record.tag("unlearning_s")
            outcome = UnlearnOutcome(model, time_s=float(seconds) if seconds else None, info=info)
            self.reused_from = record.run_id
            return outcome, data
        return None

    def execute(
        self, entry: Entry[Method], state: Seed, ctx: UnlearnContext, options: Any
    ) -> tuple[UnlearnOutcome, UnlearnData]:
        """The method, with the options its identity hashed, on a private copy of the original, timed
        with the device synchronised."""
        data = UnlearnData(state.splits, entry.cls.splits(), entry.name)
        return unlearn_copy(entry, options, state.original.model, data, ctx, state.seed), data

    def metrics(self, state: Seed) -> list[Entry[Metric]]:
        """The plan's metrics whose reference models exist in this benchmark."""
        have = {"original"} | ({"retrained"} if state.retrained is not None else set())
        if state.idx.forget_subclass is not None:  # a sub-class scenario: the sub-class metrics apply
            have.add("subclasses")
        return [m for m in self.plan.metrics if m.cls.needs <= have]

    def evaluate(
        self, entry: Entry[Method], state: Seed, ctx: UnlearnContext, outcome: UnlearnOutcome
    ) -> dict[str, float]:
        """Every metric under the plan's protocol; the references' outputs are shared across methods.
        Also judges whether the method changed anything (``self.no_op``, docs/protocols.md)."""
        unlearned = outcome.model
        # weights as the method returned them: the paper protocol's passes move BatchNorm statistics
        same_weights = entry.cls.role is None and equal_state(unlearned, state.original.model)
        if not self.plan.protocol.returned_mode:
            unlearned.eval()
        models: dict[str, nn.Module | None] = {
            "unlearned": unlearned,
            "original": state.original.model,
            "retrained": state.retrained.model if state.retrained is not None else None,
        }
        ev = Evaluation(
            models,
            state.splits,
            ctx,
            shared=state.shared,
            time_s=float(outcome.time_s if outcome.time_s is not None else float("nan")),
            retrain_time_s=state.retrained.seconds if state.retrained is not None else float("nan"),
            same_as=entry.cls.role,
        )
        shared_before = sum(state.shared.images.values())
        start = time.perf_counter()
        ev.prepare()
        values = {m.name: self.compute(m, ev) for m in self.metrics(state)}
        bad = nonfinite_outputs(ev)
        if bad:  # numbers computed from NaN or inf logits mean nothing: the row fails instead
            raise DivergenceError(f"{bad}: the metrics of this run are not recorded.")
        synchronize(self.bench.device)
        values["eval_time_s"] = time.perf_counter() - start
        values["eval_images"] = float(ev.images_forwarded() + sum(state.shared.images.values()) - shared_before)
        values["memorisation_gap"] = state.memorisation_gap
        if entry.cls.role is None:  # a reference row is its model by definition
            self.no_op = "weights" if same_weights else ("outputs" if same_outputs(ev) else "")
        clash = sorted(outcome.info.keys() & values.keys())
        if clash:  # the method's own numbers would replace what the run measured of it
            raise PluginError(
                f"Method '{entry.name}' returned info {', '.join(map(repr, clash))}, which the run measures itself: "
                f"name its own numbers after it (e.g. '{entry.name}_{clash[0]}')."
            )
        return {**values, **outcome.info}

    def compute(self, metric: Entry[Metric], ev: Evaluation) -> float:
        """One metric's value. A metric that breaks on non-finite model outputs (an SVC refuses NaN)
        fails this row with a one-line reason, and the command goes on to the next method."""
        try:
            return self.plan.metric(metric).compute(ev)
        except UnlearnkitError:
            raise
        except Exception as err:
            bad = nonfinite_outputs(ev)
            if not bad:
                raise  # finite outputs: the metric's own bug, with its traceback
            raise DivergenceError(
                f"{bad}: metric '{metric.name}' cannot be computed ({type(err).__name__}: {shorten(err, 120)})."
            ) from err

    def weights_to_keep(self, entry: Entry[Method], outcome: UnlearnOutcome) -> dict[str, torch.Tensor] | None:
        """A CPU copy of the unlearned weights to log as the run's artifact (reference rows have
        theirs in their training runs; ``--no-save-models`` keeps none)."""
        if not self.plan.request.save_models or entry.cls.role is not None:
            return None
        return cpu_state_dict(outcome.model)

    def record(
        self,
        run_id: str,
        state: Seed,
        ctx: UnlearnContext,
        data: UnlearnData,
        metrics: dict[str, float],
        weights: dict[str, torch.Tensor] | None,
        tags: dict[str, str],
        ident: Identity,
    ) -> None:
        """Metrics, per-epoch series, what the method touched, the unlearned model itself, what the
        run's config hash is a hash of (identity.json) and the request it was resolved from
        (request.json). A series' last point is its final value (MLflow shows a step metric's
        latest point), so a final metric of the same name is not logged a second time."""
        self.store.log_text(run_id, identity_json(ident.fields), "identity.json")
        resolved = {**self.plan.resolved(), "numerics": {**numerics(), "device": self.bench.device.type}}
        self.store.log_text(run_id, identity_json(resolved), "request.json")
        series = last_points(ctx.series)
        self.store.log_series(run_id, ctx.series)
        self.store.log_metrics(run_id, {k: v for k, v in metrics.items() if k not in series})
        extra = {**tags, tag("touched"): ",".join(sorted(data.touched))}
        if self.reused_from:
            extra[tag("unlearned_in")] = self.reused_from
        if state.weak_original:
            extra[tag("weak_original")] = f"{state.memorisation_gap:.3f}"
            extra[tag("weak_original_reason")] = state.weak_reason
        if self.no_op:
            extra[tag("no_op")] = self.no_op
        self.store.set_tags(run_id, extra)
        if weights is not None:
            self.store.save_checkpoint(run_id, weights, name="model")
        self.store.finish(run_id)


def nonfinite_outputs(ev: Evaluation) -> str:
    """What gave NaN or inf logits among the outputs this evaluation holds ("" when all are finite):
    the unlearned model's own and the reference models' it shares."""
    for (role, split, _), logits in [*ev.own.logits.items(), *ev.shared.logits.items()]:
        if not bool(torch.isfinite(logits).all()):
            return f"The {role} model gives non-finite outputs (NaN or inf) on the {split} split"
    return ""


def last_points(series: list[tuple[str, float, int]]) -> dict[str, float]:
    """The value at the highest step of each series (what the store reports as its final value)."""
    last: dict[str, tuple[int, float]] = {}
    for name, value, step in series:
        if name not in last or step >= last[name][0]:
            last[name] = (step, value)
    return {name: value for name, (_, value) in last.items()}


def run_plan(plan: Plan, store: Store, reporter: Reporter = SILENT) -> list[RunResult]:
    """Validate-then-run entry point used by the CLI and by tests."""
    return Runner(plan, store, reporter).run()


__all__ = ["MEMORISATION_GAP", "MEMORISED_ERROR_RATIO", "RunResult", "Runner", "memorised", "run_plan"]
