"""A compact CNN that trains in seconds on a CPU: for quick experiments and tests, not for paper numbers."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv(w)-conv(2w)-maxpool-conv(4w), each with BN and ReLU, then global average pool and a linear head."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_chans, width),
            *_conv_bn(width, 2 * width),
            nn.MaxPool2d(2),
            *_conv_bn(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
