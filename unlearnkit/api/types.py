"""The small value types the contracts, the context and the data share: a leaf, so that
``contracts`` can name ``UnlearnContext`` and ``context`` can name ``Setting`` without a circle."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


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
    model_family: (
        str  # a model plugin's `family`: e.g. "resnet", "vit" (pretrained ViT-B/16 fine-tuning), "vit-scratch"
    )
    scenario_rule: str  # "instance", "random", "class" or "identity"
    num_classes: int


Role = Literal["original", "retrained"]
# where the reference rows stand, in a plan's method list and on a board: the original first, then the retrained
ROLE_ORDER: dict[str, int] = {"original": 0, "retrained": 1}


@dataclass(frozen=True)
class Augment:
    """Training augmentation, applied per batch on the device. Paper (CIFAR): crop pad 4, no flip."""

    crop_padding: int = 0
    flip: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """What a model must accept: the dataset's channels, image size and number of classes."""

    channels: int
    height: int
    width: int
    num_classes: int


__all__ = ["ROLE_ORDER", "Augment", "DataAccess", "Direction", "ImageSpec", "Role", "Setting"]
