"""One benchmark: data -> original -> retrain -> each method -> every metric, all in the store.

The original and retrained models are trained once per (benchmark, seed), cached in the store
under a content hash of everything that determines them, verified by checksum before reuse,
and shared by every method. A method's run is skipped when a finished run with the same config
hash exists; a failing or interrupted run is recorded as such and never counted.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import unlearnkit
from unlearnkit.api import ImageSpec, RawDataset, Setting, UnlearnOutcome
from unlearnkit.config import Plan, config_hash
from unlearnkit.context import UnlearnContext
from unlearnkit.data import Preprocess, Split, UnlearnData
from unlearnkit.errors import ConfigError, DivergenceError, UnlearnkitError
from unlearnkit.evaluation import Evaluation, OutputCache
from unlearnkit.progress import SILENT, Reporter
from unlearnkit.splits import SplitIndices, make_splits
from unlearnkit.store import CorruptCheckpoint, Store, tag
from unlearnkit.training import TrainRecipe, fit, load_train_recipe


@dataclass
class RunResult:
    """One method on one seed: what the CLI prints and tests assert on."""

    method: str
    seed: int
    status: str  # "finished", "skipped" (already in the store) or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    failure: str = ""
    benchmark: str = ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device '{name}' requested but no CUDA GPU is available. Valid devices here: auto, cpu.")
    return torch.device(name)


def cache_dir() -> Path:
    return Path(os.environ.get("UNLEARNKIT_CACHE_DIR", Path.home() / ".cache" / "unlearnkit"))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_fingerprint(raw: RawDataset) -> str:
    """Identity of the loaded arrays: all labels, shapes, and every 97th image's pixels."""
    h = hashlib.sha256()
    for arr in (raw.y_train, raw.y_test, raw.x_train[::97], raw.x_test[::97]):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("|".join(raw.class_names).encode())
    return h.hexdigest()[:20]


def indices_hash(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:20]


