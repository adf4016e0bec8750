"""Which half of the training set each shadow model of a U-LiRA audit trains on (pure numpy).

The engine needs them as well as the audit: the ``shadows`` memorisation score
(:mod:`unlearnkit.engine.memorisation`) is the audit's leave-one-out estimate, read from the same shadow
originals, so both must draw the same halves and seeds (same models, same store keys).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Seed = int | Sequence[int] | np.random.SeedSequence | None

SHADOW_ORIGINAL = "shadow-original"  # the role of a shadow original in its training run's identity
AUDIT_SEED = 3407  # an audit's seed when none is given (``unlearnkit audit --seed``)
HALVES_STREAM = 0x5AD0  # the seed stream of an audit's halves (independent of its retained sample's)


def shadow_halves(n: int, k: int, seed: Seed) -> np.ndarray:
    """K seeded half-splits of n examples: a (K, N) boolean matrix, True = example n is IN split k.

    LiRA's construction: draw ``U ~ Uniform(0, 1)^(K x N)``, take ``order = argsort(U, axis=0)`` (a
    uniform random permutation of the K shadows per example) and set IN where ``order < t_n``. For even
    K, ``t_n = K/2``: every example is IN in exactly half the shadows, so each one has as many IN as OUT
    observations. For odd K, ``t_n`` is ``(K-1)/2`` or ``(K+1)/2``, the larger for a seeded random
    ``floor(N/2)`` of the examples, so each split still holds about N/2 examples (always ``order < K/2``
    would put every example IN ``(K+1)/2`` times and make each split ``(K+1)/(2K)`` of the data).
    """
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 examples and k >= 1 shadows; got n={n}, k={k}")
    rng = np.random.default_rng(seed)
    order = rng.random((k, n)).argsort(axis=0)
    threshold = np.full(n, k // 2)
    if k % 2:
        threshold[rng.permutation(n)[: n // 2]] += 1
    return order < threshold[None, :]


def universe_halves(n: int, shadows: int, seed: int) -> np.ndarray:
    """The (K, n) halves of an audit seeded ``seed`` over its universe of ``n`` training examples."""
    return shadow_halves(n, shadows, np.random.SeedSequence([seed, HALVES_STREAM]))


def shadow_seed(seed: int, k: int) -> int:
    """The training seed of shadow ``k`` of an audit seeded ``seed`` (also the method's seed on it)."""
    return (seed + 1000 * (k + 1)) % 2**32


__all__ = ["AUDIT_SEED", "SHADOW_ORIGINAL", "Seed", "shadow_halves", "shadow_seed", "universe_halves"]
