"""One forward pass per (model, split), shared by every metric, under an evaluation protocol.

``Evaluation`` hands metrics lazily computed, cached outputs. The original and retrained
models' outputs live in an ``OutputCache`` owned by the runner for the whole benchmark (one per
seed), so evaluating ten methods costs ten passes of the unlearned models plus one each for the
two references — not one pass per metric per method.

Under the ``paper`` protocol (see :mod:`unlearnkit.protocols`) two things change: forget and
retain are evaluated through the training augmentation (the same seeded draws for every model,
so two models see the same crops), and :meth:`Evaluation.prepare` first runs the official
batch-size-1 membership pass with the model in the mode its method returned it in — for a
train-mode model that pass rewrites BatchNorm's running statistics, as the official code does,
before any other number is computed.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from unlearnkit.api.context import EVAL_AUGMENT_STREAM, EVAL_DRAW_STRIDE, UnlearnContext
from unlearnkit.api.data import Split
from unlearnkit.api.protocols import MEMBERSHIP_SPLITS, EvalProtocol, rounded
from unlearnkit.errors import PluginError


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    split: Split,
    ctx: UnlearnContext | None = None,
    batch_size: int = 1024,
    *,
    augment: bool = False,
    generator: torch.Generator | None = None,
    keep_mode: bool = False,
) -> torch.Tensor:
    """Float32 logits of ``model`` over ``split``, in split order, without autocast (evaluation
    is cheap, and bf16 would move argmax near-ties and entropies of near-one-hot outputs).

    Eval mode unless ``keep_mode`` (the ``paper`` protocol's passes with the model as returned);
    ``augment`` applies the training augmentation, drawn from ``generator``.
    """
    was_training = model.training
    if not keep_mode:
        model.eval()
    chunk = forward_chunk(model, split.device)
    outs: list[torch.Tensor] = []
    for x, _ in split.batches(batch_size, augment=augment, generator=generator):
        outs.extend(model(part).float() for part in (x.split(chunk) if chunk else (x,)))
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0, device=split.device)
    return torch.cat(outs)


#: Images per forward of an eval-mode model on a CPU. The batch a split is drawn in (and its augmentation
#: draws) stays ``batch_size``; only the forward is cut up, which in eval mode gives every image the same
#: output. 64 images keep a layer's activations in cache: on 2 x86_64 cores the built-in models forward
#: 1.2x (ViT-S) to 2.5x (ResNet-20) faster than at 1,024, with bit-identical logits.
CPU_FORWARD_CHUNK = 64


def forward_chunk(model: nn.Module, device: torch.device) -> int | None:
    """How many images one forward takes: :data:`CPU_FORWARD_CHUNK` on a CPU for a model whose every
    image's output is its own, else None, the whole batch (an accelerator wants large batches)."""
    return CPU_FORWARD_CHUNK if device.type == "cpu" and not batch_dependent(model) else None


def batch_dependent(model: nn.Module) -> bool:
    """Whether an image's output can depend on the others in its batch: a layer in train mode (BatchNorm
    then normalises by the batch), or a BatchNorm that keeps no running statistics, which does so even
    in eval mode."""
    return any(m.training or (isinstance(m, BATCH_NORMS) and m.running_mean is None) for m in model.modules())


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # InstanceNorm is per image


ROLES = ("unlearned", "original", "retrained")
Pass = str  # "eval" (every metric) or "membership" (the paper protocol's batch-1 pass, read by MIA)


@dataclass
class OutputCache:
    """Logits per (role, split, pass) for one model set; counts the images it really forwarded."""

    logits: dict[tuple[str, str, Pass], torch.Tensor] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)  # role -> images forwarded


class MissingModel(KeyError):
    """A metric asked for a model this evaluation does not have (e.g. no retrained model)."""


