"""One seed's shared state, in a module of its own: the runner makes it, and what runs beside the
runner (sequential requests, the tuner, the scale-out executors) reads it without importing the
runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from unlearnkit.api.data import Split
from unlearnkit.api.evaluation import OutputCache
from unlearnkit.engine.references import Reference
from unlearnkit.engine.splits import SplitIndices


@dataclass
class Seed:
    """What every method of one seed shares: its splits, the reference models, their outputs."""

    seed: int
    idx: SplitIndices
    splits: dict[str, Split]
    original: Reference
    retrained: Reference | None
    shared: OutputCache = field(default_factory=OutputCache)
    memorisation_gap: float = float("nan")
    weak_original: bool = False
    weak_reason: str = ""  # the rules the original failed, comma-separated (weak_original_reasons)


__all__ = ["Seed"]
