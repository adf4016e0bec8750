"""Memorisation scores of the training images, for the scenarios that stratify forget sets by them.

Two kinds of source (docs/protocols.md, "memorised"):

- **proxies read off the original's training run** (``confidence``, ``learning``): the original of the
  seed is trained exactly as the benchmark trains it (same recipe, seed, data order; bit-identical
  weights), and at the end of every epoch its eval-mode outputs on the training pool are recorded.
  ``confidence`` is one minus the mean, over epochs, of the probability of the true label (the
  learning-speed proxy of Jiang et al. that Zhao et al. use); ``learning`` is the share of epochs at
  whose end the image was misclassified. Late- or never-learnt images score high: those a model fits
  only by memorising them.
- **the leave-one-out style estimate** of Feldman & Zhang, from K shadow originals each trained on a
  seeded half of the pool (``shadows:K``): the accuracy on an image of the shadows that trained on it
  minus that of the shadows that did not. The shadows are exactly a U-LiRA audit's (same halves, seeds
  and store keys; :mod:`unlearnkit.engine.halves`): models an audit trained are reused, and models
  trained here are reused by a later audit.

Scores are cached by content (the identity of the models they come from, the source and
``SCORES_VERSION``) in the local cache, verified by checksum before reuse; a file that fails the check
is recomputed. Every score array has one entry per training image; images outside the pool are NaN.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.api.scenarios import SCORE_PROXIES, ScoreSource, parse_score_source
from unlearnkit.engine.halves import AUDIT_SEED, SHADOW_ORIGINAL, shadow_seed, universe_halves
from unlearnkit.engine.prepared import cache_dir, seed_everything
from unlearnkit.engine.score_version import SCORES_VERSION, score_identity
from unlearnkit.engine.splits import subset_indices
from unlearnkit.errors import ConfigError
from unlearnkit.identity import array_fingerprint, config_hash, file_sha256
from unlearnkit.loops.training import fit
from unlearnkit.store.sqlite_file import write_atomically

if TYPE_CHECKING:
    from unlearnkit.engine.prepared import Benchmark
    from unlearnkit.store.mlflow_store import Store

TRAINING_RECORD = "training-record"  # the one training run both proxies are read off


# ------------------------------------------------------------------------------------ the proxies
@dataclass
class EpochWatch(UnlearnContext):
    """A context that calls ``on_epoch`` whenever the training loop closes an epoch (its last
    per-epoch number, ``train_acc``): the training itself runs exactly as the original's does."""

    on_epoch: Callable[[int], None] | None = None

    def log(self, name: str, value: float, step: int) -> None:
        super().log(name, value, step)
        if name == "train_acc" and self.on_epoch is not None:
            self.on_epoch(step)


def watched(ctx: UnlearnContext, on_epoch: Callable[[int], None]) -> EpochWatch:
    given = {f.name: getattr(ctx, f.name) for f in fields(ctx) if f.init}
    return EpochWatch(**given, on_epoch=on_epoch)


