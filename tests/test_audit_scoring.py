"""U-LiRA's pure scoring core: scaled logits, Gaussian fits, likelihood ratios, ROC metrics, shadow splits, the
signed metrics and bootstrap intervals, the retained audit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from unlearnkit.audit import (
    fit_gaussians,
    forget_subset,
    likelihood_ratio_scores,
    make_design,
    roc_auc,
    scaled_logit,
    score_row,
    shadow_halves,
    summarise,
    tpr_at_fpr,
    ulira_masks,
)
from unlearnkit.audit.design import retained_metrics
from unlearnkit.audit.scoring import Clustered, cluster_bootstrap, mean_difference, share_below_median


def _null_auc_sd(p: int, q: int) -> float:
    """Standard deviation of the AUC (Mann-Whitney U / PQ) when members and non-members are exchangeable."""
    return math.sqrt((p + q + 1) / (12 * p * q))


# --- scaled logits ---------------------------------------------------------------------------------------


def test_scaled_logit_matches_a_hand_computed_three_class_example():
    logits = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [-1.0, 3.0, 0.5]])
    labels = np.array([0, 2, 1])
    # phi = log p_y - log sum_{j != y} p_j, through probabilities in exact-enough double arithmetic.
    expected = []
    for z, y in zip(logits.tolist(), labels.tolist()):
        e = [math.exp(v) for v in z]
        p = [v / math.fsum(e) for v in e]
        expected.append(math.log(p[y]) - math.log(math.fsum(p[j] for j in range(3) if j != y)))
    got = scaled_logit(logits, labels)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[0] == pytest.approx(2.0 - math.log(math.e + 1.0), abs=1e-15)  # z_y - log(e^1 + e^0)


def test_scaled_logit_is_stable_for_huge_logits_and_vectorised_over_models():
    logits = np.array([[1000.0, -1000.0, 0.0]] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = scaled_logit(logits, np.array([0, 1, 2]))
    np.testing.assert_allclose(got, [1000.0, -2000.0, -1000.0], rtol=1e-15)  # e^-1000 vanishes exactly
    stacked = np.stack([logits, -logits])  # (K=2, N=3, C=3), one label per example
    out = scaled_logit(stacked, np.array([0, 1, 2]))
    assert out.shape == (2, 3) and np.isfinite(out).all()
    np.testing.assert_allclose(out[1], [-2000.0, 1000.0, -1000.0])
    with pytest.raises(ValueError, match="labels"):
        scaled_logit(logits, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="C >= 2"):
        scaled_logit(np.zeros((3, 1)), np.zeros(3, dtype=int))


# --- Gaussian fits and likelihood ratios ----------------------------------------------------------------


def test_fit_gaussians_per_example_and_pooled_variance():
    scores = np.array([[1.0, 10.0], [2.0, 14.0], [3.0, np.nan]])  # NaN where the mask says "not observed"
    mask = np.array([[True, True], [True, True], [True, False]])
    fits = fit_gaussians(scores, mask, scores, mask)
    np.testing.assert_allclose(fits.mean_in, [2.0, 12.0])
    np.testing.assert_allclose(fits.std_in, [1.0, math.sqrt(8.0)])  # sample std, ddof=1
    np.testing.assert_array_equal(fits.n_in, [3, 2])
    pooled = fit_gaussians(scores, mask, scores, mask, fixed_variance=True)
    # (sum of squared deviations 2 + 8) / (degrees of freedom 2 + 1)
    np.testing.assert_allclose(pooled.std_in, [math.sqrt(10 / 3)] * 2)
    with pytest.raises(ValueError, match="not finite"):
        fit_gaussians(scores, None, scores, mask)


def test_online_and_offline_scores_follow_the_stated_formulas():
    rng = np.random.default_rng(0)
    xin, xout = rng.normal(3, 1.5, (12, 5)), rng.normal(0, 0.7, (12, 5))
    fits = fit_gaussians(xin, None, xout, None)
    target = rng.normal(1, 2, 5)
    online = likelihood_ratio_scores(target, fits, "online")
    ref = norm.logpdf(target, fits.mean_in, fits.std_in) - norm.logpdf(target, fits.mean_out, fits.std_out)
    np.testing.assert_allclose(online, ref, rtol=1e-12)
    offline = likelihood_ratio_scores(target, fits, "offline")
    np.testing.assert_allclose(offline, -norm.logsf(target, fits.mean_out, fits.std_out), rtol=1e-12)
    far = likelihood_ratio_scores(fits.mean_out + 40 * fits.std_out, fits, "offline")
    assert np.isfinite(far).all() and (far > 700).all()  # no saturation where Phi(z) == 1.0 in float
    both = likelihood_ratio_scores(np.stack([target, target]), fits)  # (M, N) targets broadcast
    np.testing.assert_allclose(both, [online, online])


def _lira_world(delta: float, n: int = 2000, k: int = 16, seed: int = 0):
    """Per-example difficulty and spread; being IN shifts the scaled logit by delta."""
    rng = np.random.default_rng(seed)
    mu, sd = rng.normal(0, 2, n), rng.uniform(0.5, 1.5, n)
    halves = shadow_halves(n, k, seed)
    shadows = mu + delta * halves + sd * rng.standard_normal((k, n))
    member = rng.permutation(n) < n // 2
    target = mu + delta * member + sd * rng.standard_normal(n)
    return shadows, halves, target, member


@pytest.mark.parametrize("fixed_variance", [False, True])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_identical_in_and_out_distributions_give_chance_auc(fixed_variance, mode):
    shadows, halves, target, member = _lira_world(delta=0.0)
    fits = fit_gaussians(shadows, halves, shadows, ~halves, fixed_variance=fixed_variance)
    summary = summarise(likelihood_ratio_scores(target, fits, mode), member)
    # 1000 members vs 1000 non-members: the null AUC has sd 0.0091; 4 sd is a 6e-5 false alarm.
    assert abs(summary["ulira_auc"] - 0.5) < 4 * _null_auc_sd(1000, 1000)
    assert summary["n_scored"] == 2000 and summary["n_unscored"] == 0


@pytest.mark.parametrize("fixed_variance", [False, True])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_well_separated_distributions_are_detected(fixed_variance, mode):
    shadows, halves, target, member = _lira_world(delta=12.0)
    fits = fit_gaussians(shadows, halves, shadows, ~halves, fixed_variance=fixed_variance)
    summary = summarise(likelihood_ratio_scores(target, fits, mode), member)
    assert summary["ulira_auc"] > 0.999
    assert summary["ulira_tpr_at_1fpr"] > 0.99
    assert summary["ulira_tpr_at_01fpr"] > 0.95  # 1000 non-members resolve 0.1 % FPR exactly
    assert summary["n_members"] == 1000 and summary["n_nonmembers"] == 1000


def test_zero_variance_is_floored_and_warning_free():
    n, k = 50, 8
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=n), rng.normal(size=n) + 1.0
    xin, xout = np.tile(a, (k, 1)), np.tile(b, (k, 1))  # every shadow identical: zero spread
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        for fixed in (False, True):
            fits = fit_gaussians(xin, None, xout, None, fixed_variance=fixed)
            assert (fits.std_in == fits.min_std).all() and (fits.std_out == fits.min_std).all()
            for mode in ("online", "offline"):
                for target in (a, b, rng.normal(size=n)):
                    assert np.isfinite(likelihood_ratio_scores(target, fits, mode)).all()
            assert roc_auc(likelihood_ratio_scores(np.r_[a[:25], b[25:]], fits), np.arange(n) < 25) == 1.0


def test_examples_without_in_observations_are_unscored_and_reported():
    shadows, halves, target, member = _lira_world(delta=3.0, n=400)
    in_mask = halves.copy()
    in_mask[:, :30] = False  # 30 examples never observed IN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = fit_gaussians(shadows, in_mask, shadows, ~halves)
        online = likelihood_ratio_scores(target, fits, "online")
        summary = summarise(online, member)
    assert np.isnan(fits.mean_in[:30]).all() and (fits.n_in[:30] == 0).all()
    assert np.isnan(online[:30]).all() and np.isfinite(online[30:]).all()
    assert summary["n_unscored"] == 30 and summary["n_scored"] == 370
    assert summary["ulira_auc"] == pytest.approx(roc_auc_score(member[30:], online[30:]))
    assert np.isfinite(likelihood_ratio_scores(target, fits, "offline")).all()  # offline needs OUT only


def test_a_side_never_observed_twice_has_no_variance_and_is_unscored():
    scores = np.arange(12.0).reshape(3, 4)
    once = np.eye(3, 4, dtype=bool)  # each of examples 0-2 seen IN once, example 3 never
    fits = fit_gaussians(scores, once, scores, ~once)
    assert np.isnan(fits.std_in).all()  # no spread to estimate, none invented
    assert np.isnan(likelihood_ratio_scores(scores[0], fits)).all()


# --- metrics ---------------------------------------------------------------------------------------------

# Members 0.9, 0.6, 0.4; non-members 0.7, 0.4, 0.2, 0.1. Descending: P N P {P N} N N, so the ROC points are
# (0,0) (0,1/3) (1/4,1/3) (1/4,2/3) (2/4,1) (3/4,1) (1,1) — the tie at 0.4 is a diagonal segment.
HAND_SCORES = np.array([0.9, 0.6, 0.4, 0.7, 0.4, 0.2, 0.1])
HAND_MEMBER = np.array([True, True, True, False, False, False, False])


def test_roc_auc_on_a_hand_made_roc():
    # pairs won: 0.9 -> 4, 0.6 -> 3, 0.4 -> 2 and a tie (1/2): 9.5 of 12
    assert roc_auc(HAND_SCORES, HAND_MEMBER) == pytest.approx(9.5 / 12)
    assert roc_auc(HAND_SCORES, HAND_MEMBER) == pytest.approx(roc_auc_score(HAND_MEMBER, HAND_SCORES))
    assert math.isnan(roc_auc(HAND_SCORES[:3], HAND_MEMBER[:3]))  # no non-members


def test_tpr_at_fpr_on_a_hand_made_roc():
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.0) == pytest.approx(1 / 3)  # zero false positives
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.25) == pytest.approx(2 / 3)  # highest TPR at that FPR
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.375) == pytest.approx(5 / 6)  # halfway along the tie
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.5) == pytest.approx(1.0)
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 1.0) == pytest.approx(1.0)
    assert math.isnan(tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.2))  # below 1/4: four negatives cannot resolve it
    with_nan = np.r_[HAND_SCORES, np.nan]
    assert tpr_at_fpr(with_nan, np.r_[HAND_MEMBER, True], 0.375) == pytest.approx(5 / 6)  # NaN ignored


def test_summarise_reports_unresolvable_low_fpr_as_nan():
    rng = np.random.default_rng(3)
    scores, member = rng.normal(size=300), rng.permutation(300) < 150  # 150 non-members: 1 % yes, 0.1 % no
    s = summarise(scores, member)
    assert set(s) >= {"ulira_auc", "ulira_tpr_at_1fpr", "ulira_tpr_at_01fpr", "n_scored", "n_unscored"}
    assert math.isfinite(s["ulira_tpr_at_1fpr"]) and math.isnan(s["ulira_tpr_at_01fpr"])


# --- shadow splits ---------------------------------------------------------------------------------------


def test_shadow_halves_balance_membership_per_example_and_per_split():
    n = 1000
    even = shadow_halves(n, 16, seed=5)
    assert even.shape == (16, n) and even.dtype == bool
    assert (even.sum(axis=0) == 8).all()  # every example IN in exactly K/2 shadows
    assert (np.abs(even.sum(axis=1) - n / 2) < 80).all()  # about half per split (sd ~ 16)
    odd = shadow_halves(n, 7, seed=5)
    assert set(np.unique(odd.sum(axis=0))) == {3, 4} and (odd.sum(axis=0) == 4).sum() == n // 2
    assert abs(odd.sum() / 7 - n / 2) < 1 and (np.abs(odd.sum(axis=1) - n / 2) < 80).all()
    np.testing.assert_array_equal(shadow_halves(n, 16, seed=5), even)
    assert (shadow_halves(n, 16, seed=6) != even).any()


Y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
IN_HALF = np.array([0, 2, 3, 4, 6, 8, 9, 10, 12, 13, 15, 17, 19])


def test_forget_subset_instance_takes_the_first_fraction_of_each_class_in_the_half():
    # IN per class: 0 -> [0 2 4 6 8] takes 2; 1 -> [3 9] takes max(1, 0) = 1; 2 -> [10 12 13 15 17 19] takes 2
    got = forget_subset(IN_HALF, Y, "instance", 0.4)
    assert got.tolist() == [0, 2, 3, 10, 12]
    mask = np.isin(np.arange(Y.size), IN_HALF)  # a boolean row of shadow_halves works too
    assert forget_subset(mask, Y, "instance:0.4").tolist() == got.tolist()
    assert forget_subset(IN_HALF[::-1], Y, "0.4", seed=9).tolist() == got.tolist()  # order-free, seed-free


def test_forget_subset_random_and_class_rules():
    r = forget_subset(IN_HALF, Y, "random", 0.25, seed=1)
    assert len(r) == round(13 * 0.25) and set(r) <= set(IN_HALF) and r.tolist() == sorted(r.tolist())
    assert forget_subset(IN_HALF, Y, "random:0.25", seed=1).tolist() == r.tolist()
    big = np.arange(1000)
    labels = np.arange(1000) % 10
    a = forget_subset(big, labels, "random", 0.1, seed=[3, 0])
    assert a.tolist() == forget_subset(big, labels, "random", 0.1, seed=[3, 0]).tolist()
    assert a.tolist() != forget_subset(big, labels, "random", 0.1, seed=[3, 1]).tolist()
    assert forget_subset(IN_HALF, Y, "class:2").tolist() == [10, 12, 13, 15, 17, 19]
    assert forget_subset(IN_HALF, Y, "class:1").tolist() == [3, 9]
    for bad, kwargs in [
        ("random", {"fraction": 0.1}),  # no seed
        ("instance", {}),  # no fraction
        ("instance:0.2", {"fraction": 0.3}),  # two fractions that disagree
        ("class:cat", {}),  # names are resolved by the caller
        ("stratified:0.1", {}),
    ]:
        with pytest.raises(ValueError):
            forget_subset(IN_HALF, Y, bad, **kwargs)


def test_ulira_flow_from_splits_to_summary():
    """Shadows forget part of their half; a held-out shadow is the target; residual memorisation is found."""
    n, k = 600, 33
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, n)
    halves = shadow_halves(n, k, seed=7)
    forgets = [forget_subset(halves[j], labels, "random", 0.3, seed=[7, j]) for j in range(k)]
    in_mask, out_mask = ulira_masks(halves, forgets)
    assert not (in_mask & out_mask).any() and (in_mask <= halves).all()
    mu = rng.normal(0, 2, n)
    for residual, lo, hi in [(0.0, 0.35, 0.65), (4.0, 0.95, 1.0)]:
        scores = mu + 6.0 * (halves & ~in_mask) + residual * in_mask + rng.standard_normal((k, n))
        fits = fit_gaussians(scores[1:], in_mask[1:], scores[1:], out_mask[1:], fixed_variance=True)
        audited = in_mask[0] | out_mask[0]  # the target's forgotten and never-seen examples
        lr = likelihood_ratio_scores(scores[0], fits)[audited]
        s = summarise(lr, in_mask[0][audited])
        assert lo < s["ulira_auc"] <= hi
        assert s["n_unscored"] == int((fits.n_in[audited] == 0).sum())
    with pytest.raises(ValueError, match="not inside"):
        ulira_masks(halves[:1], [np.flatnonzero(~halves[0])[:1]])


# --- the sign, the over-unlearned share, bootstrap intervals ------------------------------------------------


def test_direction_and_over_unlearned_share_by_hand():
    values = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 6.0])
    member = np.array([True, True, True, False, False, False])
    assert mean_difference(values, member) == pytest.approx(1.5 - 13 / 3)  # NaN left out: (1+2)/2 - (3+4+6)/3
    assert share_below_median(values, member) == 1.0  # both members below the non-members' median 4
    tied = np.array([4.0, 5.0, 3.0, 4.0, 6.0])
    member = np.array([True, True, False, False, False])
    assert mean_difference(tied, member) == pytest.approx(4.5 - 13 / 3)
    assert share_below_median(tied, member) == 0.25  # 4 ties the median (one half), 5 is above: (0 + 0.5) / 2
    assert share_below_median(np.ones(4), np.array([True, False, True, False])) == 0.5  # all tied: no side
    assert math.isnan(mean_difference(tied, np.zeros(5, bool))) and math.isnan(
        share_below_median(tied, np.ones(5, bool))
    )


def test_weighted_statistics_equal_those_of_the_resample_they_stand_for():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=120), 1)  # rounded: ties inside and across the sides
    member = rng.random(120) < 0.4
    clusters = rng.integers(0, 30, 120) * 7 + 2  # any integer labels
    data = Clustered.of(values, member, clusters)
    assert data.n_clusters == len(np.unique(clusters))
    counts = rng.integers(0, 4, (6, data.n_clusters))
    labels = np.unique(clusters)
    for row, auc, diff in zip(counts, data.auc(counts), data.mean_difference(counts)):
        times = row[np.searchsorted(labels, clusters)]  # each observation as often as its cluster was drawn
        assert auc == pytest.approx(roc_auc(np.repeat(values, times), np.repeat(member, times)), abs=1e-12)
        assert diff == pytest.approx(mean_difference(np.repeat(values, times), np.repeat(member, times)), abs=1e-12)
    ones = np.ones((1, data.n_clusters))
    assert data.auc(ones)[0] == pytest.approx(roc_auc(values, member), abs=1e-12)
    assert math.isnan(data.auc(np.zeros((1, data.n_clusters)))[0])  # nothing drawn: no AUC


def test_cluster_bootstrap_is_deterministic_and_correlated_copies_add_no_precision():
    rng = np.random.default_rng(4)
    values = rng.normal(size=200) + 0.5 * (member := rng.random(200) < 0.5)
    data = Clustered.of(values, member, np.arange(200))
    first = cluster_bootstrap(data, Clustered.auc, resamples=300, seed=11)
    assert first == cluster_bootstrap(data, Clustered.auc, resamples=300, seed=11)
    assert first != cluster_bootstrap(data, Clustered.auc, resamples=300, seed=12)
    assert first[0] < roc_auc(values, member) < first[1] and 0.05 < first[1] - first[0] < 0.25
    # Eight exact copies of every observation, one cluster each: the same draws and the same interval. A
    # bootstrap over observations would shrink it about sqrt(8) times, false precision from correlated pairs.
    copies = Clustered.of(np.repeat(values, 8), np.repeat(member, 8), np.repeat(np.arange(200), 8))
    assert cluster_bootstrap(copies, Clustered.auc, resamples=300, seed=11) == pytest.approx(first, abs=1e-12)
    naive = Clustered.of(np.repeat(values, 8), np.repeat(member, 8), np.arange(1600))
    low, high = cluster_bootstrap(naive, Clustered.auc, resamples=300, seed=11)
    assert high - low < 0.5 * (first[1] - first[0])
    assert all(map(math.isnan, cluster_bootstrap(data, Clustered.auc, resamples=0, seed=11)))


def _planted(k: int, delta: float, seed: int, n: int = 200):
    """A row's pool logits: per-example difficulty, unit noise over shadows, ``delta`` added where IN."""
    rng = np.random.default_rng(seed)
    design = make_design(np.arange(n), np.arange(n, 2 * n), k, seed)
    in_mask, out_mask = design.masks()
    x = rng.normal(0, 2, n)[None] + rng.normal(0, 1, in_mask.shape) + delta * in_mask
    return np.stack([x, np.zeros_like(x)], axis=-1), np.zeros(n, dtype=np.int64), in_mask, out_mask


