"""Oracle tests of unlearnkit_plugins.metrics.ensemble_scores.

Each score is checked against an independent, deliberately literal re-implementation of its reference's
arithmetic written here (one example at a time, each threshold or bin built the way the reference builds
it), on synthetic logits with a planted effect. References (read, not copied):

- google-deepmind/unlearning_evaluation ``metric.py`` / ``main.py`` @ ffae0fff4c3e9523b22618c47df6c26e4eebe0df
- RoyRin/data-unlearning-bench ``unlearning_bench/eval.py`` @ eb261f9c652aa1daae62c7f23f4e56286edf745c
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from unlearnkit_plugins.metrics import ensemble_scores as es

# ----------------------------------------------------------------------------------------------------
# Oracle: the NeurIPS 2023 challenge, step by step (its constants written out, not read from the module)

DELTA = 1e-5


def oracle_confidence(logits_one_model: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax, the true class's probability p and the rest's q, then log(p + 1e-45) - log(q + 1e-45)."""
    out = np.empty(len(labels))
    for i, (row, y) in enumerate(zip(logits_one_model, labels)):
        shifted = np.exp(np.asarray(row, dtype=np.float64) - np.max(row))
        probs = shifted / shifted.sum()
        p_true = probs[y]
        p_rest = sum(probs[j] for j in range(len(row)) if j != y)
        out[i] = math.log(p_true + 1e-45) - math.log(p_rest + 1e-45)
    return out


def _oracle_rule_epsilons(fpr, fnr, tpr, tnr, *, float32: bool) -> np.ndarray:
    """The epsilons of a row of rules, NaN for a discarded one; float32 when the reference's rates are."""
    one_minus_delta = np.float32(1 - DELTA) if float32 else 1 - DELTA
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of nanmax
        both_terms = np.stack(
            [np.log(one_minus_delta - fpr) - np.log(fnr), np.log(one_minus_delta - fnr) - np.log(fpr)]
        )
        general = np.clip(np.nanmax(both_terms, axis=0), 0, None)
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)  # separates perfectly
    one_zero = ~perfect & (fpr * fnr == 0)  # one zero rate: an artefact of too few models
    return np.where(perfect, np.inf, np.where(one_zero, np.nan, general))


def _rates(flag_pos: np.ndarray, flag_neg: np.ndarray, *, float32: bool):
    """Means over models (axis 0) of the flags: tpr, fnr, fpr, tnr."""
    dt = np.float32 if float32 else np.float64
    fp, fn = flag_pos.astype(dt), (~flag_pos).astype(dt)
    gp, gn = flag_neg.astype(dt), (~flag_neg).astype(dt)
    return fp.mean(0, dtype=dt), fn.mean(0, dtype=dt), gp.mean(0, dtype=dt), gn.mean(0, dtype=dt)


