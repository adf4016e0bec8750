"""A network built to train in a few epochs: for the many reference, shadow and ensemble models an
audit or a sweep trains, not for the paper's tables (those keep ``resnet18_lotus``).

It follows the ingredients of K. Jordan's CIFAR-10 speed runs (cifar10-airbench, ``airbench94``),
re-implemented here: a first layer that whitens 2x2 patches, three conv groups, frozen BatchNorm
scales, a fixed small output scale and test-time flipping. The training half of the recipe
(Nesterov SGD, label smoothing, Lookahead, the schedule) is ``--train-recipe speedrun``; see
docs/models.md for every ingredient and its measured cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import ConfigError

MIN_SIDE = 16  # three 2x pools after a 2x2 valid conv: 16 px is the smallest image that keeps a pixel
WHITEN_EPS = 5e-4  # added to each eigenvalue before its inverse square root (airbench's value)
BN_MOMENTUM = 0.4  # torch's convention (new = 0.4 * batch + 0.6 * running): airbench's "0.6" is 1 - this
BN_EPS = 1e-12
OUTPUT_SCALE = 1 / 9


def norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with its scale frozen at 1 and its shift learnt. Kept a plain ``nn.BatchNorm2d``
    (a frozen parameter, not a subclass) so that SyncBatchNorm conversion and every method's
    treatment of BatchNorm apply unchanged."""
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)
    return bn


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 'same' convolution without bias whose first ``cin`` filters start as the identity
    (Dirac), so that each group begins close to passing its input through."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(cin, cout)])
    return conv


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = norm(cout)
        self.conv2 = conv3x3(cout, cout)
        self.norm2 = norm(cout)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class Whitening(nn.Module):
    """A 2x2 valid convolution with fixed filters and a learnt bias, then GELU.

    Its 2 * C * 4 filters are +e_i / sqrt(l_i + eps) and -e_i / sqrt(l_i + eps) for the
    eigenvectors e_i and eigenvalues l_i of the covariance of the training images' 2x2 patches
    (flattened to C * 4 values), so the positive half maps patches to decorrelated, unit-variance
    coordinates, and GELU sees both signs of each. Until :meth:`fit_patches` runs the filters are
    those of an identity covariance (each patch value passed through, with both signs).
    The filters are a buffer: no optimiser, weight decay or method that trains "every parameter"
    can move them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        dim = channels * 4
        self.channels = channels
        eye = torch.eye(dim).view(dim, channels, 2, 2) / (1 + WHITEN_EPS) ** 0.5
        self.register_buffer("weight", torch.cat([eye, -eye]))
        self.bias = nn.Parameter(torch.zeros(2 * dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))  # set once the data gave the filters
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.conv2d(x, self.weight, self.bias))

    @torch.no_grad()
    def fit_patches(self, images: torch.Tensor, chunk: int = 512) -> None:
        """Filters from ``images``' 2x2 patches (every position, stride 1), and the bias that
        centres them: the layer's pre-activation output on these images then has zero mean and
        covariance ``diag(l / (l + eps))`` in its positive half (the identity, up to eps).
        Patch sums are accumulated in float64 over chunks of images, so 5,000 CIFAR images cost
        a few MB, not the 230 MB of their unfolded patches."""
        dim = self.channels * 4
        total = torch.zeros(dim, dtype=torch.float64, device=images.device)
        outer = torch.zeros(dim, dim, dtype=torch.float64, device=images.device)
        count = 0
        for part in images.split(chunk):
            patches = F.unfold(part.double(), kernel_size=2)  # (n, C*4, positions), (c, dy, dx) order
            flat = patches.transpose(1, 2).reshape(-1, dim)
            total += flat.sum(0)
            outer += flat.T @ flat
            count += flat.shape[0]
        mean = total / count
        cov = (outer / count - torch.outer(mean, mean)).cpu()  # 12x12 for RGB: decomposed on the CPU
        values, vectors = torch.linalg.eigh(cov)  # ascending
        values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)  # largest variance first
        # an eigenvector's sign is arbitrary (LAPACK builds differ): fix it, so the filters are the
        # same on every machine; the largest entry of each is made positive
        pick = vectors.abs().argmax(0)
        vectors = vectors * torch.sign(vectors[pick, torch.arange(dim)])
        filters = (vectors / (values + WHITEN_EPS).sqrt()).T  # (dim, dim): row i = e_i / sqrt(l_i + eps)
        weight = torch.cat([filters, -filters]).to(self.weight)
        self.weight.copy_(weight.view_as(self.weight))
        shift = -(torch.cat([filters, -filters]) @ mean.cpu())
        self.bias.copy_(shift.to(self.bias))
        self.fitted.fill_(True)


class SpeedrunNet(nn.Module):
    """Whitening -> three conv groups (w, 4w, 4w) -> global max-pool -> bias-free linear -> x 1/9.

    In eval mode the logits are those of the image and of its mirror image, averaged
    (test-time flip augmentation; ``flip=False``: the image alone); in training mode, those of
    the image alone."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 64, flip: bool = True) -> None:
        super().__init__()
        self.flip = flip
        widths = (width, 4 * width, 4 * width)
        self.whiten = Whitening(in_chans)
        self.groups = nn.Sequential(
            ConvGroup(8 * in_chans, widths[0]), ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2])
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def get_classifier(self) -> nn.Module:
        return self.head

    def init_from_data(self, images: torch.Tensor) -> None:
        """``uk.InitialisesFromData``: whiten with the statistics of ``images``, unless the filters
        already came from data (trained weights loaded with ``--weights``, say: kept as they are)."""
        if not bool(self.whiten.fitted):
            self.whiten.fit_patches(images)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.whiten(x))).flatten(1)
        return self.head(x) * OUTPUT_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ConfigError(
                f"The speedrun network needs images of at least {MIN_SIDE}x{MIN_SIDE} px, got "
                f"{x.shape[-2]}x{x.shape[-1]}: resize them (the registered model does so itself)."
            )
        if self.training or not self.flip:
            return self.logits(x)
        both = self.logits(torch.cat([x, x.flip(3)]))
        plain, mirrored = both.chunk(2)
        return (plain + mirrored) / 2