def test_planted_over_unlearning_scores_above_chance_online_below_offline_and_its_sign_says_which_way():
    """Forgotten examples 1.5 sigma *less* confident than never-seen ones: online, the AUC is above 0.5 as for
    a remembered set; only the direction (and the over-unlearned share) tells them apart; offline, below 0.5."""
    over = _planted(8, -1.5, 0)
    online = score_row(*over, mode="online").metrics()
    assert online["ulira_auc"] > 0.7 and online["ulira_auc_low"] > 0.6
    assert online["ulira_direction"] == pytest.approx(-1.5, abs=0.15) and online["ulira_direction_high"] < -1.2
    assert online["ulira_over_unlearned"] > 0.8
    offline = score_row(*over, mode="offline").metrics()
    assert offline["ulira_auc"] < 0.3 and offline["ulira_auc_high"] < 0.4
    assert offline["ulira_direction"] == online["ulira_direction"]  # the same pairs: the sign is not the test's
    kept = score_row(*_planted(8, 1.5, 0), mode="online").metrics()  # a trace kept: the same AUC, other sign
    assert kept["ulira_auc"] > 0.7 and kept["ulira_direction_low"] > 1.2 and kept["ulira_over_unlearned"] < 0.2
    for seed in range(3):  # retrain-like: nothing planted
        null = score_row(*_planted(8, 0.0, seed)).metrics()
        assert null["ulira_direction_low"] < 0 < null["ulira_direction_high"], null
        assert abs(null["ulira_over_unlearned"] - 0.5) < 0.06, null
        assert null["ulira_auc_low"] < null["ulira_auc"] < null["ulira_auc_high"]
    again = score_row(*over, mode="online").signed
    assert again == {name: online[name] for name in again}  # seeded: the same intervals