def oracle_example_epsilon(pos: np.ndarray, neg: np.ndarray, *, float32: bool = False) -> float:
    """One example's epsilon. ``pos`` is the sample with the larger median (the reference's labelling).

    ``float32=True`` mimics the reference's dtypes: float32 rates and a float32 one-threshold grid (the
    reference uses torch.linspace, here approximated by rounding numpy's grid to float32).
    """
    pos_range = pos.max() - pos.min()
    neg_range = neg.max() - neg.min()
    largest = pos_range if pos_range > neg_range else neg_range
    smallest = neg_range if pos_range > neg_range else pos_range
    with np.errstate(invalid="ignore", divide="ignore"):
        if smallest / largest < 0.01:
            return 50.0
    # Two thresholds: the peakier sample is positive, flagged when left <= s <= right. Every right
    # threshold brings its own 400 left ones; the pairs are listed, then all evaluated at once.
    p2, n2 = (neg, pos) if pos_range >= neg_range else (pos, neg)
    width = smallest
    lo = p2.min() + width - 2.0
    hi = p2.max() + 2.0
    n_left = int(np.ceil(2 * 2.0 * 100))
    right_grid = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * 100)))
    lefts = np.concatenate([np.linspace(right - width - 2.0, right - width + 2.0, num=n_left) for right in right_grid])
    rights = np.repeat(right_grid, n_left)
    flag_p = (lefts[None, :] <= p2[:, None]) & (p2[:, None] <= rights[None, :])
    flag_n = (lefts[None, :] <= n2[:, None]) & (n2[:, None] <= rights[None, :])
    tpr, fnr, fpr, tnr = _rates(flag_p, flag_n, float32=float32)
    double = _oracle_rule_epsilons(fpr, fnr, tpr, tnr, float32=float32)

    # One threshold: flagged when s >= t, t over the pooled range.
    both = np.concatenate([pos, neg])
    grid = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)))
    if float32:
        grid = grid.astype(np.float32).astype(np.float64)
    flag_p = pos[:, None] >= grid[None, :]
    flag_n = neg[:, None] >= grid[None, :]
    tpr, fnr, fpr, tnr = _rates(flag_p, flag_n, float32=float32)
    single = _oracle_rule_epsilons(fpr, fnr, tpr, tnr, float32=float32)

    every = np.concatenate([double, single])
    kept = every[~np.isnan(every)]
    if kept.size == 0:  # the reference's assert fails here; the production code reads it as "no difference"
        return 0.0
    return float(np.clip(kept.max(), 0, 50))


def oracle_epsilons(unlearned: np.ndarray, retrained: np.ndarray, *, float32: bool = False) -> np.ndarray:
    out = []
    for i in range(unlearned.shape[1]):
        u, r = unlearned[:, i], retrained[:, i]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        out.append(oracle_example_epsilon(pos, neg, float32=float32))
    return np.array(out)


def oracle_forget_quality(epsilons: np.ndarray, n_unlearned: int) -> float:
    """Buckets of width 0.5 worth 1, 1/2, 1/4, ... up to ceil(ln(N - 1)); the first bucket above eps scores."""
    ceiling = np.ceil(np.log(n_unlearned - 1)) if n_unlearned > 1 else -np.inf
    buckets = {}
    start, worth = 0.0, 1.0
    while start + 0.5 <= ceiling:
        buckets[start] = worth
        worth /= 2
        start += 0.5
    total = 0.0
    for e in epsilons:
        for s, w in buckets.items():
            if e < s + 0.5:
                total += w
                break
    return total / len(epsilons)


# ----------------------------------------------------------------------------------------------------
# Oracle: KLoM, step by step


def oracle_margin(row: np.ndarray, y: int) -> float:
    others = [row[j] for j in range(len(row)) if j != y]
    top = max(others)
    return float(row[y] - (top + math.log(sum(math.exp(v - top) for v in others))))


def oracle_klom(u: np.ndarray, o: np.ndarray, *, closed: bool) -> float:
    """clip, 20 bins over the pooled range, frequencies, floor Q where P > 0, scipy's KL(P || Q)."""
    p_arr, q_arr = np.clip(u, -100, 100), np.clip(o, -100, 100)
    start, stop = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= stop:
        stop = start + 1
    edges = np.linspace(start, stop, 21)
    if closed:  # np.histogram's last bin includes its right edge
        p_counts, q_counts = np.histogram(p_arr, bins=edges)[0], np.histogram(q_arr, bins=edges)[0]
    else:  # np.digitize: a value equal to the last edge lands past the last bin and is not counted
        p_idx, q_idx = np.digitize(p_arr, edges), np.digitize(q_arr, edges)
        p_counts = np.array([np.sum(p_idx == b) for b in range(1, 21)])
        q_counts = np.array([np.sum(q_idx == b) for b in range(1, 21)])
    p = p_counts / p_counts.sum() if p_counts.sum() > 0 else np.zeros(20)
    q = q_counts / q_counts.sum() if q_counts.sum() > 0 else np.zeros(20)
    q = np.where(p > 0, np.maximum(q, 1e-5), q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy.stats.entropy(pk=p, qk=q))


