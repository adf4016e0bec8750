"""The registered model plugins: names, options, families and input sizes.

Nothing here imports torch or timm at module level, so listing plugins stays fast; ``build`` imports the
architecture module it needs.
"""

from __future__ import annotations

import abc
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from unlearnkit import Augment, ConfigError, ImageSpec, Model, Options

if TYPE_CHECKING:
    from torch import nn


class BuiltinModel(Model):
    """Shared behaviour: refuse ``--pretrained`` where no weights exist, load ``--weights`` after building."""

    has_pretrained: ClassVar[bool] = False
    no_pretrained_hint: ClassVar[str] = "train it from scratch (the default) or pass --weights FILE"

    def check_choice(self) -> None:
        if self.pretrained and not self.has_pretrained:
            raise ConfigError(f"Model '{self.label}' has no pretrained weights: {self.no_pretrained_hint}.")

    @property
    def label(self) -> str:
        return f"{self.name}/{self.variant}" if self.variant else self.name

    def timm_weights(self) -> bool:
        """Whether ``--weights`` files go through timm's adaptations (the model was made by timm.create_model)."""
        return False

    @abc.abstractmethod
    def create(self, spec: ImageSpec) -> nn.Module:
        """The freshly initialised network (no weights loaded)."""

    def build(self, spec: ImageSpec) -> nn.Module:
        net = self.create(spec)
        if self.weights is not None:
            from .weights import load_weights

            load_weights(net, Path(self.weights), label=self.label, timm_adapt=self.timm_weights())
        return net


# ------------------------------------------------------------------------------------------ convnets
class _CifarResNet(BuiltinModel):
    """A ResNet of :mod:`.resnet_cifar`, built by its function or class named ``architecture``."""

    family = "resnet"
    architecture: ClassVar[str]

    def create(self, spec: ImageSpec) -> nn.Module:
        from . import resnet_cifar

        return getattr(resnet_cifar, self.architecture)(spec.channels, spec.num_classes)


class ResNet18(_CifarResNet):
    """The CIFAR ResNet-18 of the unlearning literature (kuangliu/pytorch-cifar layout)."""

    name, architecture = "resnet18", "resnet18"
    default = True  # what `unlearnkit run` uses when none is named
    algorithm_version = 1
    summary = "CIFAR-style ResNet-18 (3x3 stem, no max-pool, 11.2M params): the MU literature's standard."
    no_pretrained_hint = "train it from scratch, pass --weights FILE, or use timm/resnet18 --pretrained (ImageNet)"


class ResNet18Lotus(_CifarResNet):
    """The exact ResNet-18 of the LoTUS code, for reproducing its numbers (see ``LotusResNet18``)."""

    name, architecture = "resnet18_lotus", "LotusResNet18"
    algorithm_version = 1
    summary = "ResNet-18 as in the LoTUS code: 3x3 stem, 3x3/2 max-pool, 1x1 conv on every identity path."


class ResNet20(_CifarResNet):
    """A small real ResNet: trains in seconds on a CPU at 8-32 px, for quick but representative runs."""

    name, architecture = "resnet20", "resnet20"
    algorithm_version = 1
    summary = "He et al. CIFAR ResNet-20 (16/32/64 wide, 0.27M params; 1x1-conv shortcuts where shapes change)."


class CNNOptions(Options):
    width: int = Field(32, ge=1, description="channels of the first conv; the next two have 2x and 4x")


class SmallCNN(BuiltinModel):
    """Three conv layers: the fastest model here, for smoke tests and CPU-only experiments."""

    name = "cnn"
    algorithm_version = 1
    summary = "Compact 3-layer CNN with BN (width option, 0.1M params at width 32): trains in seconds on a CPU."
    family = "cnn"
    Options = CNNOptions

    def create(self, spec: ImageSpec) -> nn.Module:
        from .cnn import SmallCNN as Net

        assert isinstance(self.options, CNNOptions)
        return Net(spec.channels, spec.num_classes, width=self.options.width)


class SpeedrunOptions(Options):
    width: int = Field(64, ge=1, description="channels of the first conv group; the second and third have 4x")
    flip: bool = Field(
        True,
        description="random left-right flips in training and flip-averaged logits in eval; false for digits, text",
    )


