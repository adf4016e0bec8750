"""One forward pass per (model, split), shared by every metric.

``Evaluation`` hands metrics lazily computed, cached outputs. The original and retrained
models' outputs live in an ``OutputCache`` owned by the runner for the whole benchmark (one per
seed), so evaluating ten methods costs ten passes of the unlearned models plus one each for the
two references — not one pass per metric per method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from unlearnkit.context import UnlearnContext
from unlearnkit.data import Split
from unlearnkit.training import predict_logits

ROLES = ("unlearned", "original", "retrained")


@dataclass
class OutputCache:
    """Logits per (role, split) for one model set; counts the forward passes it really ran."""

    logits: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)  # role -> number of split passes
    images: dict[str, int] = field(default_factory=dict)  # role -> images forwarded


class Evaluation:
    """What metrics read: ``logits``/``probs`` per role and split, labels, times."""

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
        self.own = OutputCache()  # the unlearned model's outputs: this evaluation only
        self.shared = shared if shared is not None else OutputCache()  # original/retrained: benchmark-wide
        self.time_s = time_s
        self.retrain_time_s = retrain_time_s
        self.num_classes = ctx.num_classes
        self.forget_class = ctx.forget_class
        self.same_as = same_as  # the unlearned model is this reference: share its outputs

    def _cache_for(self, role: str) -> OutputCache:
        return self.own if role == "unlearned" else self.shared

    def logits(self, role: str, split: str) -> torch.Tensor:
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; expected one of {ROLES}")
        if role == "unlearned" and self.same_as in ROLES:
            role = self.same_as
        cache = self._cache_for(role)
        key = (role, split)
        if key not in cache.logits:
            model = self.models.get(role)
            if model is None:
                raise KeyError(f"no {role} model in this evaluation")
            data = self.splits[split]
            cache.logits[key] = predict_logits(model, data, self.ctx)
            cache.passes[role] = cache.passes.get(role, 0) + 1
            cache.images[role] = cache.images.get(role, 0) + len(data)
        return cache.logits[key]

    def probs(self, role: str, split: str) -> torch.Tensor:
        """Softmax in float64 on the CPU: metric arithmetic is cheap and should be exact."""
        return torch.softmax(self.logits(role, split).double().cpu(), dim=1)

    def labels(self, split: str) -> torch.Tensor:
        return self.splits[split].y.cpu()

    def images_forwarded(self) -> int:
        """Images this evaluation pushed through any model (shared passes counted where they ran)."""
        return sum(self.own.images.values())

    def has(self, role: str) -> bool:
        return self.models.get(role) is not None