# ----------------------------------------------------------------------------------------------------
# Synthetic ensembles with a planted effect

FORGOTTEN, PARTLY, REMEMBERED = 0.0, 1.5, 8.0  # true-class logit boost of the unlearned models


def planted(n_u: int = 8, n_r: int = 8, per_group: int = 8, classes: int = 5, seed: int = 0):
    """Logits of unlearned and retrained models on the same examples; labels; each example's boost.

    Retrained and unlearned models share each example's base logits and differ by model noise; on the
    second and third groups of examples the unlearned models are more confident in the true class (they
    still remember it), on the third by far.
    """
    rng = np.random.default_rng(seed)
    boost = np.repeat([FORGOTTEN, PARTLY, REMEMBERED], per_group)
    m = boost.size
    labels = rng.integers(0, classes, m)
    base = rng.normal(0.0, 2.0, (m, classes))
    retrained = base + rng.normal(0.0, 1.0, (n_r, m, classes))
    unlearned = base + rng.normal(0.0, 1.0, (n_u, m, classes))
    unlearned[:, np.arange(m), labels] += boost
    return unlearned, retrained, labels, boost


@pytest.fixture(scope="module")
def planted_stats():
    u_logits, r_logits, labels, boost = planted()
    return es.logit_scaled_confidence(u_logits, labels), es.logit_scaled_confidence(r_logits, labels), boost


# ----------------------------------------------------------------------------------------------------
# Statistics from logits


def test_confidence_and_margin_match_the_literal_reference_computation():
    u_logits, r_logits, labels, _ = planted()
    logits = np.concatenate([u_logits, r_logits * 15.0])  # large logits: probabilities near 0 and 1
    conf = es.logit_scaled_confidence(logits, labels)
    margins = es.margins_from_logits(logits, labels)
    for k in range(logits.shape[0]):
        np.testing.assert_allclose(conf[k], oracle_confidence(logits[k], labels), rtol=0, atol=1e-9)
        expected = [oracle_margin(logits[k, i], labels[i]) for i in range(len(labels))]
        np.testing.assert_allclose(margins[k], expected, rtol=0, atol=1e-9)
    # per-model labels give the same answer as shared ones
    np.testing.assert_array_equal(es.margins_from_logits(logits, np.broadcast_to(labels, logits.shape[:2])), margins)