def proxies(true_prob: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Both proxies from the (epochs, N) record of the true label's probability and correctness."""
    if true_prob.shape[0] == 0:
        raise ConfigError("A memorisation proxy needs a trained original: the training recipe has 0 epochs.")
    return {"confidence": 1.0 - true_prob.mean(0), "learning": 1.0 - correct.mean(0)}


def training_record(bench: Benchmark, seed: int, pool: np.ndarray) -> dict[str, np.ndarray]:
    """Train the seed's original on ``pool`` as :class:`~unlearnkit.engine.references.References`
    does, recording its outputs on the pool after every epoch; both proxies over the pool."""
    split = bench.training_split(pool)
    eval_split = bench.training_split(pool, name="pool")
    labels = eval_split.y
    seed_everything(seed)
    model = bench.build_model()
    probs: list[np.ndarray] = []
    hits: list[np.ndarray] = []

    def record(epoch: int) -> None:
        with torch.no_grad():
            logits = predict_logits(model, eval_split, ctx)
        p = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
        probs.append(p.double().cpu().numpy())
        hits.append((logits.argmax(1) == labels).cpu().numpy())

    ctx = watched(bench.context(seed, None, method="original"), record)
    fit(model, split, bench.train_recipe, ctx, description=f"train the original (seed {seed}) for memorisation scores")
    shape = (0, len(pool))
    return proxies(np.stack(probs) if probs else np.zeros(shape), np.stack(hits) if hits else np.zeros(shape))


# ------------------------------------------------------------------------------------ the estimate
def loo_estimate(correct: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """Per image: mean correctness of the shadows trained on it minus that of the others (NaN where
    either group is empty). ``correct`` and ``halves`` are (K, N) booleans."""
    ins, outs = halves.sum(0), (~halves).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        in_acc = (correct & halves).sum(0) / ins
        out_acc = (correct & ~halves).sum(0) / outs
    est = in_acc - out_acc
    est[(ins == 0) | (outs == 0)] = np.nan
    return est


def shadow_estimate(bench: Benchmark, store: Store, pool: np.ndarray, shadows: int) -> np.ndarray:
    """The estimate over ``pool`` from the K shadow originals of an audit seeded ``AUDIT_SEED``
    (trained here, or reused from the store when an audit or an earlier score trained them)."""
    from unlearnkit.engine.references import References

    halves = universe_halves(len(pool), shadows, AUDIT_SEED)
    refs = References(bench, store, bench.reporter, memo={})
    eval_split = bench.training_split(pool, name="pool")
    correct = np.zeros(halves.shape, dtype=bool)
    for k in range(shadows):
        trained = pool[halves[k]]
        seed = shadow_seed(AUDIT_SEED, k)
        ref = refs.train_or_reuse(SHADOW_ORIGINAL, seed, bench.training_split(trained), trained)
        ctx = bench.context(seed, None, method=SHADOW_ORIGINAL)
        with torch.no_grad():
            logits = predict_logits(ref.model, eval_split, ctx)
        correct[k] = (logits.argmax(1) == eval_split.y).cpu().numpy()
    return loo_estimate(correct, halves)


# ------------------------------------------------------------------------------------ the cache
def cached(
    folder: Path, key: str, n: int, compute: Callable[[], np.ndarray], warn: Callable[[str], None]
) -> np.ndarray:
    """``compute()``'s array of length ``n``, stored under ``key``; reused only when its checksum,
    dtype and length check out (a torn or tampered file is recomputed, never trusted)."""
    folder.mkdir(parents=True, exist_ok=True)
    path, meta = folder / f"{key}.npy", folder / f"{key}.json"
    from filelock import FileLock

    with FileLock(str(folder / f"{key}.lock")):
        if path.exists() or meta.exists():
            got = load_verified(path, meta, n)
            if got is not None:
                return got
            warn(f"Memorisation scores {key} in {folder} failed their check; recomputing them.")
        values = np.asarray(compute(), dtype=np.float64)
        write_atomic(path, meta, values)
        return values


def load_verified(path: Path, meta: Path, n: int) -> np.ndarray | None:
    try:
        expected = json.loads(meta.read_text(encoding="utf-8"))["sha256"]
        blob = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(expected, str) or hashlib.sha256(blob).hexdigest() != expected:
        return None
    try:
        values = np.load(io.BytesIO(blob), allow_pickle=False)  # the very bytes that were checked
    except (OSError, ValueError):
        return None
    if values.dtype != np.float64 or values.shape != (n,):
        return None
    return values


def write_atomic(path: Path, meta: Path, values: np.ndarray) -> None:
    """The array, then its checksum sidecar, each replacing its file in one step (never torn)."""

    def fill(temp: Path) -> None:
        with open(temp, "wb") as out:
            np.save(out, values, allow_pickle=False)

    write_atomically(path, fill)
    record = json.dumps({"sha256": file_sha256(path), "n": int(values.shape[0])})
    write_atomically(meta, lambda temp: temp.write_text(record, encoding="utf-8"))


# ------------------------------------------------------------------------------------ the source
class ScoreBook:
    """The memorisation scores of one benchmark seed, by source, computed once and cached."""

    def __init__(self, bench: Benchmark, seed: int) -> None:
        self.bench = bench
        self.seed = seed
        self.pool = subset_indices(bench.raw.y_train, bench.plan.subset)
        self.folder = cache_dir() / "memorisation"

    def original_identity(self) -> dict[str, Any]:
        """The seed's original's identity (References': the record is read off that very training)."""
        from unlearnkit.engine.references import References

        refs = References(self.bench, cast("Store", None))
        return refs.identity("original", self.seed, self.pool)

    def __call__(self, source: str) -> np.ndarray:
        source = parse_score_source(source)
        if source in SCORE_PROXIES:
            return self.proxy(source)
        return self.estimate(int(source.split(":", 1)[1]))

    def proxy(self, source: str) -> np.ndarray:
        ident = {"scores": TRAINING_RECORD, "version": SCORES_VERSION, "original": self.original_identity()}
        base = config_hash(ident)
        record: dict[str, np.ndarray] = {}

        def compute(name: str) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                if not record:
                    self.bench.reporter.event(f"Computing memorisation scores ({source}) for seed {self.seed}")
                    record.update(training_record(self.bench, self.seed, self.pool))
                return self.spread(record[name])

            return run

        value = self._cached(f"{base}-{source}", compute(source))
        if record:  # trained just now: both proxies come from that one training, keep the other too
            for name in SCORE_PROXIES:
                if name != source:
                    self._cached(f"{base}-{name}", compute(name))
        return value

    def estimate(self, shadows: int) -> np.ndarray:
        store = self.bench.store
        if store is None:
            raise ConfigError(
                f"Memorisation scores from shadows:{shadows} train or reuse an audit's shadow models, which live "
                "in a store; this benchmark has none (use `unlearnkit run`, or the confidence or learning proxy)."
            )
        ident = {
            "scores": "shadows",
            "version": SCORES_VERSION,
            "shadows": shadows,
            "audit_seed": AUDIT_SEED,
            "model": self.bench.model_identity,
            "pool": array_fingerprint(self.pool),
        }
        return self._cached(
            config_hash(ident), lambda: self.spread(shadow_estimate(self.bench, store, self.pool, shadows))
        )

    def spread(self, over_pool: np.ndarray) -> np.ndarray:
        """Scores over the pool -> one per training image (NaN outside the pool)."""
        full = np.full(len(self.bench.raw.y_train), math.nan)
        full[self.pool] = over_pool
        return full

    def _cached(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        return cached(self.folder, key, len(self.bench.raw.y_train), compute, self.bench.reporter.warn)


def score_source(bench: Benchmark, seed: int) -> ScoreSource:
    """The scores a scenario draws a seed's forget set by (``ScenarioData.scores``)."""
    return ScoreBook(bench, seed)


__all__ = ["SCORES_VERSION", "ScoreBook", "loo_estimate", "proxies", "score_identity", "score_source"]
