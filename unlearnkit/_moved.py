"""The module paths 0.3 moved: importing an old one still works for one release, warns once with
the new path, and hands back the new module itself (the same object, so ``isinstance`` checks and
monkeypatches see one module, not a copy). Listed in CHANGELOG.md; removed in 0.4.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.4"

# old path -> new path
MOVED: dict[str, str] = {
    "unlearnkit.context": "unlearnkit.api.context",
    "unlearnkit.data": "unlearnkit.api.data",
    "unlearnkit.evaluation": "unlearnkit.api.evaluation",
    "unlearnkit.protocols": "unlearnkit.api.protocols",
    "unlearnkit.tuning": "unlearnkit.api.search_space",
    "unlearnkit.hookspecs": "unlearnkit.api.hookspecs",
    "unlearnkit.checkpoints": "unlearnkit.api.weights",
    "unlearnkit.progress": "unlearnkit.api.progress",
    "unlearnkit.training": "unlearnkit.loops.training",
    "unlearnkit.ddp": "unlearnkit.parallel.torchrun",
    "unlearnkit.registry": "unlearnkit.discovery.registry",
    "unlearnkit.plugins": "unlearnkit.discovery.host",
    "unlearnkit.config": "unlearnkit.engine.config",
    "unlearnkit.benchmark": "unlearnkit.engine.prepared",
    "unlearnkit.splits": "unlearnkit.engine.splits",
    "unlearnkit.references": "unlearnkit.engine.references",
    "unlearnkit.runner": "unlearnkit.engine.runner",
    "unlearnkit.bundles": "unlearnkit.engine.bundles",
    "unlearnkit.claims": "unlearnkit.store.claims",
    "unlearnkit.interrupts": "unlearnkit.store.interrupts",
    "unlearnkit.leaderboard": "unlearnkit.board.leaderboard",
    "unlearnkit.tables": "unlearnkit.board.tables",
    "unlearnkit.plots": "unlearnkit.board.plots",
    "unlearnkit.publish": "unlearnkit.board.publish",
    "unlearnkit.sweep": "unlearnkit.scale.sweep",
    "unlearnkit.recipes": "unlearnkit.scale.sweep_recipes",
    "unlearnkit.distributed": "unlearnkit.scale.ray_executor",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new path."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:  # the new module ran when it was imported
        return None


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(
            f"{fullname} moved to {new}; the old path goes in unlearnkit {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


_FINDER = _MovedFinder()


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import unlearnkit`` does it)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
