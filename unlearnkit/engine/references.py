"""The reference models every method is measured against: the original and the retrained one.

Each is trained once per (benchmark, seed) and cached in the store under the hash of everything
that determines it, verified by checksum before reuse, and shared by every method; or loaded
from a file the user brings (``--original``/``--retrained``, identified by its sha256); or absent
(``--no-retrain``: no gold standard, RF-JSD carries the comparison). Concurrent processes train
each model once (:mod:`unlearnkit.claims`). Under torchrun, rank 0 claims and reuses (the other
ranks get its weights by broadcast) or every rank trains data-parallel (:mod:`unlearnkit.ddp`).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit.api.data import Split
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.types import ImageSpec
from unlearnkit.api.weights import cpu_state_dict, load_strict, unusable_tensor
from unlearnkit.engine.prepared import Benchmark, seed_everything, synchronize
from unlearnkit.engine.splits import SplitIndices
from unlearnkit.engine.stages import numerics_tags
from unlearnkit.errors import DivergenceError, StoreError, counted
from unlearnkit.identity import array_fingerprint, config_hash, file_sha256, identity_json
from unlearnkit.loops.accounting import ready_to_time, throughput
from unlearnkit.loops.packing import Strategy, TrainJob, auto_models_per_device, fit_many, resolve_strategy
from unlearnkit.loops.training import fit
from unlearnkit.parallel import torchrun as ddp
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import CorruptCheckpoint, RunRecord, Store, tag

# What each reference is trained on, from a seed's splits.
TRAINED_ON = {"original": "train", "retrained": "retain"}
REFERENCE_ROLES = tuple(TRAINED_ON)
# A training run's param: the input its model was built for, so a bundle's checkpoint can be
# strict-loaded into the same architecture on import without loading the data.
IMAGE_SPEC = "image_spec"


#: Training images a new reference model forwards before it is kept: enough to see an overflow.
OUTPUT_CHECK_IMAGES = 64


def image_spec_text(spec: ImageSpec) -> str:
    return json.dumps(asdict(spec), sort_keys=True)


def parse_image_spec(text: str) -> ImageSpec | None:
    """The :class:`ImageSpec` of an ``image_spec`` param, or None when it is not one (1 to 65536 each)."""
    raw = json.loads(text)
    fields = ("channels", "height", "width", "num_classes")
    if not isinstance(raw, dict) or set(raw) != set(fields):
        return None
    if not all(type(raw[f]) is int and 1 <= raw[f] <= 65536 for f in fields):
        return None
    return ImageSpec(**{f: raw[f] for f in fields})


def measured_seconds(record: RunRecord) -> float:
    """A reference model's training time, the RTE denominator: NaN for a model imported from a
    bundle, whose clock was another machine's, unless the import vouched for it (--trust-times)."""
    if record.tag("imported_from") and record.tag("imported_times") != "trusted":
        return math.nan
    return float(record.metrics.get("train_time_s", math.nan))


@dataclass
class Reference:
    """A reference model, ready to evaluate (eval mode), with where it came from."""

    role: str
    model: nn.Module
    seconds: float  # training time (NaN for a file brought by the user)
    key: str  # identity: the training config hash, or ``file:<sha256>``
    run_id: str = ""  # the store run that holds it (empty for a file)


@dataclass(frozen=True)
class Wanted:
    """A reference model to train: its role and seed, the split it trains on and that split's
    positions in the training set (what its identity fingerprints)."""

    role: str
    seed: int
    split: Split
    indices: np.ndarray


# A sweep shares trained models across its cells: key -> (CPU state dict, seconds, run id).
ModelMemo = dict[str, tuple[dict[str, torch.Tensor], float, str]]


