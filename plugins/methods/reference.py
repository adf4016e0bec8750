"""The two reference rows of every table: ``original`` (before) and ``retrain`` (the gold standard)."""

from __future__ import annotations

from torch import nn

from unlearnkit import Conformance, DataAccess, Method, UnlearnContext, UnlearnData, UnlearnOutcome, hookimpl


class ReferenceRow(Method):
    """What both reference rows are: a fixed model the runner provides, not a method to conform."""

    algorithm_version = 1
    conformance = Conformance(claim="none")


class Original(ReferenceRow):
    """The trained model, unchanged: the "before" every method is compared with (time 0)."""

    name = "original"
    summary = "Reference row: the original model, unchanged."
    access = DataAccess.NONE
    role = "original"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        return UnlearnOutcome(model, time_s=0.0)


class Retrain(ReferenceRow):
    """Retraining from scratch on D_r with the original's recipe: the gold standard.

    The runner trains it once per benchmark and seed (cached in the store) and every method's
    JSD is measured against it; its row's time is that training time.
    """

    name = "retrain"
    summary = "Reference row: the model retrained from scratch on the retain set (gold standard)."
    access = DataAccess.RETAIN
    role = "retrained"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> UnlearnOutcome:
        retrained, seconds = ctx.retrained()
        return UnlearnOutcome(retrained, time_s=seconds)


@hookimpl
def register_methods(register):
    register(Original)
    register(Retrain)
