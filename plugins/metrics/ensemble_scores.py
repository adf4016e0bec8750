"""The arithmetic of two ensemble forgetting scores, and a bootstrap for their intervals (numpy and scipy only).

Both scores compare, example by example, the *distribution* of a statistic over N unlearned models with
its distribution over N reference models that never saw the forget set. Inputs are per-example statistics
as ``(N, M)`` arrays: one row per model, one column per forget example, the same examples in the same
order on both sides. Nothing here trains, forwards or stores a model.

NeurIPS 2023 unlearning challenge score
---------------------------------------
Read from google-deepmind/unlearning_evaluation, ``metric.py`` and ``main.py`` at commit
ffae0fff4c3e9523b22618c47df6c26e4eebe0df.

*Statistic.* With logits ``z`` and true class ``y``, let ``p_y`` be the softmax probability of ``y`` and
``tau = 1e-45``. The statistic is the floored logit of that probability,
``s = log(p_y + tau) - log(1 - p_y + tau)``. Since ``p_y = sigmoid(m)`` with the margin
``m = z_y - logsumexp_{j != y} z_j``, we compute ``s = log(sigmoid(m) + tau) - log(sigmoid(-m) + tau)``
from ``m`` (:func:`logit_scaled_confidence`): it equals ``m`` up to the floor, and stays within about
+-103.6 even for infinite logits.

*Per-example epsilon.* For one example, call the two samples A (unlearned) and B (retrained) and their
ranges ``w_A``, ``w_B``. If ``min(w_A, w_B) / max(w_A, w_B) < 0.01`` one side is far peakier than the
other and ``eps = 50`` outright. Otherwise an attacker tries two families of decision rules, with
thresholds spaced about 1/100 apart:

- *one threshold*: "positive" is the side with the larger median (a tie makes it the unlearned side);
  predict positive when ``s >= t``, for ``t`` on ``ceil(100 (max - min))`` evenly spaced points spanning
  the pooled ``[min, max]``;
- *two thresholds*: "positive" is the side with the strictly smaller range (a tie makes it the other
  family's negative side: the smaller median, or the retrained side when medians tie too); with ``w``
  that smaller range, predict positive when ``l <= s <= r``, for
  ``r`` on ``ceil(100 (max_r - min_r))`` points from ``min_r = min_pos + w - 2`` to ``max_r = max_pos + 2``
  and, for each ``r``, ``l`` on 400 points from ``r - w - 2`` to ``r - w + 2``.

A rule's FPR and FNR are fractions of models. Its epsilon at ``delta = 1e-5`` is
``max(0, log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)`` (a logarithm of a non-positive
number drops that term); a rule with FPR = FNR = 0 separates perfectly (``eps = inf``); a rule with
exactly one zero rate is discarded as an artefact of too few models, and so is one where both terms
drop. ``eps`` is the largest over the surviving rules, clipped to ``[0, 50]``: the cap 50 is what a
perfect separation or a peaky side scores.

*Buckets and F.* With ``E = ceil(ln(N_u - 1))`` (``N_u`` unlearned models) and bucket
``b = floor(eps / 0.5)``, an example earns ``2 ** -b`` if ``b < 2 E`` and nothing otherwise. The forgetting
quality ``F`` is the mean over the forget examples, in ``[0, 1]``. The challenge's final score is
``F * (RA_u / RA_r) * (TA_u / TA_r)``, the retain and test accuracies averaged over each side's models.

KLoM
----
Read from RoyRin/data-unlearning-bench, ``unlearning_bench/eval.py`` and ``unlearning_bench/run.py`` at
commit eb261f9c652aa1daae62c7f23f4e56286edf745c (both last changed in afe39593), and
``notebooks/klom_computation.ipynb`` at 5bb5c4e72b11ac7e3d981a14fd0ed36d0d52bdeb.

The statistic is the margin ``m = z_y - logsumexp_{j != y} z_j`` (:func:`margins_from_logits`). For one
example, both samples are clipped to ``[-100, 100]`` and binned into 20 equal-width bins spanning their
pooled ``[min, max]`` (``[min, min + 1]`` when every value is equal). With ``P`` the unlearned models'
bin frequencies and ``Q`` the oracles', ``Q~`` is ``Q`` with each bin where ``P > 0`` raised to at least
``1e-5`` and renormalised, and ``KLoM = sum_k P_k log(P_k / Q~_k) = KL(P || Q~)``: large where the
unlearned models put mass the oracles do not. The reference returns the per-example values and
aggregates none of them; :func:`klom_summary` reports their mean, median and a percentile.

Where we depart from the references, deliberately
-------------------------------------------------
- Arithmetic is float64 throughout. The challenge code averages its rates in float32 and builds the
  one-threshold grid with ``torch.linspace`` in float32, so its epsilons carry about 7 digits; a rule's
  rates change only if a statistic lies within a float32 rounding of a threshold, and a bucket only if
  an epsilon lies that close to a multiple of 0.5. It also exponentiates logits in their own dtype
  (float32 logits underflow to probability 0 below about 1e-45); we upcast logits to float64 first.
- When no rule survives (e.g. both samples are one and the same constant), the challenge code fails
  its ``assert``. As published, that ``assert`` tests a numpy array's truth value, so it also raises
  whenever more than one rule survives, and fails when the only survivor has epsilon 0: the intent is
  plainly "some rule survives". We read "none survives" as "no evidence of a difference": ``eps = 0``.
- ``N_u`` and ``N_r`` may differ (the challenge code pairs the two arrays elementwise); each rate is a
  fraction of its own side's models, and ``E`` counts the unlearned models as the reference does.
- KLoM's binning uses ``np.digitize``, so a value equal to the pooled maximum lands past the last bin
  and is *not counted*; when every unlearned value is that maximum the reference returns NaN. By
  default the last bin is closed (the maximum counts, as in ``np.histogram``);
  ``last_edge="reference"`` reproduces the reference exactly, NaN included.
- KLoM's direction is ``KL(unlearned || oracle)``, as ``eval.py``'s ``kl_from_margins`` and the notebook
  call it; ``run.py`` passes its arguments the other way round (oracle first), i.e. it computes
  ``KL(oracle || unlearned)``. Swap the arguments to reproduce those numbers.
- Both scores need at least two models on each side (one model is a point mass, not a distribution).
  With exactly two unlearned models ``E = 0``: the challenge F is 0 whatever the models, as in the
  reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import rel_entr

import unlearnkit as uk

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: The challenge's delta: each rule's epsilon is computed at this delta.
CHALLENGE_DELTA = 1e-5
#: The largest per-example epsilon: what a perfect separation or a peaky side scores.
EPSILON_CAP = 50.0
#: Thresholds per unit of the statistic, in both rule families.
THRESHOLDS_PER_UNIT = 100
#: How far (in units of the statistic) the two-threshold rules reach beyond the peakier side.
THRESHOLD_BUFFER = 2.0
#: Left thresholds per right threshold: ceil(2 * buffer * per unit).
LEFT_THRESHOLDS = math.ceil(2 * THRESHOLD_BUFFER * THRESHOLDS_PER_UNIT)
#: Below this ratio of the two ranges one side counts as peaky: epsilon is the cap.
PEAKY_RATIO = 0.01
#: Width of an epsilon bucket; bucket b is worth 2 ** -b.
BUCKET_WIDTH = 0.5
#: The floor added to both probabilities of the logit-scaled confidence.
CONFIDENCE_FLOOR = 1e-45
#: KLoM's histogram: bins, the floor of the oracle frequencies where the unlearned ones are positive,
#: and the clip of the margins.
KLOM_BINS = 20
KLOM_EPS = 1e-5
KLOM_CLIP = 100.0
#: Fewest models a side may have: a distribution needs two.
MIN_MODELS = 2

# The two-threshold family evaluates (examples x right thresholds x models) at once: this many at most.
_CHUNK_ELEMENTS = 1 << 20


# ----------------------------------------------------------------------------------------------------
# Validation


def _statistics(x: npt.ArrayLike, name: str, *, allow_inf: bool = False) -> FloatArray:
    """A side's per-example statistics as a float64 (models, examples) array, or a ValueError saying why not."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (models, examples) array; got shape {a.shape}")
    if a.shape[0] < MIN_MODELS:
        raise ValueError(
            f"{name} has {a.shape[0]} model(s): a score of distributions needs at least {MIN_MODELS} per side"
        )
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no examples")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        what = "NaN" if allow_inf else "non-finite (NaN or infinite)"
        raise ValueError(
            f"{name} has {int(bad.sum())} {what} value(s), e.g. at (model, example) {tuple(np.argwhere(bad)[0])}"
        )
    return a