def test_infinite_logits_have_deliberate_limits():
    floor = math.log(1 + 1e-45) - math.log(1e-45)  # ~103.6: the reference's floor
    logits = np.array(
        [
            [[3.0, -np.inf, -np.inf], [-np.inf, 1.0, 2.0], [np.inf, 0.0, 5.0], [0.0, np.inf, 1.0], [0.0, 1.0, 2.0]],
        ]
    )
    labels = np.array([0, 0, 0, 0, 2])
    m = es.margins_from_logits(logits, labels)
    assert m[0, 0] == np.inf and m[0, 1] == -np.inf and m[0, 2] == np.inf and m[0, 3] == -np.inf
    c = es.logit_scaled_confidence(logits, labels)
    np.testing.assert_allclose(c[0, :4], [floor, -floor, floor, -floor], rtol=0, atol=1e-12)
    # the reference's softmax agrees where it is defined (finite maximum)
    np.testing.assert_allclose(c[0, [0, 1]], oracle_confidence(logits[0, [0, 1]], labels[[0, 1]]), atol=1e-9)
    with pytest.raises(ValueError, match="undetermined"):
        es.margins_from_logits(np.array([[[np.inf, np.inf, 0.0]]]), np.array([0]))
    with pytest.raises(ValueError, match="undetermined"):
        es.margins_from_logits(np.array([[[-np.inf, -np.inf]]]), np.array([0]))
    with pytest.raises(ValueError, match="NaN"):
        es.margins_from_logits(np.array([[[np.nan, 0.0]]]), np.array([0]))
    with pytest.raises(ValueError, match="labels must lie"):
        es.margins_from_logits(np.zeros((1, 2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="2 classes"):
        es.margins_from_logits(np.zeros((1, 2, 1)), np.array([0, 0]))
    with pytest.raises(ValueError, match="shape"):
        es.margins_from_logits(np.zeros((2, 3)), np.array([0, 0]))


# ----------------------------------------------------------------------------------------------------
# Challenge: against the oracle


def test_challenge_matches_the_oracle_on_planted_logits(planted_stats):
    u, r, boost = planted_stats
    eps = es.challenge_epsilons(u, r)
    expected = oracle_epsilons(u, r)
    np.testing.assert_allclose(eps, expected, rtol=0, atol=1e-9)
    f = es.challenge_forget_quality(u, r)
    assert f == pytest.approx(oracle_forget_quality(expected, u.shape[0]), abs=1e-12)
    # the plant is visible: remembered examples are told apart (perfectly: the cap), forgotten ones are not
    assert (eps[boost == REMEMBERED] == 50.0).all()
    points = es.challenge_per_example(u, r)
    assert points[boost == FORGOTTEN].mean() > points[boost == PARTLY].mean() > points[boost == REMEMBERED].mean()
    assert points[boost == REMEMBERED].mean() == 0.0
    assert points.mean() == pytest.approx(f, abs=1e-15)


def test_challenge_matches_the_oracle_with_unequal_ensembles():
    u_logits, r_logits, labels, _ = planted(n_u=7, n_r=10, per_group=4, seed=3)
    u, r = es.logit_scaled_confidence(u_logits, labels), es.logit_scaled_confidence(r_logits, labels)
    expected = oracle_epsilons(u, r)
    np.testing.assert_allclose(es.challenge_epsilons(u, r), expected, rtol=0, atol=1e-9)
    assert es.challenge_forget_quality(u, r) == pytest.approx(oracle_forget_quality(expected, 7), abs=1e-12)


def test_challenge_matches_the_oracle_when_statistics_sit_on_thresholds():
    # Integer statistics: pooled min/max are grid end points, and each right grid's ends are peak max -+ 2,
    # so many values equal a threshold exactly; median ties (retrained = unlearned median) occur too.
    rng = np.random.default_rng(7)
    u = rng.integers(-3, 4, size=(6, 24)).astype(float)
    r = rng.integers(-2, 3, size=(6, 24)).astype(float)
    r[:, :3] = u[:, :3][::-1]  # same values, other order: equal medians and ranges
    u[:, 3], r[:, 3] = [0, 0, 0, 1, 1, 1], [1, 1, 1, 2, 2, 3]  # one sample's max is the other's min
    eps = es.challenge_epsilons(u, r)
    np.testing.assert_allclose(eps, oracle_epsilons(u, r), rtol=0, atol=1e-9)
    assert (eps[:3] == 0).all()  # the same sample on both sides: nothing tells them apart


def test_challenge_ties_that_decide_epsilon_are_flagged_like_the_reference():
    # Each column's best rule has a statistic exactly on one of its thresholds; flagging that tie the other
    # way (s > t, l < s or s < r) changes epsilon: to log 2, log 3 and 0 respectively.
    left_grid_points = [
        0.0025062656641603454,
        -0.21804511278195493,
        -0.10776942355889729,
        -1.8145363408521302,
        -1.0225563909774436,
    ]
    cases = [
        # one threshold at the pooled maximum 1.5: flags 3 of 4 unlearned, 1 of 4 retrained
        ([1.5, 1.5, 1.5, 0.0], [1.5, 1.495, 0.0, 0.1], math.log((1 - DELTA - 0.25) / 0.25)),
        # two thresholds, a retrained statistic on the right threshold (the peaky side's max - 2)
        ([1.0, 0.0, 1.0, 1.0], [-1.0, 3.0, 3.0, 0.0], math.log((1 - DELTA - 0.5) / 0.25)),
        # two thresholds, statistics on a left threshold of a right threshold
        ([0.0, 1.0, 1.0, 1.0, 0.0], left_grid_points, math.log((1 - DELTA - 0.6) / 0.2)),
        # equal medians (0): the unlearned side is the positive one; the other way round gives log 2
        ([3.0, -1.0, 1.0, -1.0], [-2.0, 2.0, 0.0, 0.0], math.log((1 - DELTA - 0.25) / 0.25)),
    ]
    for u, r, expected in cases:
        u, r = np.array(u)[:, None], np.array(r)[:, None]
        got = es.challenge_epsilons(u, r)
        assert got[0] == pytest.approx(expected, abs=1e-12)
        np.testing.assert_allclose(got, oracle_epsilons(u, r), rtol=0, atol=1e-12)


def test_challenge_float32_reference_dtypes_change_nothing_that_scores(planted_stats):
    u, r, _ = planted_stats
    eps32 = oracle_epsilons(u, r, float32=True)
    eps = es.challenge_epsilons(u, r)
    np.testing.assert_allclose(eps, eps32, rtol=1e-6, atol=1e-6)
    assert es.challenge_forget_quality(u, r) == oracle_forget_quality(eps32, u.shape[0])


# ----------------------------------------------------------------------------------------------------
# Challenge: direction of the plant, buckets, cap, degenerate cases


def test_challenge_direction_identical_same_distribution_and_planted():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(16, 30)), rng.normal(size=(16, 30))
    # one and the same ensemble on both sides: every rule has FPR = TPR, epsilon 0, F at its maximum
    assert es.challenge_forget_quality(a, a.copy()) == 1.0
    # independent draws of one distribution: the best of ~10^5 rules still finds chance differences with 16
    # models, so F sits well below 1; shifting the unlearned sample lowers it step by step, to 0
    f = [es.challenge_forget_quality(a + shift, b) for shift in (0.0, 0.5, 1.0, 2.0, 10.0)]
    assert 0.12 < f[0] < 0.3
    assert f[0] > f[1] > f[2] > f[3] > f[4] == 0.0
    assert f[3] < 0.3 * f[0]


def test_challenge_points_use_half_width_buckets_worth_powers_of_two():
    eps = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 1.49, 1.5, 1.99, 2.0, 7.0, 50.0])
    # N_u = 8: ceil(ln 7) = 2, so 4 buckets
    np.testing.assert_array_equal(es.challenge_points(eps, 8), [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0, 0, 0])
    # N_u = 3: ceil(ln 2) = 1, 2 buckets; N_u = 2: none (F is 0 whatever the models)
    np.testing.assert_array_equal(es.challenge_points(eps[:5], 3), [1, 1, 0.5, 0.5, 0])
    np.testing.assert_array_equal(es.challenge_points(eps[:5], 2), [0, 0, 0, 0, 0])
    assert oracle_forget_quality(eps, 8) == pytest.approx(es.challenge_points(eps, 8).mean(), abs=1e-15)
    # N_u = 200: ceil(ln 199) = 6, 12 buckets
    assert es.challenge_points(np.array([5.9, 6.0]), 200).tolist() == [2.0**-11, 0.0]


