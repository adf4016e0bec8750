"""The tags the runner puts on an unlearning run of a one-benchmark store: what the board tests build
their records and stores from."""

from __future__ import annotations

from unlearnkit.store.mlflow_store import tag

ROLES = {"original": "original", "retrain": "retrained"}  # the reference rows' methods and their roles


def run_tags(method: str, seed: int | str, **extra: str) -> dict[str, str]:
    """Tags of ``method``'s run on ``seed`` in benchmark ``b1`` (tiny / tiny_cnn / instance:0.2);
    ``extra`` adds or replaces tags (``failure=...``, ``config_hash=...``)."""
    values = {
        "run_type": "unlearn",
        "benchmark": "b1",
        "method": method,
        "role": ROLES.get(method, ""),
        "seed": str(seed),
        "dataset": "tiny",
        "model": "tiny_cnn",
        "scenario": "instance:0.2",
        "train_recipe": "fast",
        "config_hash": f"{method}-{seed}",
        "access": "forget",
        **extra,
    }
    return {tag(k): v for k, v in values.items()}
