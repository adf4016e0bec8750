"""The four plugin contracts: Method, Metric, Dataset, Model.

A plugin is a class with a ``name``, a one-line ``summary`` and a pydantic ``Options`` model for
its settings; a hook passes the class to ``register``. The core only ever talks to these base
classes, so a built-in and a third-party plugin are indistinguishable.
"""

from __future__ import annotations

import abc
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args, get_origin, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from unlearnkit.api.search_space import Param
from unlearnkit.api.types import Augment, DataAccess, Direction, ImageSpec, Role, Setting
from unlearnkit.errors import ConfigError, PluginError, shorten

if TYPE_CHECKING:  # heavy imports stay out of `unlearnkit --help`
    from torch import nn

    from unlearnkit.api.context import UnlearnContext
    from unlearnkit.api.data import UnlearnData
    from unlearnkit.api.evaluation import Evaluation


INT_LIMIT = 2**63  # an integer option is a 64-bit integer, as torch holds it


class Options(BaseModel):
    """Base for every plugin's hyperparameters. Unknown keys are errors, values are validated.

    Rules every plugin's options get without declaring them: a float is finite (``inf``, ``nan``
    and ``1e309`` are refused; nothing trains with them), an integer fits in 64 bits.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``true``/``false`` only where the option takes a flag: pydantic reads a recipe's ``alpha = false``
        as 0.0 and ``epochs = true`` as 1, which ran (sfron with alpha 0 is plain fine-tuning)."""
        field = cls.model_fields.get(info.field_name or "")
        items = value if isinstance(value, (list, tuple)) else [value]
        if field is not None and any(isinstance(v, bool) for v in items) and not takes_bool(field.annotation):
            raise PydanticCustomError("bool_for_number", "Input should not be true or false: this option is no flag")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _fits_64_bits(cls, value: Any) -> Any:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and not -INT_LIMIT <= item < INT_LIMIT:
                raise PydanticCustomError("int_64_bit", "Input should be a 64-bit integer")
        return value


def takes_bool(annotation: Any) -> bool:
    """Whether an option annotated so takes ``true``/``false`` (a bool, a union or list with one, a
    Literal of bools, Any)."""
    if annotation is bool or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in get_args(annotation))
    return any(takes_bool(arg) for arg in get_args(annotation) if arg is not type(None))


OptionsBase = Options  # the base class, for annotations inside plugins (where `Options` is the plugin's own)