def test_challenge_caps_epsilon_at_50():
    u = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 5.0], [2.0, 0.3, 5.0], [3.0, 0.0, 5.001]])
    r = np.array([[10.0, 0.0, 1.0], [11.0, 0.0, 2.0], [12.0, 0.0, 3.0], [13.0, 0.0, 4.0]])
    eps = es.challenge_epsilons(u, r)
    # 0: perfect separation (FPR = FNR = 0: infinite before the cap); 1: one side constant, the other not
    # (peaky); 2: ranges 0.001 vs 3 (ratio < 0.01, peaky)
    assert eps.tolist() == [50.0, 50.0, 50.0]
    np.testing.assert_array_equal(eps, oracle_epsilons(u, r))
    # overlapping samples, ranges 0.02 vs 3 (ratio 0.0067: peaky) and 0.04 vs 3 (0.013: not)
    r = np.array([[0.0], [3.0], [1.005], [2.0]])
    peaky, not_peaky = np.array([[1.0], [1.02], [1.01], [1.0]]), np.array([[1.0], [1.04], [1.01], [1.0]])
    assert es.challenge_epsilons(peaky, r)[0] == 50.0 == oracle_epsilons(peaky, r)[0]
    assert es.challenge_epsilons(not_peaky, r)[0] == pytest.approx(math.log((1 - DELTA - 0.25) / 0.25), abs=1e-12)
    np.testing.assert_allclose(es.challenge_epsilons(not_peaky, r), oracle_epsilons(not_peaky, r), rtol=0, atol=1e-12)


