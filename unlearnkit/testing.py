"""Helpers for plugin authors' tests: a tiny dataset, a tiny model, a tiny trained benchmark,
and the conformance checks every built-in passes (``check_method``, ``check_metric``,
``check_dataset``, ``check_model``, ``check_scenario``). Everything runs on the CPU in seconds.

    from unlearnkit.testing import check_method
    def test_my_method():
        check_method(MyMethod)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Dataset, Method, Metric, Model, Options, Plugin, RawDataset
from unlearnkit.api.data import Preprocess, Split, UnlearnData
from unlearnkit.api.ensemble import Ensemble, EnsembleMetric
from unlearnkit.api.evaluation import Evaluation, OutputCache, predict_logits
from unlearnkit.api.hookspecs import hookimpl
from unlearnkit.api.outcome import returned_outcome
from unlearnkit.api.scenarios import Scenario
from unlearnkit.api.types import Augment, ImageSpec, Setting
from unlearnkit.discovery.registry import name_problem
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.engine.stages import LeftAlone
from unlearnkit.errors import PluginError
from unlearnkit.loops.training import TrainRecipe, accuracy, fit


# ------------------------------------------------------------------------------- tiny plugins
class TinyOptions(Options):
    classes: int = Field(4, ge=2, description="Number of classes.")
    per_class_train: int = Field(40, ge=2, description="Training images per class.")
    per_class_test: int = Field(20, ge=2, description="Test images per class.")
    noise: float = Field(0.7, ge=0, description="Pixel noise: makes unseen accuracy < 1, as in real data.")


class TinyDataset(Dataset):
    """Class prototypes plus Gaussian noise, 1×8×8: learnable, memorisable, and far from perfect
    on unseen images — the three things an unlearning test needs."""

    name = "tiny"
    summary = "Tiny synthetic 1x8x8 data for tests (embedded)."
    embedded = True
    default_train_recipe = "fast"
    Options = TinyOptions

    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        o = self.options
        rng = np.random.default_rng(12345)
        protos = rng.uniform(0, 1, size=(o.classes, 1, 8, 8))

        def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
            y = np.repeat(np.arange(o.classes), per_class)
            x = protos[y] + rng.normal(0, o.noise, size=(len(y), 1, 8, 8))
            return (np.clip(x, 0, 1) * 255).round().astype(np.uint8), y

        x_tr, y_tr = draw(o.per_class_train)
        x_te, y_te = draw(o.per_class_test)
        return RawDataset(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(o.classes)], (0.5,), (0.3,))


class TinyModel(Model):
    """Two conv layers and a linear head: trains to 100 % on tiny data in about a second."""

    name = "tiny_cnn"
    summary = "Tiny CNN for tests."
    family = "tiny"

    def build(self, spec: ImageSpec) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(spec.channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128, spec.num_classes),
        )


class TinyPlugin:
    """Register with ``host.register(TinyPlugin())`` to get the ``tiny`` dataset and ``tiny_cnn``."""

    @hookimpl
    def register_datasets(self, register: Any) -> None:
        register(TinyDataset)

    @hookimpl
    def register_models(self, register: Any) -> None:
        register(TinyModel)


TINY_RECIPE = TrainRecipe(
    name="tiny",
    optimizer="adam",
    lr=3e-3,
    momentum=0.9,
    weight_decay=0.0,
    batch_size=32,
    epochs=40,
    schedule="constant",
    warmup_epochs=0,
)


# ------------------------------------------------------------------------------ a benchmark
@dataclass
class TinyBench:
    """Splits on the CPU plus trained original and retrained models, for direct method calls."""

    splits: dict[str, Split]
    original: nn.Module
    retrained: nn.Module
    seed: int
    num_classes: int
    forget_class: int | None
    dataset: str = "tiny"
    shared: OutputCache = field(default_factory=OutputCache)
    rule: str = ""  # the forget scenario's rule (``Setting.scenario_rule``); empty: the default scenario's

    def context(self, method: str = "", family: str = "tiny") -> UnlearnContext:
        ctx = UnlearnContext(
            device=torch.device("cpu"),
            seed=self.seed,
            setting=Setting(self.dataset, family, self.rule or parse_scenario("0.2").rule, self.num_classes),
            num_classes=self.num_classes,
            model_factory=lambda: TinyModel().build(ImageSpec(1, 8, 8, self.num_classes)),
            forget_class=self.forget_class,
            method=method,
        )
        ctx.gold_standard = lambda: (copy.deepcopy(self.retrained), 1.0)
        return ctx

    def data(self, method: type[Method]) -> UnlearnData:
        return UnlearnData(self.splits, method.splits(), method.name)


def tiny_bench(seed: int = 0, forget: str = "0.2", recipe: TrainRecipe = TINY_RECIPE) -> TinyBench:
    """Train the original and retrained tiny models (about two seconds on a CPU)."""
    raw = TinyDataset().load(None, Path("."))
    scenario = parse_scenario(forget)
    idx = make_splits(raw.y_train, raw.y_test, scenario, seed, raw.class_names)
    pre = Preprocess.create(raw.mean, raw.std, (8, 8), Augment(), torch.device("cpu"))

    def split(name: str, x: Any, y: np.ndarray, sel: np.ndarray) -> Split:
        return Split(name, torch.from_numpy(np.asarray(x[sel])), torch.from_numpy(y[sel]), pre)

    splits = {
        "forget": split("forget", raw.x_train, raw.y_train, idx.forget),
        "retain": split("retain", raw.x_train, raw.y_train, idx.retain),
        "train": split("train", raw.x_train, raw.y_train, np.sort(np.concatenate([idx.forget, idx.retain]))),
        "unseen": split("unseen", raw.x_test, raw.y_test, idx.unseen),
        "test": split("test", raw.x_test, raw.y_test, idx.test),
    }
    bench = TinyBench(splits, nn.Identity(), nn.Identity(), seed, raw.num_classes, idx.forget_class, rule=scenario.rule)
    models = []
    for name in ("train", "retain"):
        torch.manual_seed(seed)
        model = TinyModel().build(ImageSpec(1, 8, 8, raw.num_classes))
        models.append(fit(model, splits[name], recipe, bench.context(name)).eval())
    bench.original, bench.retrained = models
    return bench


# ---------------------------------------------------------------------------- conformance
def check_declarations(cls: type[Plugin]) -> None:
    """What every plugin class declares, checked as ``unlearnkit show`` and ``-o`` will read it: a
    ``name`` the command line can select (no whitespace, none of ``, . = :``, no leading ``-``), a
    one-line ``summary``, and ``Options`` a ``uk.Options`` subclass whose every field has a default
    and a description (``unlearnkit show`` prints them; a bare pydantic model or a dataclass would
    skip the checks every option gets)."""
    name = cls.name
    assert isinstance(name, str) and name, f"{cls.__name__} needs a `name`"
    problem = name_problem(name)  # what registering it refuses too
    assert not problem, f"{cls.__name__}: name {name!r} {problem}"
    assert isinstance(cls.summary, str) and cls.summary, f"{name} needs a one-line `summary`"
    options = cls.Options
    assert isinstance(options, type) and issubclass(options, Options), (
        f"{name}: Options is {options!r}, not a subclass of uk.Options (class Options(uk.Options): ...)"
    )
    for key, info in options.model_fields.items():
        assert info.description, f"{name}: option {key!r} has no description (Field(..., description=...))"
        assert not info.is_required(), f"{name}: option {key!r} has no default (every option needs one)"


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def forget_entropy(model: nn.Module, split: Split) -> float:
    p = torch.softmax(predict_logits(model, split).double(), 1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


@dataclass
class MethodReport:
    """What ``check_method`` measured, for authors who want to assert more."""

    acc_forget: tuple[float, float]  # (original, unlearned)
    acc_retain: tuple[float, float]
    entropy_forget: tuple[float, float]
    touched: set[str]


def run_method(
    cls: type[Method], bench: TinyBench, options: Mapping[str, Any] | None = None
) -> tuple[nn.Module, UnlearnData]:
    """Run ``cls`` as the runner does: on a private train-mode copy of the original, under the
    run seed, with ``options`` (default: the class's conformance options) over its per-setting defaults."""
    ctx = bench.context(cls.name)
    opts = cls.parse_options(
        cls.conformance.options if options is None else options, defaults=cls.default_options(ctx.setting)
    )
    data = bench.data(cls)
    torch.manual_seed(bench.seed)
    watch = LeftAlone(data)
    try:
        out = cls(opts).unlearn(copy.deepcopy(bench.original).train(), data, ctx)
    finally:  # the test session goes on under the settings and data it had
        watch.restore()
    try:  # the runner's own checks, so a test shows the line a run would fail with
        watch.check(cls.name)
        outcome = returned_outcome(cls, out, bench.original, ctx)
    except PluginError as err:
        raise AssertionError(str(err)) from None
    return outcome.model.eval(), data


def _whole_class_rule() -> str:
    """The registered scenario that forgets one whole class (class-only methods are checked on it)."""
    from unlearnkit.discovery.host import registries

    found = [e.name for e in registries().scenarios.entries() if e.cls.forgets_whole_classes]
    assert found, "no registered scenario forgets a whole class"
    return found[0]


def check_method(
    cls: type[Method], options: Mapping[str, Any] | None = None, *, bench: TinyBench | None = None
) -> MethodReport:
    """The method contract (docs/methods.md) on tiny data; raises AssertionError naming the breach.

    deterministic under a seed; touches only declared data; moves forget-set behaviour as
    ``cls.conformance.claim`` says while ``original`` (the control) does not; keeps retain accuracy
    within ``cls.conformance.retain_tolerance``.
    """
    assert isinstance(cls, type) and issubclass(cls, Method), f"{cls!r} is not a unlearnkit.api.Method"
    check_declarations(cls)
    rules = cls.conformance
    assert rules.claim in ("acc_forget_down", "entropy_forget_up", "none"), f"{cls.name}: unknown claim {rules.claim!r}"
    whole_class = _whole_class_rule()
    if bench is None:
        scenario = parse_scenario("0.2").rule
    else:
        scenario = bench.rule or (whole_class if bench.forget_class is not None else parse_scenario("0.2").rule)
    if not cls.accepts_scenario(scenario):  # e.g. a class-only method handed the shared instance bench
        assert cls.accepts_scenario(whole_class), (
            f"{cls.name} accepts neither {scenario} nor {whole_class} forget sets: nothing to check"
        )
        bench = tiny_bench(forget=f"{whole_class}:0")
    bench = bench or tiny_bench()
    first, data = run_method(cls, bench, options)
    assert data.touched <= cls.splits(), f"{cls.name} touched {data.touched - cls.splits()} without declaring it"
    second, _ = run_method(cls, bench, options)
    assert _same(_state(first), _state(second)), f"{cls.name} is not deterministic under a fixed seed"
    assert all(torch.isfinite(p).all() for p in first.parameters()), f"{cls.name} produced non-finite weights"
    f, r = bench.splits["forget"], bench.splits["retain"]
    report = MethodReport(
        acc_forget=(accuracy(bench.original, f), accuracy(first, f)),
        acc_retain=(accuracy(bench.original, r), accuracy(first, r)),
        entropy_forget=(forget_entropy(bench.original, f), forget_entropy(first, f)),
        touched=set(data.touched),
    )
    if rules.claim == "acc_forget_down":
        assert report.acc_forget[1] < report.acc_forget[0], (
            f"{cls.name}: forget accuracy did not drop {report.acc_forget}"
        )
    elif rules.claim == "entropy_forget_up":
        assert report.entropy_forget[1] > report.entropy_forget[0] * 1.05, (
            f"{cls.name}: forget-set entropy did not rise {report.entropy_forget}"
        )
    if rules.claim != "none":
        drop = report.acc_retain[0] - report.acc_retain[1]
        assert drop <= rules.retain_tolerance, (
            f"{cls.name}: retain accuracy fell by {drop:.3f} > tolerance {rules.retain_tolerance} {report.acc_retain}"
        )
    return report


def synthetic_ensemble(members: int = 6, examples: int = 40, classes: int = 4, shift: float = 1.0) -> Ensemble:
    """Seeded logits of ``members`` unlearned, retrained and original models on four splits: the
    unlearned and original members ``shift`` more confident on the true class of D_f than the retrained
    ones. Enough to exercise an ensemble score without training anything."""
    rng = np.random.default_rng(0)
    labels = {
        split: np.tile(rng.integers(0, classes, examples), (members, 1))
        for split in ("forget", "retain", "test", "unseen")
    }

    def logits(split: str, boost: float) -> np.ndarray:
        z = rng.normal(0.0, 1.0, (members, examples, classes)).astype(np.float32)
        np.put_along_axis(z, labels[split][..., None], 2.0 + boost, axis=-1)
        return z

    outputs = {
        role: {split: logits(split, shift if (split == "forget" and role != "retrained") else 0.0) for split in labels}
        for role in ("unlearned", "retrained", "original")
    }
    return Ensemble(outputs, labels, seed=0, resamples=200)


def check_ensemble_metric(cls: type[EnsembleMetric]) -> float:
    """An ensemble score returns a finite value inside its interval, deterministically."""
    ens = synthetic_ensemble()
    first, again = cls(cls.Options()).score(ens), cls(cls.Options()).score(ens)
    assert isinstance(first.value, float) and math.isfinite(first.value), f"{cls.name} returned {first.value}"
    assert first == again, f"{cls.name} is not deterministic: {first} then {again}"
    if not math.isnan(first.low):
        assert first.low <= first.value <= first.high, f"{cls.name}: {first.value} outside [{first.low}, {first.high}]"
    return first.value


def check_metric(cls: type[Metric], bench: TinyBench | None = None) -> float:
    """A metric returns a finite float, deterministically, and declares a valid direction (an
    ensemble score: from a synthetic ensemble, see :func:`check_ensemble_metric`)."""
    assert isinstance(cls, type) and issubclass(cls, Metric), f"{cls!r} is not a unlearnkit.api.Metric"
    check_declarations(cls)
    assert cls.direction in ("higher", "lower", "closer_to_retrain"), f"{cls.name}: bad direction {cls.direction!r}"
    if issubclass(cls, EnsembleMetric):
        return check_ensemble_metric(cls)
    bench = bench or tiny_bench()
    ctx = bench.context("original")
    if "subclasses" in cls.needs:  # two fine classes per class: the forgotten one is class 0's first
        ctx.forget_subclass = 0
        ctx.subclasses = {
            s: bench.splits[s].y.cpu() * 2 + torch.arange(len(bench.splits[s])) % 2 for s in ("test", "unseen")
        }
    models = {"unlearned": copy.deepcopy(bench.original), "original": bench.original, "retrained": bench.retrained}
    try:  # a value the runner would refuse is the line a run would fail with
        values = [
            cls(cls.Options()).compute(Evaluation(models, bench.splits, ctx, time_s=0.5, retrain_time_s=2.0))
            for _ in range(2)
        ]
    except PluginError as err:
        raise AssertionError(str(err)) from None
    assert isinstance(values[0], float), f"{cls.name} returned {type(values[0]).__name__}, not float"
    assert math.isfinite(values[0]), f"{cls.name} returned {values[0]}"
    assert values[0] == values[1], f"{cls.name} is not deterministic: {values}"
    return values[0]


def check_dataset(cls: type[Dataset], data_dir: Path | None = None, cache_dir: Path | None = None) -> RawDataset:
    """A dataset loads into a valid RawDataset whose splits can be built for every scenario kind."""
    import tempfile

    assert isinstance(cls, type) and issubclass(cls, Dataset), f"{cls!r} is not a unlearnkit.api.Dataset"
    check_declarations(cls)
    ds = cls()
    ds.check_available(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        raw = ds.load(data_dir, cache_dir or Path(tmp))
    assert raw.y_train.min() >= 0 and raw.y_train.max() < raw.num_classes, f"{cls.name}: labels out of range"
    assert set(np.unique(raw.y_test)) <= set(range(raw.num_classes)), f"{cls.name}: test labels out of range"
    assert len(raw.mean) == len(raw.std) == raw.image_shape[0], f"{cls.name}: mean/std do not match the channels"
    for scenario in ("0.1", "random:0.1", "class:0"):
        idx = make_splits(raw.y_train, raw.y_test, parse_scenario(scenario), 0, raw.class_names)
        assert len(idx.forget) and len(idx.retain) and len(idx.unseen) and len(idx.test), f"{cls.name}: empty split"
    return raw


def check_model(
    cls: type[Model], specs: tuple[ImageSpec, ...] = (ImageSpec(1, 8, 8, 3), ImageSpec(3, 32, 32, 10))
) -> None:
    """A model builds for small grey and colour images and maps them to finite (N, K) logits."""
    assert isinstance(cls, type) and issubclass(cls, Model), f"{cls!r} is not a unlearnkit.api.Model"
    check_declarations(cls)
    for spec in specs:
        model = cls().build(spec).eval()
        h, w = cls().input_size(spec)
        with torch.no_grad():
            out = model(torch.randn(2, spec.channels, h, w))
        assert out.shape == (2, spec.num_classes), f"{cls.name}: output {tuple(out.shape)} for {spec}"
        assert torch.isfinite(out).all(), f"{cls.name}: non-finite logits for {spec}"


def tiny_scores(source: str) -> np.ndarray:
    """Stand-in memorisation scores for the tiny dataset's training images (fixed per source)."""
    n = len(TinyDataset().load(None, Path(".")).y_train)
    return np.random.default_rng(sum(source.encode())).random(n)


def check_scenario(cls: type[Scenario], params: str | None = None, raw: RawDataset | None = None) -> np.ndarray:
    """A scenario parses ``params`` (default: its ``example``) to one canonical key (its key's
    parameters parse to the same key), draws a non-empty forget set inside the training pool, the
    same set twice for a seed, and (when it says it draws per seed) another set for another seed.
    The tiny data names a person per image (``groups``: 5 people), a fine label (``subclasses``:
    two per class) and memorisation scores (:func:`tiny_scores`). Returns the forget set."""
    assert isinstance(cls, type) and issubclass(cls, Scenario), f"{cls!r} is not a unlearnkit.Scenario"
    params = cls.example if params is None else params
    check_declarations(cls)
    assert cls.syntax, f"{cls.__name__} needs a `syntax` (how the text is written, e.g. 'every:<K>')"
    scenario = cls(params)
    assert scenario.key.startswith(f"{cls.name}:"), f"{cls.name}: key {scenario.key!r} does not start with its name"
    assert cls(scenario.params).key == scenario.key, f"{cls.name}: its key's parameters parse to another key"
    raw = raw if raw is not None else TinyDataset().load(None, Path("."))
    n = len(raw.y_train)
    groups = raw.groups if raw.groups is not None else np.array([f"p{i % 5}" for i in range(n)])
    fine = raw.subclasses if raw.subclasses is not None else raw.y_train * 2 + np.arange(n) % 2
    fine_names = raw.subclass_names or [f"{c}.{k}" for c in raw.class_names for k in range(2)]
    sets = [
        make_splits(
            raw.y_train,
            raw.y_test,
            scenario,
            seed,
            raw.class_names,
            groups=groups,
            subclasses=fine,
            subclass_names=fine_names,
            scores=tiny_scores,
        ).forget
        for seed in (0, 0, 1)
    ]
    assert len(sets[0]), f"{cls.name}:{params} drew an empty forget set"
    assert np.array_equal(sets[0], sets[1]), f"{cls.name} is not deterministic under a fixed seed"
    if cls.draws_per_seed:
        assert not np.array_equal(sets[0], sets[2]), f"{cls.name} says it draws per seed but seed 1 drew seed 0's set"
    else:
        assert np.array_equal(sets[0], sets[2]), f"{cls.name} drew another set at another seed: set draws_per_seed"
    return sets[0]