class Plugin(abc.ABC):
    """Common shape of every plugin class."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    # The one of its kind used when the user names none (`unlearnkit run` with no --method, --model
    # or --dataset): declared by a plugin, so the core never names one.
    default: ClassVar[bool] = False
    # Bump whenever a change to the plugin's code can change a number it produces: the version
    # enters the identity of every cached model and finished run, so old results are never reused
    # for new code. None: the distribution's version is used instead (every release invalidates).
    algorithm_version: ClassVar[int | None] = None

    def __init__(self, options: OptionsBase | None = None) -> None:
        self.options: Any = options if options is not None else self.Options()

    @classmethod
    def parse_options(cls, values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> OptionsBase:
        """Validate user values over ``defaults``; raise a one-line ConfigError naming the bad key."""
        merged = {**(defaults or {}), **values}
        fields = cls.Options.model_fields
        for key in merged:
            if key not in fields:
                valid = ", ".join(sorted(fields)) or "(this plugin has no options)"
                raise ConfigError(
                    f"Unknown option '{shorten(key)}' for {cls.kind()} '{cls.name}'. Valid options: {valid}."
                )
        try:
            return cls.Options(**merged)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            top = str(first["loc"][0]) if first["loc"] else key
            allowed = f" Allowed: {allowed_values(fields[top])}." if top in fields else ""
            raise ConfigError(
                f"Bad value {shorten(repr(merged.get(top)))} for option '{key}' of {cls.kind()} '{cls.name}': "
                f"{first['msg']}.{allowed}"
            ) from None

    @classmethod
    def kind(cls) -> str:
        """``method``, ``metric``, ``dataset`` or ``model``: the contract this class implements."""
        return getattr(cls, "plugin_kind", "plugin")


def allowed_values(info: FieldInfo) -> str:
    """An option's valid values in words, from its type and bounds: ``a finite number > 0``; a type
    beside named choices (``int | Literal["all"]``) says both: ``a 64-bit integer >= 1, or all``."""
    args = [a for a in get_args(info.annotation) if a is not type(None)] or [info.annotation]
    if get_origin(info.annotation) is Literal:
        args = [info.annotation]
    choices = [str(c) for a in args if get_origin(a) is Literal for c in get_args(a) if c is not None]
    kinds = [a for a in args if get_origin(a) is not Literal]
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = [f"{sign} {getattr(m, attr)}" for m in info.metadata for attr, sign in signs.items() if hasattr(m, attr)]
    unset = " (or unset)" if type(None) in get_args(info.annotation) else ""
    named = "one of " + ", ".join(choices) if len(choices) > 1 or not kinds else ", ".join(choices)
    if not kinds:
        return " ".join([named, " and ".join(bounds)]).strip() + unset
    typed = " ".join([type_in_words(kinds), " and ".join(bounds)]).strip()
    return (f"{typed}, or {named}" if choices else typed) + unset


def type_in_words(kinds: list[Any]) -> str:
    """``a finite number``, ``a 64-bit integer``, ``true or false``: what a value of these types is."""
    if bool in kinds:
        return "true or false"
    if float in kinds:
        return "a finite number"
    if int in kinds:
        return "a 64-bit integer"
    return "a " + " or ".join(getattr(a, "__name__", str(a)) for a in kinds)


# --------------------------------------------------------------------------------------- methods
@dataclass
class UnlearnOutcome:
    """What ``Method.unlearn`` may return instead of a bare model."""

    model: nn.Module
    time_s: float | None = None  # overrides the runner's clock (the retrained reference row: its training time)
    info: dict[str, float] = field(default_factory=dict)  # extra numbers logged as metrics


# what a conformance test checks a method does to the forget set (not a run claim: see unlearnkit.store.claims)
ConformanceClaim = Literal["acc_forget_down", "entropy_forget_up", "none"]


@dataclass(frozen=True)
class Conformance:
    """What the conformance test (``unlearnkit.testing.check_method``) checks on tiny data.

    ``claim`` is what the method does to the forget set versus the unchanged original: forget
    accuracy falls, or predictions on D_f become less confident (entropy rises), or nothing
    (reference rows). ``retain_tolerance`` bounds the drop in retain accuracy; ``options`` are
    the method's settings for the tiny data (a few steps must show the effect).
    """

    claim: ConformanceClaim = "acc_forget_down"
    retain_tolerance: float = 0.15
    options: Mapping[str, Any] = field(default_factory=dict)


class Method(Plugin):
    """An unlearning method: takes the original model and returns the unlearned one.

    The runner hands ``unlearn`` a private copy of the original, which the method may train in
    place; copy it only for a second network (a frozen teacher). Return the model in the mode it
    ends in: the ``clean`` evaluation protocol switches it to eval mode, the ``paper`` protocol
    evaluates it as the official LoTUS code does, in whatever mode it was returned.

    Declare ``access`` (what training data it touches) and, in ``extra_splits``, any evaluation
    split it reads (LoTUS reads ``unseen``). Reading anything else raises an error.
    """

    plugin_kind: ClassVar[str] = "method"
    access: ClassVar[DataAccess] = DataAccess.BOTH
    extra_splits: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""
    # A reference row *is* the original or the retrained model (the rows every table compares
    # against): the runner always includes such methods, and Avg Gap is measured to `retrained`.
    role: ClassVar[Role | None] = None
    conformance: ClassVar[Conformance] = Conformance()
    # What `unlearnkit tune` may search: option name -> spec (unlearnkit.tuning: LogUniform, Uniform,
    # IntRange, Categorical); a recipe's [tune.METHOD] table replaces it. Empty: nothing to tune.
    search_space: ClassVar[dict[str, Param]] = {}
    # Trains data-parallel under torchrun (docs/distributed.md): every rank calls ``unlearn``, which
    # trains through ``ctx.parallel(model)`` on ``Split.sharded_batches`` parts and logs with
    # ``ddp.log_losses``. False: the method runs on rank 0 alone while the other ranks wait.
    distributed: ClassVar[bool] = False
    # The method reads ``ctx.protocol`` (LoTUS checks on augmented images under `paper`): its
    # unlearned model depends on the protocol. Otherwise a model unlearned under one protocol is
    # evaluated under the other without running the method again.
    uses_protocol: ClassVar[bool] = False
    # The forget rules (``Setting.scenario_rule``: "class", "instance", ...) the method is defined
    # for; None: every rule. A run that names the method with another rule is refused in one line
    # before any compute, citing ``scenario_reason``; ``--method all`` leaves such methods out.
    scenario_rules: ClassVar[frozenset[str] | None] = None
    scenario_reason: ClassVar[str] = ""

    @classmethod
    def accepts_scenario(cls, rule: str) -> bool:
        """Whether the method is defined for forget rule ``rule`` (see ``scenario_rules``)."""
        return cls.scenario_rules is None or rule in cls.scenario_rules

    @classmethod
    def default_options(cls, setting: Setting) -> dict[str, Any]:
        """Per-setting defaults (e.g. the paper's ResNet vs ViT hyperparameters)."""
        return {}

    @classmethod
    def splits(cls) -> frozenset[str]:
        return cls.access.splits() | cls.extra_splits

    @abc.abstractmethod
    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> nn.Module | UnlearnOutcome:
        """Subclasses implement this."""


# --------------------------------------------------------------------------------------- metrics
class Metric(Plugin):
    """A number computed from the evaluation's cached model outputs.

    Read outputs through ``ev`` (``ev.probs("unlearned", "forget")`` etc.): each model passes over
    each split once per benchmark, however many metrics use it.
    """

    plugin_kind: ClassVar[str] = "metric"
    direction: ClassVar[Direction] = "closer_to_retrain"
    display_scale: ClassVar[float] = 1.0  # the paper shows JSD-type values x1e4
    display_order: ClassVar[int] = 1000  # column position in tables (lower first; then by name)
    shown_by_default: ClassVar[bool] = False  # in the terminal's default column set
    in_avg_gap: ClassVar[bool] = False  # one of the metrics the Average Gap averages |delta to retrain| over
    display_digits: ClassVar[int] = 3  # decimals shown in tables
    cost_axis: ClassVar[bool] = False  # the cost a leaderboard figure plots Avg Gap against (unlearning time)
    # Reference models the metric reads besides the unlearned one ("original", "retrained"): when a
    # benchmark has no such model (``--no-retrain``) the metric is left out instead of failing.
    # "subclasses": the metric reads ``ctx.forget_subclass`` (sub-class scenarios only).
    needs: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def compute(self, ev: Evaluation) -> float:
        """Subclasses implement this."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's own ``compute`` returns through :func:`metric_value`: a value the store cannot
        keep as a number fails the row with one line naming the metric, wherever it is computed."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("compute")
        if callable(own) and not getattr(own, "__isabstractmethod__", False) and not hasattr(own, "_checked"):
            setattr(cls, "compute", checked_compute(own))  # noqa: B010 - the class attribute, replaced


def checked_compute(compute: Callable[[Any, Any], Any]) -> Callable[[Any, Any], float]:
    """``compute`` returning its value as :func:`metric_value` checked it."""

    @functools.wraps(compute)
    def checked(self: Metric, ev: Any) -> float:
        return metric_value(self.name, compute(self, ev))

    checked._checked = True  # type: ignore[attr-defined]
    return checked


def described(value: object) -> str:
    """A value a plugin returned, in a few words: None, or its type (a tuple's item types), with a short value."""
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of ({', '.join(type(v).__name__ for v in value[:4])})"
    text = repr(value)
    return f"a {type(value).__name__}" + (f" ({text})" if len(text) <= 40 and "\n" not in text else "")


def metric_value(name: str, value: Any) -> float:
    """``value`` as the float the store keeps (a 0-d tensor or numpy scalar as its Python float, the same
    number), when it is one real number, finite or NaN (the metric is undefined here; nothing is
    recorded). Else PluginError naming the metric: None, text or a vector would fail deep in the store,
    MLflow would keep inf as 1.8e308, and ``--json`` would print a tensor as text."""
    scalar = isinstance(value, numbers.Real) or getattr(value, "ndim", None) == 0  # a 0-d tensor or array
    if not scalar or isinstance(value, (str, bytes)):
        what = described(value)
        if getattr(value, "ndim", 0):
            what = f"a {type(value).__name__} of shape {tuple(value.shape)}"
        raise PluginError(f"Metric '{name}' returned {what}: compute returns one float (NaN where undefined).")
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError) as err:
        raise PluginError(
            f"Metric '{name}' returned {shorten(repr(value), 40)}, which is no float ({type(err).__name__}): "
            "compute returns one float (NaN where undefined)."
        ) from None
    if math.isinf(number):
        raise PluginError(f"Metric '{name}' returned {number}: compute returns a finite float (NaN where undefined).")
    return number


# -------------------------------------------------------------------------------------- datasets
@runtime_checkable
class ImageArray(Protocol):
    """Images decoded on demand (ImageNet-sized data): indexed like a uint8 NCHW array.

    ``images[idx]`` with an integer index array returns ``uint8`` of shape ``(len(idx), C, H, W)``
    in the order of ``idx``. Must be picklable: DataLoader workers index their own copy.
    """

    @property
    def shape(self) -> tuple[int, int, int, int]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: np.ndarray) -> np.ndarray: ...


