"""The store: MLflow (:mod:`.mlflow_store`, the only importer of mlflow), exactly-once claims
(:mod:`.claims`), signal deferral around writes (:mod:`.interrupts`) and the declared tag keys
(:mod:`.tags`). The face keeps the names ``unlearnkit.store`` had before 0.3."""

import os

#: MLflow's usage telemetry, read when mlflow is first imported (every module of this package comes
#: after this line). unlearnkit picks MLflow as its store, so MLflow's telemetry is off unless the
#: user turns it on (``MLFLOW_DISABLE_TELEMETRY=false``). Ray's usage stats are off on a local
#: instance for the same reason. Left on, every process (each Ray worker too) would try to report
#: its use of MLflow over the network and keep an installation id under ``~/.config/mlflow``.
TELEMETRY_SWITCH = "MLFLOW_DISABLE_TELEMETRY"
os.environ.setdefault(TELEMETRY_SWITCH, "true")

from unlearnkit.store.mlflow_store import (  # noqa: E402 - after the switch above
    DEFAULT_EXPERIMENT,
    CorruptCheckpoint,
    RunRecord,
    Store,
    default_store_dir,
    resolve_tracking_uri,
    store_call,
    tag,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "CorruptCheckpoint",
    "RunRecord",
    "Store",
    "default_store_dir",
    "resolve_tracking_uri",
    "store_call",
    "tag",
]
