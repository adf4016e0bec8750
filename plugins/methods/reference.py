"""The two reference rows of every table: ``original`` (before) and ``retrain`` (the gold standard)."""

from __future__ import annotations

import copy

from torch import nn

from unlearnkit.api import DataAccess, Method, UnlearnOutcome
from unlearnkit.context import UnlearnContext
from unlearnkit.data import UnlearnData
from unlearnkit.hookspecs import hookimpl


class Original(Method):
    """The trained model, unchanged: the "before" every method is compared with (time 0)."""

    name = "original"
    summary = "Reference row: the original model, unchanged."
    access = DataAccess.NONE
    reference = True
    claim = "none"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        return UnlearnOutcome(copy.deepcopy(model), time_s=0.0, same_as="original")


class Retrain(Method):
    """Retraining from scratch on D_r with the original's recipe: the gold standard.

    The runner trains it once per benchmark and seed (cached in the store) and every method's
    JSD is measured against it; its row's time is that training time.
    """

    name = "retrain"
    summary = "Reference row: the model retrained from scratch on the retain set (gold standard)."
    access = DataAccess.RETAIN
    reference = True
    claim = "none"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        retrained, seconds = ctx.retrained()
        return UnlearnOutcome(retrained, time_s=seconds, same_as="retrained")


@hookimpl
def register_methods(register):
    register(Original)
    register(Retrain)