Images = np.ndarray | ImageArray


def decoded_bytes(images: Images) -> int:
    """Size of ``images`` once decoded to uint8 (what keeping it on a device would cost)."""
    n, c, h, w = images.shape
    return int(n) * int(c) * int(h) * int(w)


@dataclass
class RawDataset:
    """A dataset as uint8 images in NCHW order, the official train/test split, labels 0..K-1.

    ``x_*`` are numpy arrays, or :class:`ImageArray` objects when decoding everything up front
    would not fit in memory (the runner then streams them). ``groups`` optionally names the
    identity (person, source) of every training image, for ``identity:`` forget scenarios.
    ``x_unseen``/``y_unseen`` optionally give a dedicated unseen split (MUFAC's validation set);
    without them the official test split is halved into unseen and test. ``subclasses`` and
    ``subclasses_test`` optionally give every train and test image a fine label inside its class
    (CIFAR-20's superclasses hold five CIFAR-100 classes each), named by ``subclass_names``: what
    ``subclass:`` forget scenarios and the sub-class metrics read. ``groups`` stays the person.
    """

    x_train: Images
    y_train: np.ndarray
    x_test: Images
    y_test: np.ndarray
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    groups: np.ndarray | None = None
    x_unseen: Images | None = None
    y_unseen: np.ndarray | None = None
    subclasses: np.ndarray | None = None
    subclasses_test: np.ndarray | None = None
    subclass_names: list[str] | None = None

    def __post_init__(self) -> None:
        for arr_name in ("x_train", "x_test", "x_unseen"):
            arr = getattr(self, arr_name)
            if arr is None:
                continue
            if isinstance(arr, np.ndarray):
                if arr.dtype != np.uint8 or arr.ndim != 4:
                    raise ValueError(f"{arr_name} must be uint8 NCHW, got {arr.dtype} {arr.shape}")
            elif not isinstance(arr, ImageArray) or len(arr.shape) != 4:
                raise ValueError(f"{arr_name} must be a uint8 NCHW array or an ImageArray, got {type(arr).__name__}")
        self.y_train = np.asarray(self.y_train, dtype=np.int64)
        self.y_test = np.asarray(self.y_test, dtype=np.int64)
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("images and labels differ in length")
        if (self.x_unseen is None) != (self.y_unseen is None):
            raise ValueError("x_unseen and y_unseen come together")
        if self.x_unseen is not None and self.y_unseen is not None:
            self.y_unseen = np.asarray(self.y_unseen, dtype=np.int64)
            if len(self.x_unseen) != len(self.y_unseen):
                raise ValueError("unseen images and labels differ in length")
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if len(self.groups) != len(self.y_train):
                raise ValueError("groups must name one identity per training image")
        if (self.subclasses is None) != (self.subclass_names is None):
            raise ValueError("subclasses and subclass_names come together")
        for arr_name, labels in (("subclasses", self.y_train), ("subclasses_test", self.y_test)):
            arr = getattr(self, arr_name)
            if arr is not None:
                arr = np.asarray(arr, dtype=np.int64)
                if len(arr) != len(labels):
                    raise ValueError(f"{arr_name} must give one fine label per image")
                setattr(self, arr_name, arr)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.x_train.shape
        return (int(c), int(h), int(w))


