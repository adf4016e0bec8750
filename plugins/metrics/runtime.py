"""Cost of unlearning: ``time_s`` and ``rte`` (time relative to retraining)."""

from __future__ import annotations

from unlearnkit import Evaluation, Metric


class UnlearnTime(Metric):
    """Wall-clock seconds of the unlearning call alone (device synchronised), preparation included,
    evaluation excluded. Lower is better."""

    name = "time_s"
    algorithm_version = 1
    display_order, shown_by_default, display_digits, cost_axis = 100, True, 2, True
    summary = "Wall-clock seconds of the unlearning call, preparation included (lower is better)."
    direction = "lower"

    def compute(self, ev: Evaluation) -> float:
        return float(ev.time_s)


class RelativeTime(Metric):
    """RTE = time_s / retrain_time_s: the fraction of a retraining's cost. Lower is better."""

    name = "rte"
    algorithm_version = 1
    display_order = 110
    needs = frozenset({"retrained"})
    summary = "Unlearning time over retraining time (lower is better)."
    direction = "lower"

    def compute(self, ev: Evaluation) -> float:
        return float(ev.time_s / ev.retrain_time_s) if ev.retrain_time_s > 0 else float("nan")


RUNTIME_METRICS = (UnlearnTime, RelativeTime)