class Runner:
    """Executes a validated :class:`Plan` against a :class:`Store`."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        reporter: Reporter = SILENT,
        *,
        variant: str = "",
        recipe: str = "",
        model_cache: dict[str, tuple[dict[str, torch.Tensor], float]] | None = None,
        on_result: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.reporter = reporter
        self.device = resolve_device(plan.request.device)
        self.variant = variant  # a recipe's option-grid point, e.g. "lotus.alpha=8"
        self.recipe_name = recipe
        # config hash -> (CPU state dict, training seconds); a sweep shares one across its cells
        self._models = model_cache if model_cache is not None else {}
        self.on_result = on_result or (lambda result: None)
        self.raw: RawDataset | None = None

    # ------------------------------------------------------------------------------ set-up
    def load_data(self) -> RawDataset:
        if self.raw is None:
            plan = self.plan
            self.reporter.event(f"Loading dataset {plan.dataset.name}")
            target = cache_dir() / "datasets" / plan.dataset.name
            target.mkdir(parents=True, exist_ok=True)
            self.raw = plan.dataset_obj.load(plan.request.data_dir, target)
        return self.raw

    @property
    def spec(self) -> ImageSpec:
        raw = self.load_data()
        c, h, w = raw.image_shape
        return ImageSpec(c, h, w, raw.num_classes)

    @property
    def family(self) -> str:
        return self.plan.model_obj.model_family()

    def recipe(self) -> TrainRecipe:
        return load_train_recipe(self.plan.train_recipe, self.family).with_epochs(self.plan.request.epochs)

    def build_model(self) -> nn.Module:
        model = self.plan.model_obj.build(self.spec).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda" and self.plan.model_obj.channels_last

    def benchmark_identity(self) -> dict[str, Any]:
        """Everything but the seed and the method that determines a result."""
        plan, raw = self.plan, self.load_data()
        return {
            "dataset": plan.dataset.name,
            "dataset_options": plan.dataset_obj.options.model_dump(),
            "data": data_fingerprint(raw),
            "model": plan.request.model,
            "model_options": plan.model_obj.options.model_dump(),
            "pretrained": plan.request.pretrained,
            "weights": str(plan.request.weights) if plan.request.weights else None,
            "scenario": plan.scenario.key,
            "subset": plan.subset,
            "train_recipe": self.recipe().as_params(),
        }

    def splits_on_device(self, idx: SplitIndices) -> dict[str, Split]:
        raw = self.load_data()
        pre = Preprocess.create(
            raw.mean,
            raw.std,
            self.plan.model_obj.input_size(self.spec),
            self.plan.dataset_obj.augment,
            self.device,
            self.channels_last,
        )

        def make(name: str, x: np.ndarray, y: np.ndarray, sel: np.ndarray) -> Split:
            return Split(name, torch.from_numpy(x[sel]).to(self.device), torch.from_numpy(y[sel]).to(self.device), pre)

        return {
            "forget": make("forget", raw.x_train, raw.y_train, idx.forget),
            "retain": make("retain", raw.x_train, raw.y_train, idx.retain),
            "train": make("train", raw.x_train, raw.y_train, np.sort(np.concatenate([idx.forget, idx.retain]))),
            "unseen": make("unseen", raw.x_test, raw.y_test, idx.unseen),
            "test": make("test", raw.x_test, raw.y_test, idx.test),
        }

    def context(self, seed: int, forget_class: int | None, method: str = "") -> UnlearnContext:
        raw = self.load_data()
        setting = Setting(self.plan.dataset.name, self.family, self.plan.scenario.kind, raw.num_classes)
        return UnlearnContext(
            device=self.device,
            seed=seed,
            setting=setting,
            num_classes=raw.num_classes,
            model_factory=lambda: self.plan.model_obj.build(self.spec),
            forget_class=forget_class,
            reporter=self.reporter,
            channels_last=self.channels_last,
            compile=self.plan.request.compile,
            method=method,
        )

    def common_tags(self, seed: int) -> dict[str, str]:
        plan = self.plan
        return {
            tag("dataset"): plan.dataset.name,
            tag("model"): plan.request.model,
            tag("scenario"): plan.scenario.key,
            tag("seed"): str(seed),
            tag("train_recipe"): self.recipe().name,
            tag("subset"): str(plan.subset) if plan.subset is not None else "full",
            tag("version"): unlearnkit.__version__,
            tag("device"): self.device.type,
            **plan.dataset.provenance.as_tags(tag("dataset")),
            **plan.model.provenance.as_tags(tag("model")),
        }

    # ---------------------------------------------------------------------- cached models
    def obtain_model(
        self, kind: str, seed: int, split: Split, indices: np.ndarray, identity: dict[str, Any]
    ) -> tuple[nn.Module, float]:
        """Train ``kind`` ("original" or "retrain") on ``split``, or reuse the verified cached one."""
        ident = {**identity, "kind": kind, "seed": seed, "train_indices": indices_hash(indices)}
        ident.pop("scenario")  # the original does not depend on the scenario beyond its training indices
        key = config_hash(ident)
        if key in self._models:
            state, seconds = self._models[key]
            return self._from_state(state), seconds
        recipe = self.recipe()
        tags = {**self.common_tags(seed), tag("kind"): kind, tag("config_hash"): key}
        params = {"kind": kind, "seed": seed, "images": len(split), **recipe.as_params()}
        name = f"{kind}-{self.plan.dataset.name}-{self.plan.request.model}-s{seed}"
        while True:  # one process trains; concurrent ones wait for its checkpoint
            run_id, record = self.store.claim(
                kind,
                key,
                name,
                tags,
                params,
                on_wait=lambda: self.reporter.event(f"Waiting for another process training {kind} (seed {seed})"),
            )
            if record is None:
                break
            try:
                state = self.store.load_checkpoint(record)
            except CorruptCheckpoint as err:
                self.reporter.warn(f"{err} Retraining it.")
                self.store.fail(record.run_id, f"checkpoint corrupt: {err}")
                continue
            seconds = float(record.metrics.get("train_time_s", float("nan")))
            self.reporter.event(f"Reusing {kind} model (seed {seed}) from run {record.run_id[:8]}")
            self._models[key] = (state, seconds)
            return self._from_state(state), seconds
        try:
            with self.store.heartbeat(run_id):
                seed_everything(seed)
                model = self.build_model()
                ctx = self.context(seed, None, method=kind)
                synchronize(self.device)
                start = time.perf_counter()
                fit(model, split, recipe, ctx, description=f"train {kind} (seed {seed})")
                synchronize(self.device)
                seconds = time.perf_counter() - start
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                self.store.save_checkpoint(run_id, state)
                self.store.log_metrics(run_id, {"train_time_s": seconds})
                self.store.finish(run_id)
        except BaseException as err:
            self.store.fail(run_id, f"{type(err).__name__}: {err}")
            raise
        self.reporter.event(f"Trained {kind} model (seed {seed}) in {seconds:.1f} s")
        self._models[key] = (state, seconds)
        return model, seconds

    def _from_state(self, state: dict[str, torch.Tensor]) -> nn.Module:
        model = self.build_model()
        model.load_state_dict(state)
        return model.eval()

    # ------------------------------------------------------------------------------- runs
    def prepare(self) -> None:
        """Load the data and resolve the scenario against it (e.g. the class of ``class:cat``):
        the last checks that need the data, still before the store is touched or anything trains."""
        raw = self.load_data()
        make_splits(raw.y_train, raw.y_test, self.plan.scenario, self.plan.seeds[0], raw.class_names, self.plan.subset)

    def run(self) -> list[RunResult]:
        """Every seed, every method; returns one result per (method, seed)."""
        self.prepare()
        self.store.check()
        raw = self.load_data()
        identity = self.benchmark_identity()
        benchmark = config_hash(identity)
        results: list[RunResult] = []
        for seed in self.plan.seeds:
            idx = make_splits(raw.y_train, raw.y_test, self.plan.scenario, seed, raw.class_names, self.plan.subset)
            if len(idx.forget) == 0 or len(idx.retain) == 0:
                raise ConfigError("The forget or retain set is empty: use a larger subset or a different scenario.")
            splits = self.splits_on_device(idx)
            train_idx = np.sort(np.concatenate([idx.forget, idx.retain]))
            original, _ = self.obtain_model("original", seed, splits["train"], train_idx, identity)
            retrained, retrain_time = self.obtain_model("retrain", seed, splits["retain"], idx.retain, identity)
            shared = OutputCache()
            for entry in self.plan.methods:
                result = self.run_method(
                    entry, seed, idx, splits, original, (retrained, retrain_time), shared, benchmark
                )
                results.append(result)
                self.on_result(result)
        return results

    def run_method(
        self,
        entry: Any,
        seed: int,
        idx: SplitIndices,
        splits: dict[str, Split],
        original: nn.Module,
        gold: tuple[nn.Module, float],
        shared: OutputCache,
        benchmark: str,
    ) -> RunResult:
        ctx = self.context(seed, idx.forget_class, method=entry.name)
        ctx.gold_standard = lambda: (copy.deepcopy(gold[0]), gold[1])
        options = self.plan.method_options(entry, ctx.setting)
        identity = {
            "benchmark": benchmark,
            "seed": seed,
            "method": entry.name,
            "options": options.model_dump(),
            "method_version": entry.provenance.version,
            "splits": idx.fingerprint(),
        }
        variant = self.variant if not entry.cls.reference else ""
        if variant:
            identity["variant"] = variant
        key = config_hash(identity)
        tags = {
            **self.common_tags(seed),
            tag("kind"): "unlearn",
            tag("method"): entry.name,
            tag("access"): entry.cls.access.value,
            tag("reference"): str(entry.cls.reference).lower(),
            tag("config_hash"): key,
            tag("benchmark"): benchmark,
            tag("splits"): idx.fingerprint(),
            tag("variant"): variant,
            tag("recipe"): self.recipe_name,
            **entry.provenance.as_tags(tag("method")),
        }
        params = {
            **{f"method.{k}": v for k, v in options.model_dump().items()},
            **self.recipe().as_params(),
            "seed": seed,
            "n_forget": len(idx.forget),
            "n_retain": len(idx.retain),
            "n_unseen": len(idx.unseen),
            "n_test": len(idx.test),
            "torch": torch.__version__,
        }
        run_id, existing = self.store.claim(
            "unlearn",
            key,
            f"{entry.name}-{self.plan.dataset.name}-s{seed}",
            tags,
            params,
            on_wait=lambda: self.reporter.event(f"Waiting for another process running {entry.name} (seed {seed})"),
        )
        if existing is not None:
            self.reporter.event(f"{entry.name} (seed {seed}): already in the store, run {existing.run_id[:8]}")
            return RunResult(entry.name, seed, "skipped", existing.metrics, existing.run_id, benchmark=benchmark)
        try:
            with self.store.heartbeat(run_id):
                method = entry.cls(options)
                data = UnlearnData(splits, entry.cls.splits(), entry.name)
                model = copy.deepcopy(original).train()
                seed_everything(seed)
                synchronize(self.device)
                start = time.perf_counter()
                out = method.unlearn(model, data, ctx)
                synchronize(self.device)
                elapsed = time.perf_counter() - start
                outcome = out if isinstance(out, UnlearnOutcome) else UnlearnOutcome(out)
                time_s = elapsed if outcome.time_s is None else outcome.time_s
                unlearned = outcome.model.eval()
                if not all(torch.isfinite(p).all() for p in unlearned.parameters()):
                    raise DivergenceError(f"Method '{entry.name}' produced non-finite weights.")
                ev = Evaluation(
                    {"unlearned": unlearned, "original": original, "retrained": gold[0]},
                    splits,
                    ctx,
                    shared=shared,
                    time_s=time_s,
                    retrain_time_s=gold[1],
                    same_as=outcome.same_as,
                )
                shared_before = sum(shared.images.values())
                start = time.perf_counter()
                metrics = {m.name: m.cls(m.cls.Options()).compute(ev) for m in self.plan.metrics}
                synchronize(self.device)
                cost = {
                    "eval_time_s": time.perf_counter() - start,
                    "eval_images": float(ev.images_forwarded() + sum(shared.images.values()) - shared_before),
                }
                outcome.info.update(cost)
                self.store.log_metrics(run_id, {**metrics, **outcome.info})
                self.store.set_tags(run_id, {tag("touched"): ",".join(sorted(data.touched))})
                self.store.finish(run_id)
        except (DivergenceError, UnlearnkitError) as err:
            self.store.fail(run_id, str(err))
            self.reporter.warn(f"{entry.name} (seed {seed}) failed: {err}")
            return RunResult(entry.name, seed, "failed", run_id=run_id, failure=str(err), benchmark=benchmark)
        except BaseException as err:
            self.store.fail(run_id, f"{type(err).__name__}: {err}")
            raise
        self.reporter.event(f"{entry.name} (seed {seed}): done in {time_s:.2f} s")
        return RunResult(entry.name, seed, "finished", {**metrics, **outcome.info}, run_id, benchmark=benchmark)


def run_plan(plan: Plan, store: Store, reporter: Reporter = SILENT) -> list[RunResult]:
    """Validate-then-run entry point used by the CLI and by tests."""
    return Runner(plan, store, reporter).run()