class Speedrun(BuiltinModel):
    """An airbench-style network that trains in a few epochs (:mod:`.speedrun`), for the many
    reference, shadow and ensemble models; not the paper's architecture.

    Images under 16 px (digits' 8x8) are resized up to 16 px on the device: below that its three
    2x pools would leave no pixel. Pair it with ``--train-recipe speedrun`` (the ``cnn`` table)."""

    name = "speedrun"
    algorithm_version = 1
    summary = "Airbench-style CNN (2x2 patch whitening, 64/256/256 conv groups, flip TTA): many models, fast."
    family = "cnn"
    Options = SpeedrunOptions

    def input_size(self, spec: ImageSpec) -> tuple[int, int]:
        from .speedrun import MIN_SIDE

        return (max(spec.height, MIN_SIDE), max(spec.width, MIN_SIDE))

    def augmentation(self, dataset_augment: Augment) -> Augment:
        """The dataset's augmentation (its translations: CIFAR's pad-4 crop) plus random flips,
        unless ``flip`` is off (then the dataset's augmentation as it is)."""
        assert isinstance(self.options, SpeedrunOptions)
        return replace(dataset_augment, flip=True) if self.options.flip else dataset_augment

    def create(self, spec: ImageSpec) -> nn.Module:
        from .speedrun import SpeedrunNet

        assert isinstance(self.options, SpeedrunOptions)
        return SpeedrunNet(spec.channels, spec.num_classes, width=self.options.width, flip=self.options.flip)


# ---------------------------------------------------------------------------------------------- ViTs
class PatchOptions(Options):
    patch_size: int | None = Field(None, ge=1, description="default: 2 up to 27 px, 4 to 55, 8 to 111, else 16")


class ViTOptions(PatchOptions):
    embed_dim: int | None = Field(None, ge=1, description="token width; default 96 up to 16 px, else 192 (ViT-Tiny)")
    depth: int | None = Field(None, ge=1, description="transformer blocks; default 3 up to 16 px, else 6")
    heads: int | None = Field(
        None, ge=1, description="attention heads (must divide embed_dim); default 4 up to 16 px, else 3"
    )

    @field_validator("heads")
    @classmethod
    def _heads_divide_dim(cls, heads: int | None, info: ValidationInfo) -> int | None:
        dim = info.data.get("embed_dim")
        if dim is not None and heads is not None and dim % heads:
            raise ValueError(f"embed_dim {dim} is not divisible by heads {heads}")
        return heads


# The from-scratch ViT's size by image side. Up to 16 px (digits' 8x8): 4 px patches and a narrow,
# shallow transformer, which memorises its training set in a CPU minute (a ViT-Tiny on 16 tokens of
# 8x8 digits reaches 44 % training accuracy after 15 epochs); larger images: ViT-Tiny's width.
SMALL_IMAGE_VIT = {"patch_size": 4, "embed_dim": 96, "depth": 3, "heads": 4}
LARGER_IMAGE_VIT = {"patch_size": None, "embed_dim": 192, "depth": 6, "heads": 3}


class ViT(BuiltinModel):
    """The paper's ViT-B/16 when pretrained or given weights; otherwise a small ViT sized to the images.

    With ``--pretrained`` this is timm's ``vit_base_patch16_224.orig_in21k_ft_in1k``, the weights of
    google/vit-base-patch16-224 that LoTUS fine-tunes; images are resized to 224 px on the device. With
    ``--weights FILE`` the file must hold a ViT-B/16 (any head). To reload a from-scratch ViT, use the core's
    cached models, or ``vit_tiny``/``vit_small``, which load weights into the small-image architecture.
    """

    name = "vit"
    algorithm_version = 3
    summary = "ViT-B/16 at 224 px when --pretrained/--weights (the paper's); else a 6-block ViT sized to the images."
    family = "vit"
    channels_last = False
    has_pretrained = True
    Options = ViTOptions

    def check_choice(self) -> None:
        super().check_choice()
        if self.is_b16 and self.options.model_fields_set:
            given = ", ".join(sorted(self.options.model_fields_set))
            raise ConfigError(
                f"Options {given} of model 'vit' shape the from-scratch ViT; with --pretrained or --weights it is "
                "ViT-B/16. Drop them, or use vit_tiny/vit_small."
            )

    @property
    def is_b16(self) -> bool:
        return self.pretrained or self.weights is not None

    def model_family(self) -> str:
        return "vit" if self.is_b16 else "vit-scratch"

    def input_size(self, spec: ImageSpec) -> tuple[int, int]:
        from .vit import VIT_B16_SIZE

        return VIT_B16_SIZE if self.is_b16 else (spec.height, spec.width)

    def timm_weights(self) -> bool:
        return self.is_b16

    def augmentation(self, dataset_augment: Augment) -> Augment:
        """No crop or flip for the pretrained ViT-B/16: the LoTUS code's ViT pipeline is Resize(224) and
        normalisation only (``src/helpers/data_utils.py``)."""
        return Augment() if self.is_b16 else dataset_augment

    def create(self, spec: ImageSpec) -> nn.Module:
        from .vit import small_vit, vit_b16

        if self.is_b16:
            return vit_b16(spec, pretrained=self.pretrained and self.weights is None)
        o = self.options
        assert isinstance(o, ViTOptions)
        size = dict(SMALL_IMAGE_VIT if min(spec.height, spec.width) <= 16 else LARGER_IMAGE_VIT)
        size.update({k: v for k, v in o.model_dump().items() if v is not None})
        if size["embed_dim"] % size["heads"]:
            raise ConfigError(f"ViT embed_dim {size['embed_dim']} is not divisible by heads {size['heads']}.")
        return small_vit(spec, **size)


