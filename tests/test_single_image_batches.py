"""A batch of one image meets a train-mode BatchNorm layer that sees one value per channel (after
global pooling, or at 1x1), which torch refuses to normalise.

A method that hands one image to such a layer (a forget set of one image) fails its own row with one
line, instead of stopping the command with torch's traceback. The built-in loops keep a last batch of
one image: a BatchNorm over larger feature maps normalises it, so dropping it would move numbers.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.stages import unlearn_copy
from unlearnkit.errors import ConfigError
from unlearnkit_plugins.methods.batching import forward_batches

TINY_FORGET = "0.2"


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def pooled_net(channels: int, classes: int, *, norm: bool) -> nn.Module:
    """Global pooling, then a BatchNorm over one value per channel: one image cannot be normalised."""
    layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 4)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(4)] if norm else []), nn.Linear(4, classes))


def test_the_shuffled_pass_keeps_a_last_batch_of_one_image(tiny):
    """A BatchNorm over feature maps normalises one image by its pixels: the batch runs, as it always did."""
    split = tiny.splits["retain"].subset(torch.arange(9))
    model = nn.Sequential(nn.Conv2d(split.x.shape[1], 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten()).train()
    got = [len(y) for _, y, _ in forward_batches(model, split, 8, False, tiny.context(), torch.Generator())]
    assert got == [8, 1]


class OneImageThroughBatchNorm(uk.Method):
    """Forwards its one-image forget set through a pooled BatchNorm in train mode."""

    name = "one_image"
    access = uk.DataAccess.FORGET

    def unlearn(self, model: nn.Module, data: uk.UnlearnData, ctx: uk.UnlearnContext) -> uk.UnlearnOutcome:
        net = pooled_net(data.forget.x.shape[1], ctx.num_classes, norm=True).train()
        for x, _ in data.forget.batches(1):
            net(x)
        return uk.UnlearnOutcome(model)


def test_a_method_that_hands_one_image_to_a_train_mode_batchnorm_fails_its_row_in_one_line(tiny):
    entry = Entry("one_image", OneImageThroughBatchNorm, None)  # type: ignore[arg-type]
    data = tiny.data(OneImageThroughBatchNorm)
    with pytest.raises(ConfigError, match=r"^Method 'one_image' passed a batch of one image through a BatchNorm"):
        unlearn_copy(
            entry, OneImageThroughBatchNorm.parse_options({}), copy.deepcopy(tiny.original), data, tiny.context(), 0
        )


def test_any_other_error_of_a_method_keeps_its_traceback(tiny):
    class Broken(OneImageThroughBatchNorm):
        def unlearn(self, model, data, ctx):
            raise ValueError("a bug of the method's own")

    with pytest.raises(ValueError, match="own"):
        unlearn_copy(
            Entry("broken", Broken, None), Broken.parse_options({}), tiny.original, tiny.data(Broken), tiny.context(), 0
        )  # type: ignore[arg-type]
