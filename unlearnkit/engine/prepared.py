"""A benchmark's data side: the dataset loaded once, its splits per seed on the device, the
contexts methods get, and the identity of everything that determines a result except the seed
and the method. The runner (:mod:`unlearnkit.runner`) drives it; nothing here touches the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit._version import __version__
from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import RawDataset
from unlearnkit.api.data import Preprocess, Split, Stream
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.scenarios import ScoreSource
from unlearnkit.api.types import ImageSpec, Setting
from unlearnkit.engine.config import Plan
from unlearnkit.engine.score_version import score_identity
from unlearnkit.engine.splits import SplitIndices, make_splits
from unlearnkit.errors import ConfigError, PluginError
from unlearnkit.identity import (
    CORE_VERSION,
    array_fingerprint,
    config_hash,
    file_sha256,
    images_fingerprint,
    plugin_version,
)
from unlearnkit.loops.training import TrainRecipe
from unlearnkit.store.mlflow_store import Store, tag

SPLIT_NAMES = ("forget", "retain", "train", "unseen", "test")
# memorisation scores of a benchmark's training images at a seed (a scenario's ``ScenarioData.scores``)
ScoreFactory = Callable[["Benchmark", int], ScoreSource]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device '{name}' requested but no CUDA GPU is available. Valid devices here: auto, cpu.")
    return torch.device(name)


def cache_dir() -> Path:
    return Path(os.environ.get("UNLEARNKIT_CACHE_DIR", Path.home() / ".cache" / "unlearnkit"))


def from_raw_dataset(err: ValueError) -> bool:
    """Whether ``err`` is RawDataset's own refusal of what a loader gave it (its ``__post_init__``)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is RawDataset.__post_init__.__code__


def raw_problem(raw: object) -> str:
    """What a dataset plugin's ``load`` returned that no benchmark can use ("" when nothing): not a
    RawDataset, no classes, or labels outside 0..K-1 (training would index past its logits)."""
    if not isinstance(raw, RawDataset):
        return f"a {type(raw).__name__}, not a RawDataset"
    k = raw.num_classes
    if k < 1:
        return "a RawDataset with no class_names: a classifier needs at least one class"
    channels = raw.image_shape[0]
    for name, values in (("mean", raw.mean), ("std", raw.std)):
        numbers = np.asarray(values, dtype=float) if np.ndim(values) == 1 else np.array([np.nan])
        if len(numbers) != channels or not np.isfinite(numbers).all() or (name == "std" and (numbers <= 0).any()):
            return f"a {name} of {values!r} for {channels}-channel images: one finite value per channel (std above 0)"
    for name, labels in (("train", raw.y_train), ("test", raw.y_test), ("unseen", raw.y_unseen)):
        if labels is not None and np.asarray(labels).dtype.kind not in "iu":
            return f"{name} labels of dtype {np.asarray(labels).dtype}: labels are integer class ids"
        if labels is not None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= k):
            return f"{name} labels from {int(labels.min())} to {int(labels.max())}, but {k} class names (labels are 0..{k - 1})"
    return ""


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_budget(device: torch.device) -> int:
    """Bytes of decoded uint8 images a split may hold on the device (``UNLEARNKIT_DEVICE_DATA_GB``;
    default: a quarter of the GPU's memory, or 8 GiB of host memory on a CPU)."""
    gib = os.environ.get("UNLEARNKIT_DEVICE_DATA_GB")
    if gib:
        return int(float(gib) * 2**30)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 4
    return 8 * 2**30


def stream_workers() -> int:
    """DataLoader workers for streamed splits (``UNLEARNKIT_STREAM_WORKERS``; default: the CPU count, up to 8)."""
    return int(os.environ.get("UNLEARNKIT_STREAM_WORKERS", min(8, os.cpu_count() or 1)))


