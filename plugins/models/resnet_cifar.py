"""CIFAR-style ResNets: the ResNet-18 of the unlearning literature, the LoTUS code's ResNet-18, He et al.'s ResNet-20.

Module names follow the reference code (kuangliu/pytorch-cifar for ``CifarResNet``, the LoTUS repository for
``LotusResNet18``) so checkpoints trained with those codebases load with ``--weights`` unchanged. Both pool
adaptively, so any image size from 8 px up works.
"""

from __future__ import annotations

import torch
from torch import nn


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers (ReLU between) plus a shortcut, then ReLU: the body both blocks share.
    Each subclass adds its shortcut under its reference code's module name, after these layers (so
    that parameters are created, and randomly initialised, in the reference order)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.skip(x))


class BasicBlock(_ResidualBlock):
    """Two 3x3 conv-BN layers; a 1x1 conv-BN projection on the shortcut only when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes, stride)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x)


class CifarResNet(nn.Module):
    """3x3 stride-1 stem (no max-pool), stages of BasicBlocks, global average pool, linear head."""

    def __init__(
        self, in_chans: int, num_classes: int, widths: tuple[int, ...], depths: tuple[int, ...], init: str = "default"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_planes = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(in_planes, width, stride=2 if i > 0 and j == 0 else 1))
                in_planes = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        if init == "kaiming":  # He et al. / the usual ResNet-20 code; ResNet-18 keeps PyTorch's defaults
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(m.weight)

    def get_classifier(self) -> nn.Module:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            out = getattr(self, f"layer{i + 1}")(out)
        return self.linear(torch.flatten(self.pool(out), 1))


class LotusBlock(_ResidualBlock):
    """The LoTUS code's BasicBlock: a 1x1 conv (no BN) on *every* identity path, even when shapes match."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes, stride)
        self.identity_conv = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity_conv(x)


class LotusResNet18(nn.Module):
    """ResNet-18 as in the LoTUS repository (src/helpers/models.py), checked against its source.

    3x3 stride-1 stem conv + BN + ReLU, then a 3x3 stride-2 (padding 1) max-pool, four stages of two
    ``LotusBlock`` (64/128/256/512, strides 1/2/2/2), adaptive average pool, linear ``fc``.
    """

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        for i, (width, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2))):
            self.add_module(
                f"layer{i + 1}", nn.Sequential(LotusBlock(in_planes, width, stride), LotusBlock(width, width, 1))
            )
            in_planes = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(in_chans: int, num_classes: int) -> CifarResNet:
    """The literature's CIFAR ResNet-18: 11,173,962 parameters for 3 channels and 10 classes."""
    return CifarResNet(in_chans, num_classes, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2))


def resnet20(in_chans: int, num_classes: int) -> CifarResNet:
    """He et al.'s CIFAR ResNet-20 with option-B shortcuts (1x1 conv-BN projection where the shape changes)."""
    return CifarResNet(in_chans, num_classes, widths=(16, 32, 64), depths=(3, 3, 3), init="kaiming")
