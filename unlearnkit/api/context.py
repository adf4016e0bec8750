"""What a method gets besides the model and the data: device, seed, autocast, progress, the
evaluation protocol, a place to log per-epoch numbers, a factory for a freshly initialised
network of the same architecture (Bad Teacher needs one), and the ranks of a distributed run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.protocols import CLEAN, EvalProtocol
from unlearnkit.api.types import Setting
from unlearnkit.parallel import torchrun as ddp

T = TypeVar("T")

# Random streams are separated by offsets on the run seed, so that e.g. the training order of the
# original does not shift when a method draws one more number: each purpose has its own stream.
TRAIN_STREAM = 17
EVAL_AUGMENT_STREAM = 29
# Another draw of the evaluation's crops moves its streams by this (odd, so distinct modulo 2**32: a CPU
# generator keeps only a seed's low 32 bits).
EVAL_DRAW_STRIDE = 0x9E3779B1


@dataclass
class UnlearnContext:
    device: torch.device
    seed: int
    setting: Setting
    num_classes: int
    model_factory: Callable[[], nn.Module]
    forget_class: int | None = None
    reporter: Reporter = field(default_factory=lambda: SILENT)
    channels_last: bool = False
    compile: bool = False  # torch.compile training forwards (CUDA only; see ``compiled``)
    method: str = ""
    gold_standard: Callable[[], tuple[nn.Module, float]] | None = None  # the retrained model and its time
    protocol: EvalProtocol = CLEAN
    series: list[tuple[str, float, int]] = field(default_factory=list)  # per-epoch numbers (name, value, step)
    # The ranks this loop trains on (torchrun): one process unless the runner gives a distributed
    # method (or the reference training) the whole world; see ``parallel`` and docs/distributed.md.
    world: ddp.World = ddp.SINGLE
    # Sub-class forgetting (``subclass:`` scenarios): the fine class forgotten, and the fine label
    # of every image of a split, in split order ("test", and "unseen" when it halves the test split).
    forget_subclass: int | None = None
    subclasses: dict[str, torch.Tensor] = field(default_factory=dict)
    _wrapped: dict[int, ddp.Wrapped] = field(default_factory=dict, repr=False, init=False, compare=False)

    def log(self, name: str, value: float, step: int) -> None:
        """Record one point of a per-epoch series (a loss, LoTUS's temperature): the runner logs
        them as MLflow step metrics. Pass a host number, once per epoch (no per-step syncs)."""
        self.series.append((name, float(value), int(step)))

    def retrained(self) -> tuple[nn.Module, float]:
        """The cached gold standard (model, training seconds): what the retrained reference row reports."""
        if self.gold_standard is None:
            raise RuntimeError("this run has no retrained model")
        return self.gold_standard()

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator on the device, seeded from the run seed (plus ``offset``)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + offset)
        return gen

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; full precision on CPU (bit-identical reruns, no slow bf16 CPU)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def new_model(self) -> nn.Module:
        """A randomly initialised network with the original's architecture, on the device."""
        return self.prepare(self.model_factory())

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model)`` when asked for and on CUDA; the model itself otherwise.
        The returned module shares parameters with ``model``: train through it, save ``model``."""
        if self.compile and self.device.type == "cuda":
            return torch.compile(model)
        return model

    def parallel(self, model: nn.Module) -> nn.Module:
        """The module to train ``model`` through: ``model`` itself in one process; on several ranks
        its ``DistributedDataParallel`` wrapper (gradients averaged over the ranks; SyncBatchNorm on
        CUDA), made once per model and kept until :meth:`release`. Feed it this rank's part of each
        global batch (``Split.sharded_batches``) and back-propagate ``training.cross_entropy(...,
        part)``-style losses: the update is then the one a single process makes on the global batch."""
        if not self.world.active:
            return model
        if id(model) not in self._wrapped:
            self._wrapped[id(model)] = ddp.Wrapped(model, self.device, self.world, self.reporter.warn)
        return self._wrapped[id(model)].module

    def release(self, model: nn.Module | None = None) -> None:
        """Unwrap ``model`` (every wrapped model when None): its BatchNorm layers are put back and
        every rank gets rank 0's buffers, so all ranks hold the same model. The runner calls it
        after a distributed method returns; nothing to do in one process."""
        if not self.world.active:
            return
        if model is None:
            for wrapped in self._wrapped.values():
                wrapped.release()
            self._wrapped.clear()
        elif id(model) in self._wrapped:
            self._wrapped.pop(id(model)).release()
        else:
            self.world.sync_buffers(model)

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        return self.reporter.track(iterable, total=total, description=f"{self.method}: {description}".strip(": "))

    def steps(self, description: str, total: int) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """A progress bar over every optimiser step of a loop (see ``Reporter.steps``)."""
        return self.reporter.steps(f"{self.method}: {description}".strip(": "), total)
