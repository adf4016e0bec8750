"""Built-in metrics (spec/metrics.md), registered through the `unlearnkit` entry point."""

from unlearnkit import hookimpl

from .accuracy import ACCURACY_METRICS
from .divergence import DIVERGENCE_METRICS
from .ensemble import ENSEMBLE_METRICS
from .forgetting import FORGETTING_METRICS
from .membership import MEMBERSHIP_METRICS
from .runtime import RUNTIME_METRICS


@hookimpl
def register_metrics(register):
    for cls in (
        *ACCURACY_METRICS,
        *MEMBERSHIP_METRICS,
        *DIVERGENCE_METRICS,
        *FORGETTING_METRICS,
        *RUNTIME_METRICS,
        *ENSEMBLE_METRICS,
    ):
        register(cls)