def data_fingerprint(raw: RawDataset) -> str:
    """Identity of the loaded data: every label, sampled pixels, class names, normalisation, groups."""
    parts = [
        array_fingerprint(raw.y_train, raw.y_test),
        images_fingerprint(raw.x_train),
        images_fingerprint(raw.x_test),
        "|".join(raw.class_names),
        repr((raw.mean, raw.std)),
    ]
    if raw.x_unseen is not None and raw.y_unseen is not None:
        parts += [array_fingerprint(raw.y_unseen), images_fingerprint(raw.x_unseen)]
    if raw.groups is not None:
        parts.append(array_fingerprint(raw.groups.astype(str)))
    if raw.subclasses is not None:  # only when present: older datasets keep their fingerprint
        parts.append(
            array_fingerprint(raw.subclasses, *([raw.subclasses_test] if raw.subclasses_test is not None else []))
        )
        parts.append("|".join(raw.subclass_names or []))
    return config_hash({"data": parts})


class Benchmark:
    """One plan's data on one device, identical for every method and shared by all seeds."""

    def __init__(
        self,
        plan: Plan,
        reporter: Reporter = SILENT,
        device: torch.device | None = None,
        scores: ScoreFactory | None = None,
    ) -> None:
        self.plan = plan
        self.score_source = scores
        # the store a scenario's memorisation scores may read shadow models from (set by a runner)
        self.store: Store | None = None
        self.reporter = reporter
        # resolved where the benchmark runs (a plan may come from another host); the runner passes its own
        self.device = device if device is not None else resolve_device(plan.request.device)
        self.train_recipe: TrainRecipe = plan.train_recipe

    # ----------------------------------------------------------------------------- the data
    @cached_property
    def raw(self) -> RawDataset:
        plan = self.plan
        self.reporter.event(f"Loading dataset {plan.dataset.name}")
        target = cache_dir() / "datasets" / plan.dataset.name
        target.mkdir(parents=True, exist_ok=True)
        try:
            raw = plan.dataset_obj.load(plan.request.data_dir, target)
        except ValueError as err:
            if not from_raw_dataset(err):
                raise  # the loader's own bug keeps its traceback
            raise PluginError(f"Dataset '{plan.dataset.name}' built a RawDataset that is not one: {err}.") from None
        problem = raw_problem(raw)
        if problem:
            raise PluginError(f"Dataset '{plan.dataset.name}' loaded {problem}.")
        return raw

    @property
    def spec(self) -> ImageSpec:
        c, h, w = self.raw.image_shape
        return ImageSpec(c, h, w, self.raw.num_classes)

    @property
    def family(self) -> str:
        return self.plan.model_obj.model_family()

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda" and self.plan.model_obj.channels_last

    def built(self) -> nn.Module:
        """The model plugin's network for this data, checked to be one (a third party's ``build`` may
        return anything; every later step calls the module's methods)."""
        model = self.plan.model_obj.build(self.spec)
        if not isinstance(model, nn.Module):
            raise PluginError(
                f"Model '{self.plan.model_name}' built a {type(model).__name__} from build(spec), not an nn.Module."
            )
        return model

    def build_model(self) -> nn.Module:
        """A freshly built network (``--pretrained``/``--weights`` applied) on the device."""
        model = self.built().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def indices(self, seed: int) -> SplitIndices:
        """The index sets of one seed; the scenario is resolved against the data here."""
        raw = self.raw
        idx = make_splits(
            raw.y_train,
            raw.y_test,
            self.plan.scenario,
            seed,
            raw.class_names,
            self.plan.subset,
            groups=raw.groups,
            y_unseen=raw.y_unseen,
            subclasses=raw.subclasses,
            subclass_names=raw.subclass_names,
            scores=self.scores(seed) if self.plan.scenario.needs_scores() else None,
        )
        if len(idx.forget) == 0 or len(idx.retain) == 0:
            empty = "forget" if len(idx.forget) == 0 else "retain"
            raise ConfigError(
                f"Scenario '{self.plan.scenario.key}' leaves the {empty} set empty ({len(idx.forget)} of the "
                f"{len(idx.forget) + len(idx.retain)} training images forgotten): use a larger subset or a "
                "different scenario."
            )
        return idx

    def check(self) -> None:
        """Load the data and resolve the scenario against it (e.g. the class of ``class:cat``):
        the last checks that need the data, before the store is touched or anything trains."""
        self.indices(self.plan.seeds[0])

    def preprocess(self) -> Preprocess:
        raw = self.raw
        return Preprocess.create(
            raw.mean,
            raw.std,
            self.plan.model_obj.input_size(self.spec),
            self.plan.model_obj.augmentation(self.plan.dataset_obj.augment),
            self.device,
            self.channels_last,
        )

    def training_split(self, indices: np.ndarray, name: str = "train") -> Split:
        """Training images by index, as :meth:`splits` makes its ``train`` split (shadow models'
        halves, the pool a memorisation score is read on)."""
        return self._split(name, self.raw.x_train, self.raw.y_train, np.asarray(indices), self.preprocess())

    def splits(self, idx: SplitIndices) -> dict[str, Split]:
        """The five splits of one seed, resident on the device as uint8."""
        raw = self.raw
        pre = self.preprocess()
        unseen_x, unseen_y = (raw.x_unseen, raw.y_unseen) if idx.unseen_from == "unseen" else (raw.x_test, raw.y_test)
        assert unseen_x is not None and unseen_y is not None
        train = np.sort(np.concatenate([idx.forget, idx.retain]))
        sources = {
            "forget": (raw.x_train, raw.y_train, idx.forget),
            "retain": (raw.x_train, raw.y_train, idx.retain),
            "train": (raw.x_train, raw.y_train, train),
            "unseen": (unseen_x, unseen_y, idx.unseen),
            "test": (raw.x_test, raw.y_test, idx.test),
        }
        return {name: self._split(name, x, y, sel, pre) for name, (x, y, sel) in sources.items()}

    def _split(self, name: str, x: Any, y: np.ndarray, sel: np.ndarray, pre: Preprocess) -> Split:
        labels = torch.from_numpy(y[sel]).to(self.device)
        if isinstance(x, np.ndarray):
            return Split(name, torch.from_numpy(x[sel]).to(self.device), labels, pre)
        c, h, w = x.shape[1:]
        size = len(sel) * c * h * w
        if size > device_budget(self.device):  # too large to hold: decode batch by batch, in workers
            self.reporter.event(f"Streaming the {name} split ({len(sel)} images, {size / 2**30:.1f} GiB decoded)")
            return Split(name, None, labels, pre, stream=Stream(x, np.asarray(sel), workers=stream_workers()))
        return Split(name, torch.from_numpy(np.asarray(x[sel])).to(self.device), labels, pre)

    # ----------------------------------------------------------------------------- contexts
    def setting(self) -> Setting:
        return Setting(self.plan.dataset.name, self.family, self.plan.scenario.rule, self.raw.num_classes)

    def scores(self, seed: int) -> ScoreSource:
        """Memorisation scores of the training images by source name, from the source the
        benchmark was built with (the runners pass :func:`unlearnkit.engine.memorisation.score_source`:
        it trains on this benchmark, so it is handed in rather than imported)."""
        if self.score_source is None:
            raise ConfigError(
                f"Scenario '{self.plan.scenario.key}' draws its forget set by memorisation scores, "
                "but this benchmark was built without a score source (Benchmark(..., scores=score_source))."
            )
        return self.score_source(self, seed)

    def context(
        self, seed: int, forget_class: int | None, method: str = "", idx: SplitIndices | None = None
    ) -> UnlearnContext:
        fine: dict[str, torch.Tensor] = {}
        if idx is not None and idx.forget_subclass is not None and self.raw.subclasses_test is not None:
            fine["test"] = torch.from_numpy(self.raw.subclasses_test[idx.test])
            if idx.unseen_from == "test":
                fine["unseen"] = torch.from_numpy(self.raw.subclasses_test[idx.unseen])
        return UnlearnContext(
            device=self.device,
            seed=seed,
            setting=self.setting(),
            num_classes=self.raw.num_classes,
            model_factory=self.built,
            forget_class=forget_class,
            reporter=self.reporter,
            channels_last=self.channels_last,
            compile=self.plan.request.compile,
            method=method,
            protocol=self.plan.protocol,
            forget_subclass=idx.forget_subclass if idx is not None else None,
            subclasses=fine,
        )

    # ----------------------------------------------------------------------------- identity
    @cached_property
    def model_identity(self) -> dict[str, Any]:
        """What determines a trained original or retrained model, besides its seed and training data."""
        plan, request = self.plan, self.plan.request
        return {
            "core": CORE_VERSION,
            "dataset": plugin_version(plan.dataset),
            "dataset_options": plan.dataset_obj.options.model_dump(),
            "data": data_fingerprint(self.raw),
            "model": plan.model_name,
            "model_plugin": plugin_version(plan.model),
            "model_options": plan.model_obj.options.model_dump(),
            "pretrained": request.pretrained,
            "weights": file_sha256(request.weights) if request.weights else None,
            "subset": plan.subset,
            "train_recipe": self.train_recipe.as_params(),
        }

    @cached_property
    def identity(self) -> dict[str, Any]:
        """Everything but the seed, the method and the reference models that determines a result;
        its hash names the benchmark (one leaderboard per benchmark)."""
        draw = {"eval_draw": self.plan.protocol.draw} if self.plan.protocol.draw else {}
        # A scenario's key says which rule and parameters. Its plugin version enters unless it is
        # 1, so every benchmark of a version-1 scenario (the five 0.2 rules) keeps its 0.2 identity.
        version = self.plan.scenario.algorithm_version
        bumped = {} if version == 1 else {"scenario_version": plugin_version(self.plan.scenario_entry)}
        source = self.plan.scenario.needs_scores()
        if source:  # the scores a forget set is drawn by, and the version of their computation
            bumped["memorisation_scores"] = score_identity(source)
        return {
            **self.model_identity,
            "scenario": self.plan.scenario.key,
            **bumped,
            "protocol": self.plan.protocol.name,
            **draw,
        }

    @cached_property
    def key(self) -> str:
        return config_hash(self.identity)

    @cached_property
    def unlearning_key(self) -> str:
        """The benchmark without its evaluation protocol: what an unlearned model depends on."""
        return config_hash({k: v for k, v in self.identity.items() if k not in ("protocol", "eval_draw")})

    @cached_property
    def protocol_key(self) -> str:
        """The benchmark without the evaluation's draw: what a model of a method that reads the
        protocol (LoTUS's check) depends on; the draw only re-evaluates it."""
        return config_hash({k: v for k, v in self.identity.items() if k != "eval_draw"})

    def tags(self, seed: int) -> dict[str, str]:
        """Tags every run of this benchmark carries (what the leaderboard groups and filters by)."""
        plan = self.plan
        return {
            tag("dataset"): plan.dataset.name,
            tag("model"): plan.model_name,
            tag("scenario"): plan.scenario.key,
            tag("protocol"): plan.protocol.name,
            **({tag("eval_draw"): str(plan.protocol.draw)} if plan.protocol.draw else {}),
            tag("seed"): str(seed),
            tag("train_recipe"): self.train_recipe.name,
            tag("subset"): str(plan.subset) if plan.subset is not None else "full",
            tag("version"): __version__,
            tag("device"): self.device.type,
            **plan.dataset.provenance.as_tags(tag("dataset")),
            **plan.model.provenance.as_tags(tag("model")),
        }