class References:
    """Obtains the original and retrained models of a benchmark's seeds."""

    def __init__(self, bench: Benchmark, store: Store, reporter: Reporter = SILENT, memo: ModelMemo | None = None):
        self.bench = bench
        self.store = store
        self.reporter = reporter
        self.memo: ModelMemo = memo if memo is not None else {}
        self.world = ddp.world()  # the ranks that train together (one process unless under torchrun)
        self._loaded: nn.Module | None = None  # rank 0: the model of the checkpoint its claim found

    def get(self, role: str, seed: int, idx: SplitIndices, splits: dict[str, Split]) -> Reference | None:
        request = self.bench.plan.request
        if role == "retrained" and request.no_retrain:
            return None
        brought = request.original if role == "original" else request.retrained
        if brought is not None:
            return self.from_file(role, Path(brought))
        want = self.wanted(role, seed, idx, splits)
        return self.train_or_reuse(role, seed, want.split, want.indices)

    def wanted(self, role: str, seed: int, idx: SplitIndices, splits: dict[str, Split]) -> Wanted:
        """The reference ``role`` of a seed as a model to train (what :meth:`train_many` packs)."""
        indices = np.sort(np.concatenate([idx.forget, idx.retain])) if role == "original" else idx.retain
        return Wanted(role, seed, splits[TRAINED_ON[role]], indices)

    def to_train(self, seed: int, idx: SplitIndices, splits: dict[str, Split]) -> list[Wanted]:
        """The seed's references this run trains (not the ones a user brought, nor a skipped gold standard)."""
        request = self.bench.plan.request
        skip = {"original": request.original is not None}
        skip["retrained"] = request.retrained is not None or request.no_retrain
        return [self.wanted(role, seed, idx, splits) for role in REFERENCE_ROLES if not skip[role]]

    def from_file(self, role: str, path: Path) -> Reference:
        digest = file_sha256(path)
        key = f"file:{digest[:20]}"
        if key not in self.memo:
            model = self.bench.build_model()
            what = "Original model file" if role == "original" else "Retrained model file"
            load_strict(model, path, label=str(self.bench.plan.model_name), what=what)
            self.memo[key] = (cpu_state_dict(model), float("nan"), "")
            self.reporter.event(f"Using {role} model from {path} (sha256 {digest[:12]})")
        state, seconds, _ = self.memo[key]
        return Reference(role, self._from_state(state), seconds, key)

    def identity(self, role: str, seed: int, indices: np.ndarray) -> dict[str, Any]:
        """What a trained reference model's config hash hashes (also read by sweep estimates)."""
        ident = {**self.bench.model_identity, "role": role, "seed": seed, "train_indices": array_fingerprint(indices)}
        if self.world.active:  # the ranks' reduction order (and, on the CPU, BatchNorm) shape the weights
            ident["world_size"] = self.world.size
        if self.bench.plan.request.threads is not None:  # pinned: part of what made the weights
            ident["threads"] = self.bench.plan.request.threads
        return ident

    def train_or_reuse(self, role: str, seed: int, split: Split, indices: np.ndarray) -> Reference:
        """Train ``role`` on ``split``, or reuse the verified cached one (from this process or the store)."""
        ident = self.identity(role, seed, indices)
        key = config_hash(ident)
        if key in self.memo:
            state, seconds, run_id = self.memo[key]
            return Reference(role, self._from_state(state), seconds, key, run_id)
        name, tags, params = self.run_fields(role, seed, split, key)
        # rank 0 claims (and loads a finished model's checkpoint); every rank learns the outcome
        got = ddp.on_main(f"claim {key}", lambda: self._claim(role, seed, key, name, tags, params))
        if got.finished is not None:
            record = got.finished
            seconds = measured_seconds(record)
            if self.world.main:
                self.reporter.event(f"Reusing the {role} model (seed {seed}) from run {record.run_id[:8]}")
                assert self._loaded is not None
                model = self._loaded
                if IMAGE_SPEC not in record.params:  # trained before runs recorded it: lets the model be exported
                    self.store.log_params(record.run_id, {IMAGE_SPEC: params[IMAGE_SPEC]})
            else:
                model = self.bench.build_model().eval()
            self.world.broadcast_state(model)  # rank 0's weights on every rank
            self.memo[key] = (
                cpu_state_dict(model),
                seconds,
                record.run_id,
            )
            self._loaded = None
            return Reference(role, model, seconds, key, record.run_id)
        assert got.run_id is not None
        run_id = got.run_id
        if not self.world.main:  # trains with rank 0, step for step; rank 0 records the run
            model, seconds, _ = self._train(role, seed, split)
            self.memo[key] = (cpu_state_dict(model), seconds, run_id)
            return Reference(role, model, seconds, key, run_id)
        try:
            with claims.heartbeat(self.store, run_id):
                model, seconds, series = self._train(role, seed, split)
                state = self.record(
                    run_id,
                    ident,
                    model,
                    seconds,
                    series,
                    throughput(model, split, self.bench.train_recipe, seconds),
                    split,
                )
            claims.release(self.store, run_id)
        except BaseException as err:
            self.store.fail(run_id, f"{type(err).__name__}: {err}")
            raise
        self.reporter.event(f"Trained the {role} model (seed {seed}) in {seconds:.1f} s")
        self.memo[key] = (state, seconds, run_id)
        return Reference(role, model.eval(), seconds, key, run_id)

    def run_fields(self, role: str, seed: int, split: Split, key: str) -> tuple[str, dict[str, str], dict[str, object]]:
        """A reference training run's name, tags and params."""
        bench = self.bench
        tags = {**bench.tags(seed), **numerics_tags(), tag("run_type"): "train", tag("role"): role}
        tags[tag("config_hash")] = key
        params = {"role": role, "seed": seed, "images": len(split), **bench.train_recipe.as_params()}
        params[IMAGE_SPEC] = image_spec_text(bench.spec)
        if self.world.active:
            tags[tag("world_size")] = params["world_size"] = str(self.world.size)
        return f"{role}-model-{bench.plan.dataset.name}-{bench.plan.model_name}-s{seed}", tags, params

    def finished_keys(self) -> set[str]:
        """The identities of this dataset's and model's finished reference trainings, in one search."""
        if not self.store.exists():
            return set()
        plan = self.bench.plan
        found = self.store.search({"run_type": "train", "dataset": plan.dataset.name, "model": str(plan.model_name)})
        return {rec.tag("config_hash") for rec in found}

    def record(
        self,
        run_id: str,
        ident: dict[str, Any],
        model: nn.Module,
        seconds: float,
        series: list[tuple[str, float, int]],
        measured: dict[str, float],
        split: Split,
    ) -> dict[str, torch.Tensor]:
        """A trained reference's run completed: checkpoint, identity, series, times; its CPU state.
        A model with non-finite weights or statistics, or whose outputs on the first images of its
        training split are not finite (finite weights can overflow), is refused (DivergenceError) and
        never finished: a finished reference is reused by every later run."""
        state = cpu_state_dict(model)
        problem = unusable_tensor(state)
        sample = split.subset(torch.arange(min(len(split), OUTPUT_CHECK_IMAGES), device=split.device))
        if not problem and not bool(torch.isfinite(predict_logits(model, sample)).all()):
            problem = "gives non-finite outputs (NaN or infinity) on its training images"
        if problem:
            raise DivergenceError(
                f"The trained {ident['role']} model (seed {ident['seed']}) {problem}: its training diverged "
                "(lower the training recipe's lr), so it is not kept."
            )
        self.store.save_checkpoint(run_id, state)
        # what the config hash is a hash of: lets a bundle be checked on import (unlearnkit import)
        self.store.log_text(run_id, identity_json(ident), "identity.json")
        self.store.log_series(run_id, series)
        self.store.log_metrics(run_id, {"train_time_s": seconds, **measured})
        self.store.finish(run_id)
        return state

    def train_many(self, wanted: list[Wanted], per_device: int | None, strategy: Strategy = "auto") -> int:
        """Train every ``wanted`` reference the store does not hold yet, ``per_device`` at a time in
        one process (:func:`~unlearnkit.loops.packing.fit_many`): the same identities, seeds and
        data order as :meth:`train_or_reuse`, which then finds them. Returns how many it trained.
        Under torchrun (data-parallel training of each model) nothing is packed."""
        bench = self.bench
        if self.world.active or per_device == 1 or bench.train_recipe.epochs == 0 or not wanted:
            return 0
        resolved = resolve_strategy(strategy, bench.device)
        one_thread = resolved == "threads" and bench.device.type == "cpu"  # each model on one core
        if one_thread and bench.plan.request.threads not in (None, 1):
            self.reporter.event(
                f"Training reference models one at a time: --threads {bench.plan.request.threads} is part of their "
                "identity, and a CPU pack trains each model on one thread (--threads 1 packs them)."
            )
            return 0
        if per_device is None:
            first = wanted[0]
            probe = TrainJob(bench.build_model(), first.split, bench.context(first.seed, None), "probe")
            per_device = auto_models_per_device(probe, bench.train_recipe)
            if per_device == 1:
                return 0
        claimed: dict[str, tuple[Wanted, dict[str, Any], str]] = {}  # key -> (wanted, identity, run id)
        done = self.finished_keys()  # found again by train_or_reuse: no claim, no checkpoint read here
        for want in wanted:
            ident = self.identity(want.role, want.seed, want.indices)
            key = config_hash(ident)
            if key in self.memo or key in done or key in claimed:
                continue
            name, tags, params = self.run_fields(want.role, want.seed, want.split, key)
            tags[tag("models_per_device")] = str(per_device)
            if one_thread:
                tags[tag("threads")] = "1"
            got = self._claim(want.role, want.seed, key, name, tags, params)
            self._loaded = None  # a finished one is found again by train_or_reuse
            if got.finished is None:
                assert got.run_id is not None
                claimed[key] = (want, ident, got.run_id)
        if not claimed:
            return 0
        jobs = []
        for want, _, _ in claimed.values():
            seed_everything(want.seed)  # the initial weights train_or_reuse would draw
            ctx = bench.context(want.seed, None, method=want.role)
            jobs.append(
                TrainJob(bench.build_model(), want.split, ctx, f"train the {want.role} model (seed {want.seed})")
            )
        advance = self.reporter.counter("reference models, packed", len(jobs))
        failures: list[BaseException] = []
        open_runs = {run_id for _, _, run_id in claimed.values()}
        finished: list[str] = []
        with ExitStack() as beats:
            for run_id in open_runs:
                beats.enter_context(claims.heartbeat(self.store, run_id))
            try:
                synchronize(bench.device)
                outcomes = fit_many(
                    jobs, bench.train_recipe, per_device=per_device, strategy=strategy, on_done=lambda i: advance()
                )
                for (key, (want, ident, run_id)), job, out in zip(claimed.items(), jobs, outcomes):
                    if out.error is not None:  # this model's run fails; the pack's others are kept
                        self.store.fail(run_id, f"{type(out.error).__name__}: {out.error}")
                        open_runs.discard(run_id)
                        failures.append(out.error)
                        continue
                    measured = throughput(job.model, want.split, bench.train_recipe, out.seconds)
                    try:
                        state = self.record(run_id, ident, job.model, out.seconds, job.ctx.series, measured, want.split)
                    except DivergenceError as err:  # this model's run fails; the pack's others are kept
                        self.store.fail(run_id, f"{type(err).__name__}: {err}")
                        open_runs.discard(run_id)
                        failures.append(err)
                        continue
                    open_runs.discard(run_id)
                    finished.append(run_id)
                    self.memo[key] = (state, out.seconds, run_id)
            except BaseException as err:
                for run_id in open_runs:
                    self.store.fail(run_id, f"{type(err).__name__}: {err}")
                raise
        for run_id in finished:
            claims.release(self.store, run_id)
        self.reporter.event(
            f"Trained {counted(len(finished), 'reference model')} {outcomes[0].strategy}-packed, "
            f"{per_device} per device ({outcomes[0].seconds:.1f} s each)"
        )
        if failures:
            raise failures[0]
        return len(finished)

    def _claim(
        self, role: str, seed: int, key: str, name: str, tags: dict[str, str], params: dict[str, object]
    ) -> claims.Claim:
        """Claim the training of ``key``, or find it finished with a verified checkpoint (kept in
        ``self._loaded``); a checkpoint that is corrupt or does not load into this architecture
        has its run failed, and the claim is tried again (the model is retrained)."""
        while True:  # one process trains; concurrent ones wait for its checkpoint
            got = claims.claim(
                self.store,
                "train",
                key,
                name,
                tags,
                params,
                on_wait=lambda: self.reporter.event(
                    f"Waiting for another process training the {role} model (seed {seed})"
                ),
                notify=self.reporter.event,
            )
            if got.finished is None:
                return got
            record = got.finished
            try:
                self._loaded = self._from_state(self.store.load_checkpoint(record))
            except CorruptCheckpoint as err:
                reason = str(err)
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - another architecture's weights are as unusable as torn ones
                detail = (str(err).strip().splitlines() or [""])[0][:160]
                reason = (
                    f"Checkpoint of run {record.run_id} does not load into this model ({type(err).__name__}: {detail})."
                )
            else:
                return got
            self.reporter.warn(f"{reason} Retraining it.")
            self.store.fail(record.run_id, f"checkpoint corrupt: {reason}")

    def _train(self, role: str, seed: int, split: Split) -> tuple[nn.Module, float, list[tuple[str, float, int]]]:
        bench = self.bench
        seed_everything(seed)
        model = bench.build_model()
        ctx = bench.context(seed, None, method=role)
        ctx.world = self.world  # every rank trains its part of each global batch (one process: the whole)
        synchronize(bench.device)
        ready_to_time()
        start = time.perf_counter()
        if bench.train_recipe.epochs > 0:
            fit(model, split, bench.train_recipe, ctx, description=f"train the {role} model (seed {seed})")
        synchronize(bench.device)
        seconds = time.perf_counter() - start
        self.world.check_same(model, f"The {role} model")
        return model.eval(), seconds, ctx.series

    def _from_state(self, state: dict[str, torch.Tensor]) -> nn.Module:
        model = self.bench.build_model()
        model.load_state_dict(state)
        return model.eval()