class Dataset(Plugin):
    """Loads a real dataset into a :class:`RawDataset`.

    ``check_available`` must be cheap and raise :class:`~unlearnkit.errors.DataError` with what
    to do when the files are missing, so the CLI fails before any compute.
    """

    plugin_kind: ClassVar[str] = "dataset"
    embedded: ClassVar[bool] = False  # needs no files and no download
    augment: ClassVar[Augment] = Augment()
    default_train_recipe: ClassVar[str] = "paper"

    def check_available(self, data_dir: Path | None) -> None:
        """Raise DataError (what is missing, where to put it) if ``load`` cannot succeed."""

    @abc.abstractmethod
    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        """Subclasses implement this."""


# ---------------------------------------------------------------------------------------- models
class Model(Plugin):
    """Builds an ``nn.Module`` for a dataset's images.

    ``variant`` carries the part after a slash (``timm/<name>``) for models that accept one.
    """

    plugin_kind: ClassVar[str] = "model"
    family: ClassVar[str] = "other"  # methods pick per-family defaults by it (the paper tunes ResNet vs ViT)
    accepts_variant: ClassVar[bool] = False
    channels_last: ClassVar[bool] = True  # convnets run faster channels-last on GPUs

    def __init__(
        self,
        options: OptionsBase | None = None,
        *,
        variant: str | None = None,
        pretrained: bool = False,
        weights: Path | None = None,
    ) -> None:
        super().__init__(options)
        self.variant = variant
        self.pretrained = pretrained
        self.weights = weights
        self.check_choice()

    def check_choice(self) -> None:
        """Raise ConfigError, before any compute, for a ``variant``, ``pretrained`` or ``weights`` this
        model cannot build; called by ``__init__``, so a subclass need not re-declare the constructor."""

    def model_family(self) -> str:
        """Family used to pick method defaults; may depend on ``pretrained``."""
        return self.family

    def input_size(self, spec: ImageSpec) -> tuple[int, int]:
        """Resolution the network wants; images are resized on the device when it differs."""
        return (spec.height, spec.width)

    def augmentation(self, dataset_augment: Augment) -> Augment:
        """The training augmentation this model gets: the dataset's, unless the model's own
        pipeline has none (the LoTUS code fine-tunes a pretrained ViT-B/16 on resized images only)."""
        return dataset_augment

    @abc.abstractmethod
    def build(self, spec: ImageSpec) -> nn.Module:
        """Subclasses implement this."""