def _paired(a: FloatArray, b: FloatArray, names: tuple[str, str]) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must score the same examples: {a.shape[1]} vs {b.shape[1]} columns"
        )


# ----------------------------------------------------------------------------------------------------
# Statistics from logits


def margins_from_logits(logits: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """KLoM's statistic: ``z_y - logsumexp_{j != y} z_j`` per model and example, shape (K, M).

    ``logits`` is (K, M, C) for K models, M examples and C >= 2 classes; ``labels`` is (M,) (the same for
    every model) or (K, M). Computed in float64 without overflow. A ``-inf`` logit is a class with zero
    probability; a ``+inf`` true-class logit gives ``+inf``, a ``+inf`` other logit ``-inf`` (the scores clip
    or floor these). Undetermined margins (``+inf`` on the true class and another, or every logit
    ``-inf``) and NaN logits raise ValueError.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 3:
        raise ValueError(f"logits must be (models, examples, classes); got shape {z.shape}")
    k, m, c = z.shape
    if c < 2:
        raise ValueError(f"logits need at least 2 classes for a margin; got {c}")
    if np.isnan(z).any():
        raise ValueError("logits contain NaN")
    y = np.asarray(labels)
    if y.shape not in ((m,), (k, m)):
        raise ValueError(f"labels must be ({m},) or ({k}, {m}) for logits of shape {z.shape}; got {y.shape}")
    margin = uk.logit_margin(z, y)
    if np.isnan(margin).any():
        bad = tuple(int(i) for i in np.argwhere(np.isnan(margin))[0])
        raise ValueError(
            f"margin undetermined at (model, example) {bad}: the true class and another are both +inf, or every logit is -inf"
        )
    return np.asarray(margin, dtype=np.float64)


def confidence_from_margins(margins: npt.ArrayLike) -> FloatArray:
    """The challenge statistic from margins: ``log(sigmoid(m) + tau) - log(sigmoid(-m) + tau)``, tau = 1e-45.

    ``sigmoid(m)`` is the true class's softmax probability, so this is the reference's
    ``log(p_y + tau) - log(sum_{j != y} p_j + tau)`` evaluated without forming ``p_y`` (no cancellation
    near 0 or 1). Infinite margins give the floor's bounds, about +-103.6; NaN raises ValueError.
    """
    mg = np.asarray(margins, dtype=np.float64)
    if np.isnan(mg).any():
        raise ValueError("margins contain NaN")
    log_tau = math.log(CONFIDENCE_FLOOR)
    log_p_true = -np.logaddexp(0.0, -mg)
    log_p_rest = -np.logaddexp(0.0, mg)
    return np.asarray(np.logaddexp(log_p_true, log_tau) - np.logaddexp(log_p_rest, log_tau), dtype=np.float64)


def logit_scaled_confidence(logits: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """The challenge's per-example statistic from (K, M, C) logits: shape (K, M). See :func:`confidence_from_margins`."""
    return confidence_from_margins(margins_from_logits(logits, labels))


# ----------------------------------------------------------------------------------------------------
# Evenly spaced grids, never materialised


def _grid_step(start: FloatArray, stop: FloatArray, num: IntArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(num > 1, (stop - start) / np.maximum(num - 1, 1), 0.0), dtype=np.float64)


def _grid_value(k: IntArray, start: FloatArray, stop: FloatArray, num: IntArray, step: FloatArray) -> FloatArray:
    """Element k of ``np.linspace(start, stop, num)``, bit for bit: ``k * step + start``, the last one ``stop``."""
    return np.asarray(np.where((k == num - 1) & (num > 1), stop, k * step + start), dtype=np.float64)


def _count_at_or_below(start: npt.ArrayLike, stop: npt.ArrayLike, num: npt.ArrayLike, x: FloatArray) -> IntArray:
    """How many points of ``np.linspace(start, stop, num)`` are ``<= x`` (``np.digitize(x, grid)``), broadcast.

    The grids here have up to ~10^4 points and there are millions of them (one per right threshold per
    example), so instead of building them we invert the grid's formula and correct the estimate against the
    exact grid values until it is exact: the grid is nondecreasing, so the loops end, after one or two
    passes for statistics of any sensible size.
    """
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(stop, dtype=np.float64)
    n = np.asarray(num, dtype=np.int64)
    step = _grid_step(s, e, n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        raw = np.where(step > 0, np.floor((x - s) / np.where(step > 0, step, 1.0)) + 1.0, 0.0)
    shape = np.broadcast_shapes(s.shape, e.shape, n.shape, x.shape)
    k: IntArray = np.broadcast_to(np.clip(raw, 0, n).astype(np.int64), shape).copy()
    # One pass over everything finds the (rare) estimates that are off; only those are walked to the count.
    wrong = ((k < n) & (_grid_value(k, s, e, n, step) <= x)) | ((k > 0) & (_grid_value(k - 1, s, e, n, step) > x))
    if wrong.any():
        kk = k[wrong]
        ss, ee, st, xx = (np.broadcast_to(v, shape)[wrong] for v in (s, e, step, x))
        nn = np.broadcast_to(n, shape)[wrong]
        while True:  # too low: the next grid point is still <= x
            up = (kk < nn) & (_grid_value(kk, ss, ee, nn, st) <= xx)
            if not up.any():
                break
            kk = kk + up
        while True:  # too high: the last counted grid point is > x
            down = (kk > 0) & (_grid_value(kk - 1, ss, ee, nn, st) > xx)
            if not down.any():
                break
            kk = kk - down
        k[wrong] = kk
    return k


# ----------------------------------------------------------------------------------------------------
# The challenge score


def _epsilon_table(n_pos: int, n_neg: int, size: int, delta: float) -> FloatArray:
    """Epsilon of a rule that flags ``a`` of the n_pos positives and ``b`` of the n_neg negatives, at [a, b].

    Every rule of one example is one (a, b) pair, so a table over all pairs replaces millions of logarithms.
    NaN marks a discarded rule (exactly one zero rate, or both terms undefined) and cells beyond n_pos/n_neg.
    """
    a = np.arange(size)[:, None]
    b = np.arange(size)[None, :]
    fpr = b / n_neg
    fnr = (n_pos - a) / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.log((1.0 - delta) - fpr) - np.log(fnr)
        two = np.log((1.0 - delta) - fnr) - np.log(fpr)
        eps = np.maximum(np.fmax(one, two), 0.0)  # fmax drops a NaN term; maximum keeps NaN when both are
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, eps)
    eps = np.where((fpr == 0) != (fnr == 0), np.nan, eps)
    eps = np.where((a <= n_pos) & (b <= n_neg), eps, np.nan)
    return np.asarray(eps, dtype=np.float64)


def _best_rule(
    alive: IntArray,
    positive: BoolArray,
    grid_len: IntArray | int,
    row_ok: BoolArray | bool,
    pos_unlearned: BoolArray,
    tables: tuple[FloatArray, FloatArray],
) -> FloatArray:
    """Largest surviving epsilon of each row of rules; -inf where none survives.

    A row is one grid of ``grid_len`` thresholds indexed by k; model n is flagged at every k < ``alive[n]``.
    Between two consecutive distinct ``alive`` values the flagged set, hence the rule's rates, is constant,
    so k = 0 and k = each distinct ``alive`` value below ``grid_len`` realise every rule the row holds.
    ``positive`` marks the models of the positive side, ``pos_unlearned`` says which table to read.
    """
    positive = np.broadcast_to(positive, alive.shape)
    n_pos = positive.sum(axis=-1)
    n_neg = alive.shape[-1] - n_pos
    grid_len = np.asarray(grid_len)
    row_ok = np.asarray(row_ok)
    table = np.stack(tables)  # [0]: the positive side is the unlearned one, [1]: the retrained one
    side = np.where(pos_unlearned, 0, 1)
    # k = 0
    flagged = alive > 0
    tp0 = (flagged & positive).sum(axis=-1)
    fp0 = (flagged & ~positive).sum(axis=-1)
    best0 = table[side, tp0, fp0]
    best0 = np.where((grid_len > 0) & row_ok & ~np.isnan(best0), best0, -np.inf)
    # k = each distinct alive value: the models flagged are those whose alive exceeds it. Sorting packed
    # keys (alive, positive) orders by alive and carries each model's side along.
    key = alive.astype(np.int64) * 2 + positive
    key.sort(axis=-1)
    ranked = key >> 1
    ranked_pos = (key & 1).astype(bool)
    tp = n_pos[..., None] - np.cumsum(ranked_pos, axis=-1)
    fp = n_neg[..., None] - np.cumsum(~ranked_pos, axis=-1)
    last_of_value = np.ones(ranked.shape, dtype=bool)
    last_of_value[..., :-1] = ranked[..., 1:] != ranked[..., :-1]
    eps = table[side[..., None], tp, fp]
    ok = last_of_value & (ranked < grid_len[..., None]) & row_ok[..., None] & ~np.isnan(eps)
    best = np.where(ok, eps, -np.inf).max(axis=-1)
    return np.asarray(np.maximum(best0, best), dtype=np.float64)


def challenge_epsilons(
    unlearned: npt.ArrayLike, retrained: npt.ArrayLike, *, delta: float = CHALLENGE_DELTA
) -> FloatArray:
    """Per-example epsilon of the challenge's attack, shape (M,), in [0, 50] (see the module docstring).

    ``unlearned`` (N_u, M) and ``retrained`` (N_r, M) hold the per-example statistic
    (:func:`logit_scaled_confidence`) of every model; both need >= 2 models and finite values. Vectorised
    over examples and exact on the reference's threshold grids: a statistic equal to a threshold is
    flagged as the reference flags it (``s >= t``, ``l <= s <= r``). Both samples constant and equal: no
    rule survives and epsilon is 0; one side constant, the other not: epsilon is the cap.
    """
    u = _statistics(unlearned, "unlearned")
    r = _statistics(retrained, "retrained")
    _paired(u, r, ("unlearned", "retrained"))
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must lie in [0, 1); got {delta}")
    n_u, n_r = u.shape[0], r.shape[0]
    values = np.concatenate([u, r], axis=0).T  # (M, N_u + N_r)
    is_r = np.arange(n_u + n_r) >= n_u
    size = max(n_u, n_r) + 1
    tables = (_epsilon_table(n_u, n_r, size, delta), _epsilon_table(n_r, n_u, size, delta))

    r_positive = np.median(r, axis=0) > np.median(u, axis=0)  # the one-threshold family's positive side
    range_u = u.max(axis=0) - u.min(axis=0)
    range_r = r.max(axis=0) - r.min(axis=0)
    pos_range = np.where(r_positive, range_r, range_u)
    neg_range = np.where(r_positive, range_u, range_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        peaky = np.minimum(pos_range, neg_range) / np.maximum(pos_range, neg_range) < PEAKY_RATIO  # 0/0: not

    # One threshold: flag s >= t for t on ceil(100 * range) points over the pooled [min, max].
    low, high = values.min(axis=1), values.max(axis=1)
    n_single = np.ceil((high - low) * THRESHOLDS_PER_UNIT).astype(np.int64)
    alive = _count_at_or_below(low[:, None], high[:, None], n_single[:, None], values)
    best = _best_rule(alive, is_r[None, :] == r_positive[:, None], n_single, True, ~r_positive, tables)

    # Two thresholds: the positive side is the one with the strictly smaller range (ties: the other one).
    r_peaky = r_positive != (pos_range >= neg_range)
    width = np.minimum(pos_range, neg_range)
    peak_min = np.where(r_peaky, r.min(axis=0), u.min(axis=0))
    peak_max = np.where(r_peaky, r.max(axis=0), u.max(axis=0))
    right_start = (peak_min + width) - THRESHOLD_BUFFER
    right_stop = peak_max + THRESHOLD_BUFFER
    n_right = np.ceil((right_stop - right_start) * THRESHOLDS_PER_UNIT).astype(np.int64)
    per_example = max(1, int(n_right.max())) * values.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // per_example)
    double = np.empty(values.shape[0], dtype=np.float64)
    for lo in range(0, values.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        nr = n_right[sl, None]
        j = np.arange(max(1, int(nr.max())), dtype=np.int64)[None, :]
        start, stop = right_start[sl, None], right_stop[sl, None]
        right = _grid_value(j, start, stop, nr, _grid_step(start, stop, nr))  # (c, R)
        centre = right - width[sl, None]
        x = values[sl, None, :]  # (c, 1, N)
        left_count = _count_at_or_below(
            (centre - THRESHOLD_BUFFER)[..., None], (centre + THRESHOLD_BUFFER)[..., None], LEFT_THRESHOLDS, x
        )
        alive_d = np.where(x <= right[..., None], left_count, 0)  # flagged at left index k < alive: l_k <= s <= r
        positive = is_r[None, None, :] == r_peaky[sl, None, None]
        rows = _best_rule(alive_d, positive, LEFT_THRESHOLDS, j < nr, ~r_peaky[sl, None], tables)
        double[sl] = rows.max(axis=-1)

    eps = np.maximum(best, double)
    eps = np.where(np.isneginf(eps), 0.0, eps)  # no rule survived: no evidence of a difference
    eps = np.where(peaky, EPSILON_CAP, eps)
    return np.asarray(np.clip(eps, 0.0, EPSILON_CAP), dtype=np.float64)


def challenge_points(epsilons: npt.ArrayLike, n_unlearned: int) -> FloatArray:
    """Each example's share of F: ``2 ** -floor(eps / 0.5)`` below ``ceil(ln(n_unlearned - 1))``, else 0.

    The ceiling is the largest epsilon N models can tell apart; with 2 unlearned models it is 0 and every
    example earns 0.
    """
    eps = np.asarray(epsilons, dtype=np.float64)
    if np.isnan(eps).any() or (eps < 0).any():
        raise ValueError("epsilons must be >= 0 and not NaN")
    if n_unlearned < MIN_MODELS:
        raise ValueError(f"n_unlearned must be >= {MIN_MODELS}; got {n_unlearned}")
    n_buckets = 2 * math.ceil(math.log(n_unlearned - 1)) if n_unlearned > 2 else 0
    bucket = np.floor(eps / BUCKET_WIDTH)
    with np.errstate(over="ignore"):
        points = np.where(bucket < n_buckets, np.exp2(-np.minimum(bucket, 1e3)), 0.0)
    return np.asarray(points, dtype=np.float64)


def challenge_per_example(
    unlearned: npt.ArrayLike, retrained: npt.ArrayLike, *, delta: float = CHALLENGE_DELTA
) -> FloatArray:
    """Per-example points (M,) whose mean is the forgetting quality F: what a bootstrap over examples resamples."""
    eps = challenge_epsilons(unlearned, retrained, delta=delta)
    return challenge_points(eps, np.asarray(unlearned).shape[0])


def challenge_forget_quality(
    unlearned: npt.ArrayLike, retrained: npt.ArrayLike, *, delta: float = CHALLENGE_DELTA
) -> float:
    """The challenge's forgetting quality F in [0, 1]: 1 when no example tells the two ensembles apart."""
    return float(np.mean(challenge_per_example(unlearned, retrained, delta=delta)))


def challenge_score(
    forget_quality: float,
    *,
    retain_acc_unlearned: npt.ArrayLike,
    retain_acc_retrained: npt.ArrayLike,
    test_acc_unlearned: npt.ArrayLike,
    test_acc_retrained: npt.ArrayLike,
) -> float:
    """The challenge's final score: ``F * (RA_u / RA_r) * (TA_u / TA_r)``, each accuracy a mean over models.

    The ratios are not clipped (an unlearned ensemble more accurate than the retrained one scores above
    F), as in the reference. Accuracies may be per-model arrays or scalars, fractions or percentages.
    """
    if not (math.isfinite(forget_quality) and 0.0 <= forget_quality <= 1.0):
        raise ValueError(f"forget_quality must lie in [0, 1]; got {forget_quality}")
    means = {}
    for name, acc in (
        ("retain_acc_unlearned", retain_acc_unlearned),
        ("retain_acc_retrained", retain_acc_retrained),
        ("test_acc_unlearned", test_acc_unlearned),
        ("test_acc_retrained", test_acc_retrained),
    ):
        a = np.asarray(acc, dtype=np.float64)
        if a.size == 0 or not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{name} must be finite, non-negative and non-empty")
        means[name] = float(a.mean())
    for name in ("retain_acc_retrained", "test_acc_retrained"):
        if means[name] == 0.0:
            raise ValueError(f"{name} averages 0: the utility ratio is undefined")
    return (
        forget_quality
        * (means["retain_acc_unlearned"] / means["retain_acc_retrained"])
        * (means["test_acc_unlearned"] / means["test_acc_retrained"])
    )


# ----------------------------------------------------------------------------------------------------
# KLoM


def klom_per_example(
    unlearned_margins: npt.ArrayLike,
    oracle_margins: npt.ArrayLike,
    *,
    bins: int = KLOM_BINS,
    eps: float = KLOM_EPS,
    clip: float = KLOM_CLIP,
    last_edge: Literal["closed", "reference"] = "closed",
) -> FloatArray:
    """Per-example KLoM, shape (M,): ``KL(P || Q~)`` of the binned margins (see the module docstring).

    ``unlearned_margins`` (N_u, M) and ``oracle_margins`` (N_o, M) come from :func:`margins_from_logits`;
    each side needs >= 2 models; +-inf margins are clipped with the rest, NaN raises ValueError. 0 when both
    sides fill the bins alike (e.g. all values equal). ``last_edge="closed"`` counts a margin equal to the
    pooled maximum in the last bin; ``"reference"`` drops it as the reference's ``np.digitize`` does, and
    returns NaN where that leaves no unlearned margin.
    """
    u = _statistics(unlearned_margins, "unlearned_margins", allow_inf=True)
    o = _statistics(oracle_margins, "oracle_margins", allow_inf=True)
    _paired(u, o, ("unlearned_margins", "oracle_margins"))
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be positive and finite; got {eps}")
    if not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"clip must be positive and finite; got {clip}")
    if last_edge not in ("closed", "reference"):
        raise ValueError(f"last_edge must be 'closed' or 'reference'; got {last_edge!r}")
    u = np.clip(u, -clip, clip)
    o = np.clip(o, -clip, clip)
    low = np.minimum(u.min(axis=0), o.min(axis=0))
    high = np.maximum(u.max(axis=0), o.max(axis=0))
    high = np.where(low >= high, low + 1.0, high)
    n_examples = u.shape[1]

    def frequencies(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        index = _count_at_or_below(low, high, bins + 1, x)  # np.digitize: bin k holds edge[k-1] <= x < edge[k]
        if last_edge == "closed":
            index = np.minimum(index, bins)
        counted = (index >= 1) & (index <= bins)
        flat = (np.arange(n_examples)[None, :] * bins + index - 1)[counted]
        counts = np.bincount(flat, minlength=n_examples * bins).reshape(n_examples, bins).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
        return counts / np.where(total > 0, total, 1.0), total[:, 0]

    p, p_total = frequencies(u)
    q, _ = frequencies(o)
    q_safe = np.where(p > 0, np.maximum(q, eps), q)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_norm = p / p.sum(axis=1, keepdims=True)
        q_norm = q_safe / q_safe.sum(axis=1, keepdims=True)
        kl = rel_entr(p_norm, q_norm).sum(axis=1)
    return np.asarray(np.where(p_total > 0, kl, np.nan), dtype=np.float64)


@dataclass(frozen=True)
class KlomSummary:
    """KLoM over a set of examples: the reference reports the per-example values; these summarise them."""

    mean: float
    median: float
    percentile: float  # the q-th percentile (q = ``q``): the tail of badly unlearned examples
    q: float
    n: int


def klom_summary(per_example: npt.ArrayLike, *, q: float = 95.0) -> KlomSummary:
    """Mean, median and q-th percentile of per-example KLoM values (all finite, >= 1 of them)."""
    v = np.asarray(per_example, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"per_example must be a non-empty 1-D array; got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(
            f"per_example has {int((~np.isfinite(v)).sum())} non-finite value(s) (last_edge='reference' gives NaN "
            "where every unlearned margin is the pooled maximum)"
        )
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must lie in [0, 100]; got {q}")
    return KlomSummary(float(v.mean()), float(np.median(v)), float(np.percentile(v, q)), q, int(v.size))


# ----------------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_interval(
    data: npt.ArrayLike | Sequence[npt.ArrayLike],
    statistic: Callable[..., float] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    resample_models: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` at ``level``, over examples (and optionally models).

    Two forms:

    - ``statistic=None``: ``data`` is a 1-D array of per-example values (e.g. :func:`challenge_per_example`,
      :func:`klom_per_example`) and the statistic is their mean. Enough for a score that is a mean of
      per-example values, since resampling examples then never recomputes them.
    - ``statistic`` given: ``data`` is one array or a sequence of arrays whose *last* axis is the examples
      (the same M in each), e.g. ``(unlearned, retrained)``; each resample calls
      ``statistic(*resampled_arrays)``. Every array is indexed with the same drawn examples (they are
      paired). With ``resample_models=True`` each array's *first* axis (its ensemble members) is also
      drawn with replacement, independently per array and once per resample, so a model's outputs stay
      together across examples: the interval then also carries the noise of a finite ensemble.

    Deterministic: draws depend only on ``seed``, ``n_boot``, M and the model counts, and the example draws
    are the same with or without ``resample_models``. Resamples whose statistic is not finite are left out;
    NaN bounds when fewer than two remain.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    example_seed, model_seed = np.random.SeedSequence(seed).spawn(2)
    examples_rng = np.random.default_rng(example_seed)
    draws = np.empty(n_boot, dtype=np.float64)
    if statistic is None:
        if resample_models:
            raise ValueError("resample_models needs a statistic over model arrays (per-example values have no models)")
        v = np.asarray(data, dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"per-example values must be a non-empty 1-D array; got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("per-example values must be finite")
        for b in range(n_boot):
            draws[b] = v[examples_rng.integers(0, v.size, size=v.size)].mean()
    else:
        if isinstance(data, np.ndarray):
            arrays = [data]
        elif isinstance(data, Sequence):
            arrays = [np.asarray(a) for a in data]
        else:
            raise ValueError("data must be an array or a sequence of arrays when a statistic is given")
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise ValueError("data must be one or more arrays with examples on the last axis")
        m = arrays[0].shape[-1]
        if m == 0 or any(a.shape[-1] != m for a in arrays):
            raise ValueError(
                f"every array needs the same, non-zero number of examples; got {[a.shape for a in arrays]}"
            )
        models_rng = np.random.default_rng(model_seed)
        for b in range(n_boot):
            idx = examples_rng.integers(0, m, size=m)
            sample = [a[..., idx] for a in arrays]
            if resample_models:
                sample = [s[models_rng.integers(0, s.shape[0], size=s.shape[0])] if s.ndim >= 2 else s for s in sample]
            draws[b] = float(statistic(*sample))
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)
