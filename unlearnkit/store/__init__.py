"""The store: MLflow (:mod:`.mlflow_store`, the only importer of mlflow), exactly-once claims
(:mod:`.claims`), signal deferral around writes (:mod:`.interrupts`) and the declared tag keys
(:mod:`.tags`). The face keeps the names ``unlearnkit.store`` had before 0.3."""

from unlearnkit.store.mlflow_store import (
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