def test_challenge_degenerate_inputs():
    same = np.full((4, 3), 2.5)
    assert es.challenge_epsilons(same, same.copy()).tolist() == [0.0, 0.0, 0.0]  # no rule survives
    assert es.challenge_forget_quality(same, same.copy()) == 1.0
    far = np.full((4, 1), 9.0)
    assert es.challenge_epsilons(same[:, :1], far).tolist() == [50.0]  # two constants 6.5 apart
    rng = np.random.default_rng(0)
    two = rng.normal(size=(2, 5))
    assert es.challenge_forget_quality(two, two + 1.0) == 0.0  # two unlearned models: no bucket at all
    with pytest.raises(ValueError, match="at least 2"):
        es.challenge_epsilons(two[:1], two)
    with pytest.raises(ValueError, match="same examples"):
        es.challenge_epsilons(two, two[:, :4])
    with pytest.raises(ValueError, match="non-finite"):
        es.challenge_epsilons(np.array([[0.0, np.inf], [1.0, 2.0]]), two[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        es.challenge_epsilons(two[:, :2], np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="models, examples"):
        es.challenge_epsilons(np.zeros(3), np.zeros(3))


def test_challenge_final_score_scales_by_both_utility_ratios():
    score = es.challenge_score(
        0.5,
        retain_acc_unlearned=[0.9, 0.7],
        retain_acc_retrained=[1.0, 0.6],
        test_acc_unlearned=0.6,
        test_acc_retrained=np.array([0.8, 0.8]),
    )
    assert score == pytest.approx(0.5 * (0.8 / 0.8) * (0.6 / 0.8), abs=1e-15)
    with pytest.raises(ValueError, match="averages 0"):
        es.challenge_score(
            0.5, retain_acc_unlearned=1, retain_acc_retrained=0, test_acc_unlearned=1, test_acc_retrained=1
        )
    with pytest.raises(ValueError, match="forget_quality"):
        es.challenge_score(
            1.5, retain_acc_unlearned=1, retain_acc_retrained=1, test_acc_unlearned=1, test_acc_retrained=1
        )


# ----------------------------------------------------------------------------------------------------
# KLoM


@pytest.fixture(scope="module")
def planted_margins():
    u_logits, r_logits, labels, boost = planted(n_u=150, n_r=120, per_group=10, seed=1)
    return es.margins_from_logits(u_logits, labels), es.margins_from_logits(r_logits, labels), boost


def test_klom_matches_the_oracle_on_planted_margins(planted_margins):
    u, o, boost = planted_margins
    for mode, closed in (("reference", False), ("closed", True)):
        got = es.klom_per_example(u, o, last_edge=mode)
        expected = [oracle_klom(u[:, i], o[:, i], closed=closed) for i in range(u.shape[1])]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    klom = es.klom_per_example(u, o)
    assert klom[boost == REMEMBERED].min() > 8.0  # disjoint histograms: log(1 / 1e-5) less P's entropy
    assert klom[boost == FORGOTTEN].max() < 1.0 < klom[boost == PARTLY].min()


def test_klom_matches_the_oracle_on_edges_ties_infinities_and_unequal_ensembles():
    rng = np.random.default_rng(2)
    u = rng.integers(0, 21, size=(7, 30)).astype(float)  # integers: pooled 0..20 puts edges on integers
    o = rng.integers(0, 21, size=(9, 30)).astype(float)
    u[:, 0], o[:, 0] = 20.0, rng.integers(0, 20, 9)  # every unlearned margin at the pooled maximum
    u[:, 1], o[:, 1] = 4.0, 4.0  # all equal
    u[0, 2], o[0, 2] = np.inf, -np.inf  # clipped to +-100
    for mode, closed in (("reference", False), ("closed", True)):
        got = es.klom_per_example(u, o, last_edge=mode)
        expected = [oracle_klom(u[:, i], o[:, i], closed=closed) for i in range(u.shape[1])]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    ref = es.klom_per_example(u, o, last_edge="reference")
    assert np.isnan(ref[0]) and np.isfinite(ref[1:]).all()  # the reference drops every unlearned value
    assert np.isfinite(es.klom_per_example(u, o)).all()
    assert es.klom_per_example(u, o)[1] == 0.0
    clipped = u.copy()
    clipped[0, 2] = 100.0
    o_clipped = o.copy()
    o_clipped[0, 2] = -100.0
    assert es.klom_per_example(u, o)[2] == es.klom_per_example(clipped, o_clipped)[2]


def test_klom_is_kl_of_unlearned_from_oracle_with_eps_floor():
    log2 = math.log(2)
    # unlearned all in the first bin, oracles split between first and last: KL(P || Q) = log 2
    u, o = np.array([[0.0], [0.0], [0.0], [0.0]]), np.array([[0.0], [0.0], [10.0], [10.0]])
    assert es.klom_per_example(u, o)[0] == pytest.approx(log2, abs=1e-12)
    # the other way round the unlearned mass in the last bin meets Q = 0 there, floored at 1e-5 and renormalised
    e = 1e-5
    expected = 0.5 * math.log(0.5 * (1 + e)) + 0.5 * math.log(0.5 * (1 + e) / e)
    assert es.klom_per_example(o, u)[0] == pytest.approx(expected, abs=1e-12)
    # the reference's digitize drops the oracles at the pooled maximum: Q is all in the first bin
    assert es.klom_per_example(u, o, last_edge="reference")[0] == 0.0


def test_klom_direction_identical_same_distribution_and_planted():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(200, 40)), rng.normal(size=(200, 40))
    assert (es.klom_per_example(a, a.copy()) == 0.0).all()
    # independent draws of one distribution: small with 200 models (empty oracle bins cost -log 1e-5 each)
    k = [es.klom_summary(es.klom_per_example(a + shift, b)).mean for shift in (0.0, 0.5, 1.0, 2.0, 10.0)]
    assert k[0] < 0.25
    assert k[0] < k[1] < k[2] < k[3] < k[4]
    assert k[4] > 8.0  # disjoint histograms: log(1 / 1e-5) = 11.5 less the entropy of P, everywhere


def test_klom_degenerate_inputs_and_summary():
    with pytest.raises(ValueError, match="at least 2"):
        es.klom_per_example(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        es.klom_per_example(np.array([[0.0, np.nan], [0.0, 1.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same examples"):
        es.klom_per_example(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="last_edge"):
        es.klom_per_example(np.zeros((2, 3)), np.zeros((2, 3)), last_edge="open")  # type: ignore[arg-type]
    s = es.klom_summary(np.array([0.0, 1.0, 2.0, 3.0, 10.0]))
    assert (s.mean, s.median, s.n, s.q) == (3.2, 2.0, 5, 95.0)
    assert s.percentile == pytest.approx(np.percentile([0, 1, 2, 3, 10], 95))
    with pytest.raises(ValueError, match="non-finite"):
        es.klom_summary(np.array([0.0, np.nan]))


# ----------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_is_deterministic_and_covers_the_point_estimate(planted_stats):
    u, r, _ = planted_stats
    points = es.challenge_per_example(u, r)
    low, high = es.bootstrap_interval(points, n_boot=1000, seed=3)
    assert (low, high) == es.bootstrap_interval(points, n_boot=1000, seed=3)
    assert (low, high) != es.bootstrap_interval(points, n_boot=1000, seed=4)
    assert low <= points.mean() <= high and low < high
    # a statistic over the model arrays, examples only, sees the very same resamples
    few = es.bootstrap_interval(points, n_boot=20, seed=3)
    assert es.bootstrap_interval((u, r), es.challenge_forget_quality, n_boot=20, seed=3) == few
    assert es.bootstrap_interval(np.full(7, 0.25), n_boot=50, seed=0) == (0.25, 0.25)


def test_bootstrap_interval_has_the_width_of_its_level():
    values = np.random.default_rng(4).normal(size=2000)
    se = values.std() / math.sqrt(values.size)
    for level, z in ((0.95, 1.959964), (0.8, 1.281552)):
        low, high = es.bootstrap_interval(values, n_boot=2000, seed=0, level=level)
        assert high - low == pytest.approx(2 * z * se, rel=0.1)
        assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.2 * se)


def test_bootstrap_can_resample_ensemble_members(planted_margins):
    u, o, _ = planted_margins

    def mean_klom(a: np.ndarray, b: np.ndarray) -> float:
        return float(es.klom_per_example(a, b).mean())

    point = mean_klom(u, o)
    examples = es.bootstrap_interval((u, o), mean_klom, n_boot=60, seed=1)
    models = es.bootstrap_interval((u, o), mean_klom, n_boot=60, seed=1, resample_models=True)
    assert models == es.bootstrap_interval((u, o), mean_klom, n_boot=60, seed=1, resample_models=True)
    assert models != examples
    # the example draws do not depend on whether members are drawn too: with identical members only they count
    alike = np.tile(np.arange(30.0), (4, 1))
    both = es.bootstrap_interval((alike,), np.mean, n_boot=50, seed=2, resample_models=True)
    assert both == es.bootstrap_interval((alike,), np.mean, n_boot=50, seed=2)
    assert examples[0] <= point <= examples[1]
    assert models[0] < models[1]


def test_bootstrap_validates_its_inputs():
    with pytest.raises(ValueError, match="level"):
        es.bootstrap_interval(np.ones(3), level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        es.bootstrap_interval(np.ones(3), n_boot=0)
    with pytest.raises(ValueError, match="finite"):
        es.bootstrap_interval(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="1-D"):
        es.bootstrap_interval(np.ones((2, 3)))
    with pytest.raises(ValueError, match="resample_models"):
        es.bootstrap_interval(np.ones(3), resample_models=True)
    with pytest.raises(ValueError, match="same, non-zero number"):
        es.bootstrap_interval((np.ones((2, 3)), np.ones((2, 4))), lambda a, b: 0.0)


def test_the_public_logit_margin_by_hand():
    """uk.logit_margin, which LiRA's scaled logit and the ensemble margins share: z_y - log sum_{j != y} e^z_j."""
    import math

    import numpy as np

    import unlearnkit as uk

    got = uk.logit_margin(np.array([[2.0, 1.0, 0.0], [0.0, 1000.0, -1000.0]]), np.array([0, 1]))
    assert got[0] == pytest.approx(2.0 - math.log(math.e + 1.0), abs=1e-12)
    assert got[1] == pytest.approx(1000.0, abs=1e-9)  # 1000 - logsumexp(0, -1000): no overflow
    assert uk.logit_margin(np.array([[0.0, -np.inf]]), np.array([0]))[0] == np.inf  # the other class has p = 0
    with pytest.raises(ValueError, match="labels must lie in \\[0, 2\\]"):
        uk.logit_margin(np.zeros((1, 3)), np.array([3]))
