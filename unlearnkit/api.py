"""The four plugin contracts: Method, Metric, Dataset, Model.

A plugin is a class with a ``name``, a one-line ``summary`` and a pydantic ``Options`` model for
its settings; a hook passes the class to ``register``. The core only ever talks to these base
classes, so a built-in and a third-party plugin are indistinguishable.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from unlearnkit.errors import ConfigError

if TYPE_CHECKING:  # heavy imports stay out of `unlearnkit --help`
    import torch
    from torch import nn

    from unlearnkit.context import UnlearnContext
    from unlearnkit.data import UnlearnData
    from unlearnkit.evaluation import Evaluation


class Options(BaseModel):
    """Base for every plugin's hyperparameters. Unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


class DataAccess(str, enum.Enum):
    """Which training data a method touches; leaderboards filter on it."""

    NONE = "none"
    FORGET = "forget"
    RETAIN = "retain"
    BOTH = "forget+retain"

    def splits(self) -> frozenset[str]:
        return {
            DataAccess.NONE: frozenset(),
            DataAccess.FORGET: frozenset({"forget"}),
            DataAccess.RETAIN: frozenset({"retain"}),
            DataAccess.BOTH: frozenset({"forget", "retain"}),
        }[self]


Direction = Literal["higher", "lower", "closer_to_retrain"]


@dataclass(frozen=True)
class Setting:
    """What a method's per-setting defaults may depend on (the paper tunes per model family)."""

    dataset: str
    model_family: str  # "resnet", "vit" (pretrained ViT-B/16 fine-tuning), "cnn", "vit-scratch"
    scenario_kind: str  # "instance", "random" or "class"
    num_classes: int


class Plugin(abc.ABC):
    """Common shape of every plugin class."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def parse_options(cls, values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> Options:
        """Validate user values over ``defaults``; raise a one-line ConfigError naming the bad key."""
        merged = {**(defaults or {}), **values}
        fields = cls.Options.model_fields
        for key in merged:
            if key not in fields:
                valid = ", ".join(sorted(fields)) or "(this plugin has no options)"
                raise ConfigError(f"Unknown option '{key}' for {cls.kind()} '{cls.name}'. Valid options: {valid}.")
        try:
            return cls.Options(**merged)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"Bad value {merged.get(key)!r} for option '{key}' of {cls.kind()} '{cls.name}': {first['msg']}."
            ) from None

    @classmethod
    def kind(cls) -> str:
        for base, label in ((Method, "method"), (Metric, "metric"), (Dataset, "dataset"), (Model, "model")):
            if issubclass(cls, base):
                return label
        return "plugin"


# --------------------------------------------------------------------------------------- methods
@dataclass
class UnlearnOutcome:
    """What ``Method.unlearn`` may return instead of a bare model."""

    model: nn.Module
    time_s: float | None = None  # overrides the runner's clock (the `retrain` reference row)
    info: dict[str, float] = field(default_factory=dict)  # extra numbers logged as metrics
    # "original" or "retrained" when the model *is* that reference: its outputs are reused, not recomputed
    same_as: str | None = None


class Method(Plugin):
    """An unlearning method: takes the original model and returns the unlearned one.

    ``unlearn`` must not mutate the model it is given (copy it first, e.g. ``copy.deepcopy``):
    the runner and the conformance test rely on the original staying the original.

    Declare ``access`` (what training data it touches) and, in ``extra_splits``, any evaluation
    split it reads (LoTUS reads ``unseen``). Reading anything else raises an error.
    """

    access: ClassVar[DataAccess] = DataAccess.BOTH
    extra_splits: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""
    reference: ClassVar[bool] = False  # `original` and `retrain`: rows to compare against
    # What the method claims to do to the forget set, checked by the conformance test against
    # `original`: "acc_forget_down" (forget accuracy falls), "entropy_forget_up" (predictions on
    # D_f become less confident), or "none" (reference rows).
    claim: ClassVar[str] = "acc_forget_down"
    retain_tolerance: ClassVar[float] = 0.15  # max drop in retain accuracy the conformance test allows
    # Options for the conformance test's tiny data (e.g. a larger lr so a few steps show the effect).
    test_options: ClassVar[dict[str, Any]] = {}

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

    direction: ClassVar[Direction] = "closer_to_retrain"
    display_scale: ClassVar[float] = 1.0  # the paper shows JSD-type values x1e4
    needs_retrained: ClassVar[bool] = False

    @abc.abstractmethod
    def compute(self, ev: Evaluation) -> float:
        """Subclasses implement this."""


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
    without them the official test split is halved into unseen and test.
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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class Augment:
    """Training augmentation, applied per batch on the device. Paper (CIFAR): crop pad 4, no flip."""

    crop_padding: int = 0
    flip: bool = False


class Dataset(Plugin):
    """Loads a real dataset into a :class:`RawDataset`.

    ``check_available`` must be cheap and raise :class:`~unlearnkit.errors.DataError` with what
    to do when the files are missing, so the CLI fails before any compute.
    """

    embedded: ClassVar[bool] = False  # needs no files and no download
    augment: ClassVar[Augment] = Augment()
    default_train_recipe: ClassVar[str] = "paper"

    def check_available(self, data_dir: Path | None) -> None:
        """Raise DataError (what is missing, where to put it) if ``load`` cannot succeed."""

    @abc.abstractmethod
    def load(self, data_dir: Path | None, cache_dir: Path) -> RawDataset:
        """Subclasses implement this."""


# ---------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ImageSpec:
    """What a model must accept: the dataset's channels, image size and number of classes."""

    channels: int
    height: int
    width: int
    num_classes: int


class Model(Plugin):
    """Builds an ``nn.Module`` for a dataset's images.

    ``variant`` carries the part after a slash (``timm/<name>``) for models that accept one.
    """

    family: ClassVar[str] = "cnn"
    accepts_variant: ClassVar[bool] = False
    channels_last: ClassVar[bool] = True  # convnets run faster channels-last on GPUs

    def __init__(
        self,
        options: Options | None = None,
        *,
        variant: str | None = None,
        pretrained: bool = False,
        weights: Path | None = None,
    ) -> None:
        super().__init__(options)
        self.variant = variant
        self.pretrained = pretrained
        self.weights = weights

    def model_family(self) -> str:
        """Family used to pick method defaults; may depend on ``pretrained``."""
        return self.family

    def input_size(self, spec: ImageSpec) -> tuple[int, int]:
        """Resolution the network wants; images are resized on the device when it differs."""
        return (spec.height, spec.width)

    @abc.abstractmethod
    def build(self, spec: ImageSpec) -> nn.Module:
        """Subclasses implement this."""


PLUGIN_KINDS: dict[str, type[Plugin]] = {"method": Method, "metric": Metric, "dataset": Dataset, "model": Model}

__all__ = [
    "Augment",
    "DataAccess",
    "Dataset",
    "Direction",
    "ImageArray",
    "ImageSpec",
    "Images",
    "Method",
    "Metric",
    "Model",
    "Options",
    "Plugin",
    "RawDataset",
    "Setting",
    "UnlearnOutcome",
]

if TYPE_CHECKING:
    _ = torch