def test_retained_audit_flags_a_method_that_exposes_kept_examples_and_not_a_control():
    """IN = the shadow trained on the retained example and kept it. Retraining leaves the ordinary trace of
    training (0.5 sigma here); a method that sharpens kept examples (1.5 sigma) is caught, a control is not."""
    n, k = 300, 8
    design = make_design(np.arange(60), np.arange(60, n), k, seed=9)
    assert len(design.retained) == 60 and not np.intersect1d(design.retained, design.pool).size
    in_mask, out_mask = design.retained_masks()
    labels = np.zeros(len(design.retained), dtype=np.int64)
    difficulty = np.random.default_rng(0).normal(0, 2, len(design.retained))

    def row(delta: float, seed: int) -> dict[str, float]:
        x = difficulty + np.random.default_rng(seed).normal(0, 1, in_mask.shape) + delta * in_mask
        logits = np.stack([x, np.zeros_like(x)], axis=-1)
        return retained_metrics(score_row(logits, labels, in_mask, out_mask, seed=9))

    retrain, control, damaging = row(0.5, 1), row(0.5, 2), row(1.5, 3)
    assert set(retrain) == {"ulira_retained_auc", "ulira_retained_auc_low", "ulira_retained_auc_high"}
    assert damaging["ulira_retained_auc_low"] > retrain["ulira_retained_auc_high"]
    assert control["ulira_retained_auc_low"] < retrain["ulira_retained_auc"] < control["ulira_retained_auc_high"]
    assert retrain["ulira_retained_auc"] > 0.55  # training on an example is itself visible: the anchor is retrain