class Evaluation:
    """What metrics read: ``logits``/``probs`` per role and split, labels, times, the protocol."""

    def __init__(
        self,
        models: Mapping[str, nn.Module | None],
        splits: Mapping[str, Split],
        ctx: UnlearnContext,
        *,
        shared: OutputCache | None = None,
        time_s: float = float("nan"),
        retrain_time_s: float = float("nan"),
        same_as: str | None = None,
    ) -> None:
        self.models = dict(models)
        self.splits = dict(splits)
        self.ctx = ctx
        self.protocol: EvalProtocol = ctx.protocol
        self.own = OutputCache()  # the unlearned model's outputs: this evaluation only
        self.shared = shared if shared is not None else OutputCache()  # original/retrained: benchmark-wide
        self.time_s = time_s
        self.retrain_time_s = retrain_time_s
        self.num_classes = ctx.num_classes
        self.forget_class = ctx.forget_class
        self.same_as = same_as  # the unlearned model *is* this reference: share its outputs

    # ------------------------------------------------------------------------------ passes
    def prepare(self) -> None:
        """Run what the protocol measures before anything else (paper: the membership pass),
        then put the unlearned model in eval mode for every later pass."""
        if self.protocol.membership_pass_first:
            for split in MEMBERSHIP_SPLITS:
                if split in self.splits:
                    self.logits("unlearned", split, "membership")
        model = self.models.get("unlearned")
        if model is not None:
            model.eval()

    def _resolve(self, role: str) -> str:
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; expected one of {ROLES}")
        return self.same_as if role == "unlearned" and self.same_as in ROLES else role

    def logits(self, role: str, split: str, pass_: Pass = "eval") -> torch.Tensor:
        """Logits of ``role`` on ``split``. ``pass_="membership"`` reads the membership pass (the
        same as the eval pass except under the paper protocol)."""
        role = self._resolve(role)
        model = self.models.get(role)
        cache = self.own if role == "unlearned" else self.shared
        # a membership pass already taken stays what was read, whatever mode the model is in since
        if (
            pass_ == "membership"
            and (role, split, pass_) not in cache.logits
            and not self.membership_differs(split, model)
        ):
            pass_ = "eval"
        key = (role, split, pass_)
        if key not in cache.logits:
            if model is None:
                raise MissingModel(f"no {role} model in this evaluation")
            data = self.splits[split]
            out = self._forward(model, data, pass_)
            if out.ndim != 2 or out.shape[1] != self.num_classes:  # every metric indexes the classes' columns
                raise PluginError(
                    f"The {role} model gives outputs of shape {tuple(out.shape)} on {split}, not (N, "
                    f"{self.num_classes}): its model plugin must end in one logit per class of the dataset."
                )
            cache.logits[key] = out
            cache.images[role] = cache.images.get(role, 0) + len(data)
        return cache.logits[key]

    def membership_differs(self, split: str, model: nn.Module | None) -> bool:
        """Whether the membership pass over ``split`` can give other outputs than the eval pass: only
        under a protocol that runs it first, and there only through its own augmentation draws or a
        train-mode model (the batch-1 pass). An eval-mode model on an unaugmented split takes the very
        same forward either way, so the eval pass's outputs serve both."""
        if not self.protocol.membership_pass_first:
            return False
        return split in self.protocol.augmented_splits or model is None or model.training

    def _forward(self, model: nn.Module, data: Split, pass_: Pass) -> torch.Tensor:
        augment = data.name in self.protocol.augmented_splits
        generator = None
        if augment:  # the same crops for every model and role: seeded by split and pass only
            stream = EVAL_AUGMENT_STREAM + zlib.crc32(f"{data.name}/{pass_}".encode())
            generator = self.ctx.generator(offset=stream + EVAL_DRAW_STRIDE * self.protocol.draw)
        if pass_ == "membership" and model.training:
            return batch1_pass(model, data, augment=augment, generator=generator)
        return predict_logits(model, data, self.ctx, augment=augment, generator=generator, keep_mode=False)

    # ----------------------------------------------------------------------------- reading
    def probs(self, role: str, split: str, pass_: Pass = "eval") -> torch.Tensor:
        """Softmax in float64 on the CPU: metric arithmetic is cheap and should be exact."""
        return torch.softmax(self.logits(role, split, pass_).double().cpu(), dim=1)

    def labels(self, split: str) -> torch.Tensor:
        return self.splits[split].y.cpu()

    def reported(self, value: float) -> float:
        """A value as the protocol reports it (paper: rounded to 0.01)."""
        return rounded(value, self.protocol)

    def images_forwarded(self) -> int:
        """Images this evaluation pushed through the unlearned model (shared passes counted where they ran)."""
        return sum(self.own.images.values())


@torch.no_grad()
def batch1_pass(model: nn.Module, data: Split, *, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
    """The official membership pass: one image at a time, the model left in train mode, so every
    BatchNorm layer normalises each image by its own statistics and moves its running statistics
    once per image (momentum 0.1), in split order. Slow by design; only train-mode models take it."""
    outs = []
    for x, _ in data.batches(1, augment=augment, generator=generator):
        outs.append(model(x).float())
    if not outs:
        return torch.empty(0, 0, device=data.device)
    return torch.cat(outs)