class _SmallImageViT(BuiltinModel):
    """A fixed-size ViT trained from scratch at the dataset's resolution."""

    family = "vit"
    channels_last = False
    Options = PatchOptions
    no_pretrained_hint = "use vit --pretrained (ViT-B/16) or timm/<name> --pretrained"
    embed_dim: ClassVar[int]
    depth: ClassVar[int]
    heads: ClassVar[int]

    def model_family(self) -> str:
        return "vit-scratch"

    def create(self, spec: ImageSpec) -> nn.Module:
        from .vit import small_vit

        assert isinstance(self.options, PatchOptions)
        return small_vit(
            spec, patch_size=self.options.patch_size, embed_dim=self.embed_dim, depth=self.depth, heads=self.heads
        )


class ViTTiny(_SmallImageViT):
    name = "vit_tiny"
    algorithm_version = 1
    summary = "ViT-Tiny (dim 192, 12 blocks, 3 heads) sized to the images, from scratch."
    embed_dim, depth, heads = 192, 12, 3


class ViTSmall(_SmallImageViT):
    name = "vit_small"
    algorithm_version = 1
    summary = "ViT-Small (dim 384, 12 blocks, 6 heads) sized to the images, from scratch."
    embed_dim, depth, heads = 384, 12, 6


# ---------------------------------------------------------------------------------------------- timm
class Timm(BuiltinModel):
    """Any timm architecture by name: ``timm/<name>`` or ``timm/<name>.<pretrained tag>``."""

    name = "timm"
    algorithm_version = 1
    summary = "Any timm model: timm/<name>[.<tag>] (e.g. timm/resnet18, timm/convnext_tiny), optionally --pretrained."
    family = "cnn"
    accepts_variant = True
    has_pretrained = True

    def check_choice(self) -> None:
        super().check_choice()
        variant = self.variant
        if not variant:
            raise ConfigError("Model 'timm' needs a timm model name: --model timm/<name>, e.g. timm/resnet18.")
        from . import timm_models

        timm_models.resolve(variant)
        if self.pretrained and not self.weights and not timm_models.has_pretrained(variant):
            raise ConfigError(f"timm model '{variant}' has no pretrained weights; drop --pretrained or pass --weights.")
        self._fixed_size = timm_models.fixed_input_size(variant)

    @property
    def vit_like(self) -> bool:
        from .timm_models import is_vit_like

        return is_vit_like(self.variant or "")

    @property
    def channels_last(self) -> bool:  # type: ignore[override]
        return not self.vit_like

    def model_family(self) -> str:
        if not self.vit_like:
            return "cnn"
        return "vit" if self.pretrained or self.weights is not None else "vit-scratch"

    def input_size(self, spec: ImageSpec) -> tuple[int, int]:
        return self._fixed_size or (spec.height, spec.width)

    def timm_weights(self) -> bool:
        return True

    def create(self, spec: ImageSpec) -> nn.Module:
        from .timm_models import create

        assert self.variant
        return create(self.variant, spec, pretrained=self.pretrained and self.weights is None)


MODELS: tuple[type[Model], ...] = (ResNet18, ResNet18Lotus, ResNet20, SmallCNN, Speedrun, ViT, ViTTiny, ViTSmall, Timm)
