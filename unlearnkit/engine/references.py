"""The reference models every method is measured against: the original and the retrained one.

Each is trained once per (benchmark, seed) and cached in the store under the hash of everything
that determines it, verified by checksum before reuse, and shared by every method; or loaded
from a file the user brings (``--original``/``--retrained``, identified by its sha256); or absent
(``--no-retrain``: no gold standard, RF-JSD carries the comparison). Concurrent processes train
each model once (:mod:`unlearnkit.claims`). Under torchrun, rank 0 claims and reuses (the other
ranks get its weights by broadcast) or every rank trains data-parallel (:mod:`unlearnkit.ddp`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unlearnkit.api.data import Split
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.weights import cpu_state_dict, load_strict
from unlearnkit.engine.prepared import Benchmark, seed_everything, synchronize
from unlearnkit.engine.splits import SplitIndices
from unlearnkit.identity import array_fingerprint, config_hash, file_sha256, identity_json
from unlearnkit.loops.training import fit
from unlearnkit.parallel import torchrun as ddp
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import CorruptCheckpoint, Store, tag

# What each reference is trained on, from a seed's splits.
TRAINED_ON = {"original": "train", "retrained": "retain"}


@dataclass
class Reference:
    """A reference model, ready to evaluate (eval mode), with where it came from."""

    role: str
    model: nn.Module
    seconds: float  # training time (NaN for a file brought by the user)
    key: str  # identity: the training config hash, or ``file:<sha256>``
    run_id: str = ""  # the store run that holds it (empty for a file)


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
        self._loaded: dict[str, torch.Tensor] = {}  # rank 0: the checkpoint its claim found

    def get(self, role: str, seed: int, idx: SplitIndices, splits: dict[str, Split]) -> Reference | None:
        request = self.bench.plan.request
        if role == "retrained" and request.no_retrain:
            return None
        brought = request.original if role == "original" else request.retrained
        if brought is not None:
            return self.from_file(role, Path(brought))
        indices = np.sort(np.concatenate([idx.forget, idx.retain])) if role == "original" else idx.retain
        return self.train_or_reuse(role, seed, splits[TRAINED_ON[role]], indices)

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

    def train_or_reuse(self, role: str, seed: int, split: Split, indices: np.ndarray) -> Reference:
        """Train ``role`` on ``split``, or reuse the verified cached one (from this process or the store)."""
        ident = {**self.bench.model_identity, "role": role, "seed": seed, "train_indices": array_fingerprint(indices)}
        if self.world.active:  # the ranks' reduction order (and, on the CPU, BatchNorm) shape the weights
            ident["world_size"] = self.world.size
        key = config_hash(ident)
        if key in self.memo:
            state, seconds, run_id = self.memo[key]
            return Reference(role, self._from_state(state), seconds, key, run_id)
        bench = self.bench
        tags = {**bench.tags(seed), tag("run_type"): "train", tag("role"): role, tag("config_hash"): key}
        params = {"role": role, "seed": seed, "images": len(split), **bench.train_recipe.as_params()}
        if self.world.active:
            tags[tag("world_size")] = params["world_size"] = str(self.world.size)
        name = f"{role}-model-{bench.plan.dataset.name}-{bench.plan.model_name}-s{seed}"
        # rank 0 claims (and loads a finished model's checkpoint); every rank learns the outcome
        got = ddp.on_main(f"claim {key}", lambda: self._claim(role, seed, key, name, tags, params))
        if got.finished is not None:
            record = got.finished
            seconds = float(record.metrics.get("train_time_s", float("nan")))
            if self.world.main:
                self.reporter.event(f"Reusing the {role} model (seed {seed}) from run {record.run_id[:8]}")
                model = self._from_state(self._loaded)
            else:
                model = self.bench.build_model().eval()
            self.world.broadcast_state(model)  # rank 0's weights on every rank
            self.memo[key] = (
                cpu_state_dict(model),
                seconds,
                record.run_id,
            )
            self._loaded = {}
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
                state = cpu_state_dict(model)
                self.store.save_checkpoint(run_id, state)
                # what the config hash is a hash of: lets a bundle be checked on import (unlearnkit import)
                self.store.log_text(run_id, identity_json(ident), "identity.json")
                self.store.log_series(run_id, series)
                self.store.log_metrics(run_id, {"train_time_s": seconds})
                self.store.finish(run_id)
            claims.release(self.store, run_id)
        except BaseException as err:
            self.store.fail(run_id, f"{type(err).__name__}: {err}")
            raise
        self.reporter.event(f"Trained the {role} model (seed {seed}) in {seconds:.1f} s")
        self.memo[key] = (state, seconds, run_id)
        return Reference(role, model.eval(), seconds, key, run_id)

    def _claim(
        self, role: str, seed: int, key: str, name: str, tags: dict[str, str], params: dict[str, object]
    ) -> claims.Claim:
        """Claim the training of ``key``, or find it finished with a verified checkpoint (kept in
        ``self._loaded``); a corrupt checkpoint's run is failed and the claim tried again."""
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
            )
            if got.finished is None:
                return got
            record = got.finished
            try:
                self._loaded = self.store.load_checkpoint(record)
            except CorruptCheckpoint as err:
                self.reporter.warn(f"{err} Retraining it.")
                self.store.fail(record.run_id, f"checkpoint corrupt: {err}")
                continue
            return got

    def _train(self, role: str, seed: int, split: Split) -> tuple[nn.Module, float, list[tuple[str, float, int]]]:
        bench = self.bench
        seed_everything(seed)
        model = bench.build_model()
        ctx = bench.context(seed, None, method=role)
        ctx.world = self.world  # every rank trains its part of each global batch (one process: the whole)
        synchronize(bench.device)
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
