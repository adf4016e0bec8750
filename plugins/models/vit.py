"""Vision transformers: the paper's pretrained ViT-B/16 at 224 px, and ViTs sized to small images for training
from scratch (a 16 px patch on a 32 px image would leave 4 tokens, so the patch shrinks with the image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnkit import ConfigError

from . import timm_models

if TYPE_CHECKING:
    from torch import nn

    from unlearnkit import ImageSpec

# LoTUS fine-tunes google/vit-base-patch16-224 (ImageNet-21k pre-training, ImageNet-1k fine-tuning): timm
# ships exactly those weights under this tag (its untagged default is the later AugReg2 checkpoint).
VIT_B16 = "vit_base_patch16_224"
VIT_B16_WEIGHTS = "vit_base_patch16_224.orig_in21k_ft_in1k"
VIT_B16_SIZE = (224, 224)


def patch_size_for(height: int, width: int) -> int:
    """Largest of 16/8/4/2 leaving at least 7 tokens a side: 2 up to 27 px, 4 for 28-55, 8 for 56-111, 16 above.

    So 8 px -> 4x4 tokens, 16 -> 8x8, 28 -> 7x7, 32 -> 8x8, 64 -> 8x8, 128 -> 8x8, 224 -> 14x14.
    """
    side = min(height, width)
    for patch in (16, 8, 4):
        if side // patch >= 7:
            return patch
    return 2 if side >= 2 else 1


def small_vit(spec: ImageSpec, *, patch_size: int | None, embed_dim: int, depth: int, heads: int) -> nn.Module:
    """A timm ``VisionTransformer`` (class token, pre-norm blocks, linear head) at the dataset's resolution."""
    from timm.models.vision_transformer import VisionTransformer

    patch = patch_size or patch_size_for(spec.height, spec.width)
    if patch > min(spec.height, spec.width):
        raise ConfigError(f"ViT patch_size {patch} is larger than the {spec.height}x{spec.width} images.")
    return VisionTransformer(
        img_size=(spec.height, spec.width),
        patch_size=patch,
        in_chans=spec.channels,
        num_classes=spec.num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
    )


def vit_b16(spec: ImageSpec, *, pretrained: bool) -> nn.Module:
    """ViT-B/16 at 224 px with a fresh head for ``spec.num_classes`` (and a patch embedding for its channels)."""
    return timm_models.create(
        VIT_B16_WEIGHTS if pretrained else VIT_B16, spec, pretrained=pretrained, what="Pretrained ViT-B/16 weights"
    )
