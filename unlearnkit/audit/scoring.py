"""The pure scoring core of a U-LiRA audit: scaled logits, per-example Gaussians, likelihood ratios, ROC metrics.

LiRA (Carlini et al. 2022) asks, per example, whether the target model's confidence on it looks like
that of shadow models which were trained on it (IN) or of shadow models which were not (OUT).
U-LiRA (Hayes et al. 2024) uses the same test to audit *unlearning*; what changes is what IN means:

- IN: the example was in a shadow original's training half, was then in that shadow's forget set,
  and the audited unlearning method was applied — "trained on, then unlearned";
- OUT: the example was never in that shadow's training half (examples trained on and retained are
  neither, and are not used);
- the members to detect on the target are its forgotten examples, the non-members examples it never
  trained on. An AUC near 0.5 means forgotten examples are indistinguishable from never-seen ones (the
  ideal); an AUC well above 0.5 means the method leaves a trace an attacker can exploit — in either
  direction online (over-unlearned examples, less confident than never-seen ones, score above 0.5 too),
  which is why :func:`mean_difference` and :func:`share_below_median` give the sign the AUC lacks.

Intervals come from a cluster bootstrap over examples (:func:`cluster_bootstrap`): one example's
observations under the K target shadows are correlated, so they are resampled together.

Everything here is generic: functions take arrays and masks, and the caller decides what IN and OUT
mean. No torch, no store, no training — numpy and ``scipy.special`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import rankdata

from unlearnkit.api.ensemble import logit_margin

#: Smallest standard deviation a fitted Gaussian may have. Scaled logits are O(1-10) and a genuine
#: spread across shadows is O(0.1-1), so 1e-3 only bites on degenerate fits (all shadows agree
#: exactly, e.g. a deterministic method): it keeps densities finite instead of dividing by zero.
DEFAULT_MIN_STD = 1e-3

Mode = Literal["online", "offline"]
Seed = int | Sequence[int] | np.random.SeedSequence
#: Most weight entries (resamples x observations) a bootstrap holds at once: bounds its memory to ~100 MB.
BOOTSTRAP_CHUNK = 2**22


def scaled_logit(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's confidence statistic ``phi = log p_y - log sum_{j != y} p_j``, from raw logits.

    With ``p = softmax(z)`` the normaliser cancels: ``phi = z_y - logsumexp_{j != y} z_j``, computed with
    the max-shift log-sum-exp so logits of +-1000 neither overflow nor underflow (going through
    probabilities would give ``log 0``). The logit scaling makes the per-example distribution over
    shadows close to Gaussian, which the likelihood-ratio test assumes.

    ``logits``: (..., N, C) with C >= 2 classes; ``labels``: integer classes broadcastable to
    ``logits.shape[:-1]`` (e.g. (N,) for logits of K models stacked as (K, N, C)). Returns float64 (..., N).
    """
    return logit_margin(logits, labels)


@dataclass(frozen=True)
class GaussianFits:
    """Per-example Gaussians for the IN and OUT shadow observations; every array has shape (N,).

    ``n_in``/``n_out`` count the observations behind each fit; a mean (or std) is NaN where there was
    nothing to fit (see :func:`fit_gaussians`), which makes the example unscored rather than wrong.
    """

    mean_in: np.ndarray
    std_in: np.ndarray
    mean_out: np.ndarray
    std_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    fixed_variance: bool
    min_std: float

    def scorable(self, mode: Mode = "online") -> np.ndarray:
        """Which examples have the fits ``mode`` needs: OUT for offline, IN and OUT for online."""
        ok = np.isfinite(self.mean_out) & np.isfinite(self.std_out)
        if mode == "online":
            ok &= np.isfinite(self.mean_in) & np.isfinite(self.std_in)
        elif mode != "offline":
            raise ValueError(f"mode must be 'online' or 'offline'; got {mode!r}")
        return ok


def _mask_for(scores: np.ndarray, mask: np.ndarray | None, side: str) -> np.ndarray:
    if scores.ndim != 2:
        raise ValueError(f"{side}_scores must have shape (K, N); got {scores.shape}")
    m = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask)
    if m.dtype != bool or m.shape != scores.shape:
        raise ValueError(f"{side}_mask must be a boolean array of shape {scores.shape}; got {m.dtype} {m.shape}")
    bad = m & ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} {side} observations selected by {side}_mask are not finite")
    return m


def _fit_side(
    scores: np.ndarray, mask: np.ndarray, fixed_variance: bool, min_std: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and count per example of one side; NaN where undefined. Never warns."""
    count = mask.sum(axis=0)
    x = np.where(mask, scores, 0.0)
    mean = np.full(count.shape, np.nan)
    np.divide(x.sum(axis=0), count, out=mean, where=count > 0)
    dev = np.where(mask, scores - np.where(count > 0, mean, 0.0), 0.0)
    sq = (dev * dev).sum(axis=0)  # sum of squared deviations per example (two-pass, exact enough)
    dof = np.maximum(count - 1, 0)
    # Pooled within-example variance: sum_n sum_k (x_kn - mu_n)^2 / sum_n (c_n - 1). Unlike the global
    # std of all values (LiRA's reference code), it does not absorb the spread of means across examples.
    total_dof = int(dof.sum())
    pooled = np.sqrt(sq.sum() / total_dof) if total_dof > 0 else np.nan
    std = np.full(count.shape, pooled)
    if not fixed_variance:  # own sample std (ddof=1); a single observation has none and keeps the pooled one
        np.divide(sq, dof, out=std, where=dof > 0)
        np.sqrt(std, out=std, where=dof > 0)
    std = np.maximum(std, min_std)  # floor degenerate spreads; NaN (undefined) stays NaN
    std[count == 0] = np.nan
    return mean, std, count


def fit_gaussians(
    in_scores: np.ndarray,
    in_mask: np.ndarray | None,
    out_scores: np.ndarray,
    out_mask: np.ndarray | None,
    *,
    fixed_variance: bool = False,
    min_std: float = DEFAULT_MIN_STD,
) -> GaussianFits:
    """Fit ``N(mu_in, sigma_in)`` and ``N(mu_out, sigma_out)`` per example from shadow observations.

    ``in_scores`` (K_in, N) and ``out_scores`` (K_out, N) are scaled logits of N audited examples under
    K shadow models; ``in_mask[k, n]`` / ``out_mask[k, n]`` say whether model k observed example n as IN /
    OUT (``None``: every entry). Unselected entries are ignored and may be NaN. Both sides may be the
    same (K, N) array with disjoint masks. For U-LiRA: IN = the example was in shadow k's forget set and
    the audited method was applied; OUT = it was not in shadow k's training half.

    ``mu_n = mean_k x_kn``. ``sigma_n`` is the per-example sample std (ddof=1) or, with
    ``fixed_variance`` (LiRA's advice for few shadows, say K < 64), one std per side pooled over
    examples, ``sigma^2 = sum_n sum_k (x_kn - mu_n)^2 / sum_n (c_n - 1)``. An example with a single
    observation has no spread of its own and gets the pooled std. Every std is floored at ``min_std``
    (zero variance when all shadows agree). An example with no observation on a side gets NaN there;
    so does a side where no example was observed twice (nothing to estimate a spread from) — those
    examples are then unscored, never silently scored with a made-up variance.
    """
    xin = np.asarray(in_scores, dtype=np.float64)
    xout = np.asarray(out_scores, dtype=np.float64)
    mi = _mask_for(xin, in_mask, "in")
    mo = _mask_for(xout, out_mask, "out")
    if xin.shape[1] != xout.shape[1]:
        raise ValueError(f"in_scores and out_scores must cover the same N examples; got {xin.shape} and {xout.shape}")
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0; got {min_std}")
    mean_in, std_in, n_in = _fit_side(xin, mi, fixed_variance, min_std)
    mean_out, std_out, n_out = _fit_side(xout, mo, fixed_variance, min_std)
    return GaussianFits(mean_in, std_in, mean_out, std_out, n_in, n_out, fixed_variance, float(min_std))


def likelihood_ratio_scores(target_scores: np.ndarray, fits: GaussianFits, mode: Mode = "online") -> np.ndarray:
    """Per-example membership score of the target model; higher = more likely a member. NaN = unscored.

    ``target_scores``: the target's scaled logits, (..., N), broadcast against the fits (e.g. (M, N) for
    M targets). With ``z_s = (x - mu_s) / sigma_s``:

    - online: ``log N(x; mu_in, sigma_in) - log N(x; mu_out, sigma_out)
      = log sigma_out - log sigma_in + (z_out^2 - z_in^2) / 2``;
    - offline (LiRA's one-sided test against OUT only, the paper's ``Phi(z_out)``): reported as
      ``-log(1 - Phi(z_out))``, the negative log-survival — same ranking as ``Phi(z_out)``, but computed
      with ``log_ndtr`` so it does not saturate at 1 for z > 8, where low-FPR ranking happens. It only
      flags *higher* confidence than never-seen examples; an over-unlearned example (less confident than
      OUT) is caught by the online test, not by this one.

    NaN where the fits ``mode`` needs are missing (see :meth:`GaussianFits.scorable`) or the target score
    is NaN.
    """
    x = np.asarray(target_scores, dtype=np.float64)
    ok = fits.scorable(mode)
    if x.shape[-1:] != ok.shape:
        raise ValueError(f"target_scores must end in the N={ok.shape[0]} audited examples; got shape {x.shape}")
    with np.errstate(invalid="ignore"):  # NaN fits and targets propagate as NaN, by design
        z_out = (x - fits.mean_out) / fits.std_out
        if mode == "online":
            z_in = (x - fits.mean_in) / fits.std_in
            score = np.log(fits.std_out) - np.log(fits.std_in) + 0.5 * (z_out * z_out - z_in * z_in)
        else:
            score = -log_ndtr(-z_out)
    return np.where(ok, score, np.nan)


def _clean(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_member)
    if s.ndim != 1 or m.shape != s.shape or m.dtype != bool:
        raise ValueError(
            f"scores must be 1-D and is_member a boolean array of the same shape; got {s.shape}, {m.shape}"
        )
    keep = ~np.isnan(s)
    return s[keep], m[keep]


def roc_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Area under the ROC curve, NaN scores excluded; NaN without both members and non-members.

    Mann-Whitney form with average ranks for ties: ``AUC = (R_pos - P(P+1)/2) / (P * Q)`` for P members,
    Q non-members and R_pos the members' rank sum — i.e. ``Pr[s_member > s_nonmember] + Pr[=] / 2``.
    """
    s, m = _clean(scores, is_member)
    p, q = int(m.sum()), int((~m).sum())
    if p == 0 or q == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[m].sum() - p * (p + 1) / 2) / (p * q))


def roc_curve(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC points (fpr, tpr) from (0, 0) to (1, 1), one per distinct threshold; NaN excluded.

    Tied scores make one point, so a tie between members and non-members is a diagonal segment.
    """
    s, m = _clean(scores, is_member)
    order = np.argsort(-s, kind="stable")
    s, m = s[order], m[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], dtype=int)
    tp = np.cumsum(m)[last]
    fp = np.cumsum(~m)[last]
    p, q = int(m.sum()), int((~m).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / p] if p else np.full(last.size + 1, np.nan)
        fpr = np.r_[0.0, fp / q] if q else np.full(last.size + 1, np.nan)
    return fpr, tpr


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float) -> float:
    """TPR at false-positive rate ``fpr`` (LiRA reports 1 % and 0.1 %), NaN scores excluded.

    Reads the empirical ROC with linear interpolation between adjacent points — the TPR a randomised
    mix of the two neighbouring thresholds achieves. At an FPR hit exactly, the highest TPR there. With
    Q non-members the smallest non-zero FPR one can observe is 1/Q: for ``0 < fpr < 1/Q`` the value
    would be an interpolation toward a single false positive, not a measurement, so it is NaN (ask for
    ``fpr=0``, always resolvable, for the TPR at zero false positives). NaN also without members or
    non-members.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1]; got {fpr}")
    s, m = _clean(scores, is_member)
    p, q = int(m.sum()), int((~m).sum())
    if p == 0 or q == 0 or (fpr > 0 and fpr * q < 1 - 1e-9):
        return float("nan")
    f, t = roc_curve(s, m)
    i = int(np.searchsorted(f, fpr, side="right")) - 1  # last point with FPR <= fpr (TPR is non-decreasing)
    if f[i] == fpr or i == f.size - 1:
        return float(t[i])
    return float(t[i] + (t[i + 1] - t[i]) * (fpr - f[i]) / (f[i + 1] - f[i]))


def summarise(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float | int]:
    """The audit's headline numbers from :func:`likelihood_ratio_scores` output and the target's truth.

    For U-LiRA, ``is_member`` is True for the target's forgotten examples and False for examples it never
    trained on. NaN scores (no IN or OUT fit) are left out of every metric and counted in
    ``n_unscored``; ``n_members``/``n_nonmembers`` count the scored ones (a TPR is NaN when the FPR is
    below ``1 / n_nonmembers``, see :func:`tpr_at_fpr`).
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_member)
    scored = ~np.isnan(s)
    return {
        "ulira_auc": roc_auc(s, m),
        "ulira_tpr_at_1fpr": tpr_at_fpr(s, m, 0.01),
        "ulira_tpr_at_01fpr": tpr_at_fpr(s, m, 0.001),
        "n_scored": int(scored.sum()),
        "n_unscored": int((~scored).sum()),
        "n_members": int((scored & m).sum()),
        "n_nonmembers": int((scored & ~m).sum()),
    }


def _sides(values: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The members' and the non-members' values, NaN values left out."""
    v, m = _clean(values, is_member)
    return v[m], v[~m]


def mean_difference(values: np.ndarray, is_member: np.ndarray) -> float:
    """Members' mean minus non-members' mean, NaN values excluded; NaN without both sides.

    On scaled logits it is the sign the AUC lacks: > 0 when forgotten examples are more confident than
    never-seen ones (a trace of training left), < 0 when less (over-unlearning), ~0 after retraining.
    """
    members, others = _sides(values, is_member)
    if members.size == 0 or others.size == 0:
        return float("nan")
    return float(members.mean() - others.mean())


def share_below_median(values: np.ndarray, is_member: np.ndarray) -> float:
    """Share of members below the non-members' median, a tie with it counting one half; NaN without both sides.

    Calibrated on the non-members, so it is 0.5 in expectation whenever members and non-members are
    exchangeable (whatever the distribution's shape); above 0.5 members sit low, below 0.5 they sit high.
    """
    members, others = _sides(values, is_member)
    if members.size == 0 or others.size == 0:
        return float("nan")
    median = np.median(others)
    return float(((members < median).sum() + 0.5 * (members == median).sum()) / members.size)


@dataclass(frozen=True)
class Clustered:
    """Scores of observations grouped in clusters, prepared once for statistics of many resamples.

    A resample is given as cluster counts, ``counts[b, c]`` = how often cluster c was drawn in resample b,
    and a statistic returns one value per row b: the value it would have on the sample holding every
    observation of cluster c that many times, computed without building that sample. For U-LiRA a
    cluster is an audited example and its observations are its (target shadow, example) pairs.
    """

    values: np.ndarray  # (P,) finite values
    is_member: np.ndarray  # (P,) bool
    cluster: np.ndarray  # (P,) cluster of each observation, 0 .. n_clusters - 1
    n_clusters: int
    member_cluster: np.ndarray  # (P+,) the members' clusters
    nonmember_cluster: np.ndarray  # (Q,) the non-members' clusters, in increasing order of their value
    below: np.ndarray  # (P+,) how many non-members each member's value is above
    below_or_tied: np.ndarray  # (P+,) ... above or equal to
    sums: np.ndarray  # (2, n_clusters): per cluster, the members' and the non-members' sum of values
    sizes: np.ndarray  # (2, n_clusters): ... and their numbers of observations

    @classmethod
    def of(cls, values: np.ndarray, is_member: np.ndarray, clusters: np.ndarray) -> Clustered:
        """Observations with their cluster labels (any integers); NaN values are left out."""
        c = np.asarray(clusters)
        if c.shape != np.shape(values):
            raise ValueError(f"clusters must have the shape of values {np.shape(values)}; got {c.shape}")
        v, m = _clean(values, is_member)
        _, inverse = np.unique(c[~np.isnan(np.asarray(values, dtype=np.float64))], return_inverse=True)
        order = np.argsort(v[~m], kind="stable")
        sorted_out = v[~m][order]
        n = int(inverse.max()) + 1 if inverse.size else 0
        sides = (m, ~m)
        return cls(
            values=v,
            is_member=m,
            cluster=inverse,
            n_clusters=n,
            member_cluster=inverse[m],
            nonmember_cluster=inverse[~m][order],
            below=np.searchsorted(sorted_out, v[m], side="left"),
            below_or_tied=np.searchsorted(sorted_out, v[m], side="right"),
            sums=np.stack([np.bincount(inverse[side], v[side], minlength=n) for side in sides]),
            sizes=np.stack([np.bincount(inverse[side], minlength=n) for side in sides]).astype(np.float64),
        )

    def _weights(self, counts: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        # float32 holds integer counts exactly while their running sums stay below 2**24: half the memory
        dtype = np.float32 if self.values.size < 2**23 else np.float64
        return np.asarray(counts, dtype=dtype)[:, clusters]

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """:func:`roc_auc` per resample: with ``C`` the running weight of the non-members in value order, a
        member at value s beats ``C(< s) + C(= s) / 2`` of them: ``AUC = sum_i w_i (C(< s_i) + C(<= s_i)) / 2
        / (W+ W-)``. NaN for a resample without both sides."""
        c = np.atleast_2d(counts)
        w_in = self._weights(c, self.member_cluster)
        w_out = self._weights(c, self.nonmember_cluster)
        running = np.concatenate([np.zeros((c.shape[0], 1), w_out.dtype), np.cumsum(w_out, axis=1)], axis=1)
        beaten = running[:, self.below]
        if not np.array_equal(self.below, self.below_or_tied):
            beaten = 0.5 * (beaten + running[:, self.below_or_tied])
        num = (w_in * beaten).sum(axis=1, dtype=np.float64)
        den = w_in.sum(axis=1, dtype=np.float64) * running[:, -1].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    def mean_difference(self, counts: np.ndarray) -> np.ndarray:
        """:func:`mean_difference` per resample, from per-cluster sums (no per-observation work)."""
        c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (c @ self.sums.T) / (c @ self.sizes.T)  # (B, 2)
        return means[:, 0] - means[:, 1]


def cluster_bootstrap(
    data: Clustered,
    statistic: Callable[[Clustered, np.ndarray], np.ndarray],
    *,
    resamples: int,
    seed: Seed,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` (e.g. :meth:`Clustered.auc`) under a bootstrap over clusters.

    A resample draws as many clusters as there are, uniformly with replacement, and keeps every observation
    of each drawn cluster (as often as it was drawn). For U-LiRA a cluster is an audited example: its scores
    under the K target shadows are correlated, and resampling pairs as if independent would understate the
    noise. The interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the finite
    resampled values; NaN bounds when fewer than two are finite. Deterministic for a ``seed``: the draws
    depend only on it, ``resamples`` and the number of clusters, so two statistics of the same clusters
    bootstrapped with one seed see the same resamples.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    n = data.n_clusters
    if resamples < 1 or n == 0:
        return float("nan"), float("nan")
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
    step = max(1, BOOTSTRAP_CHUNK // max(data.values.size, 1))
    draws = np.concatenate([statistic(data, counts[b : b + step]) for b in range(0, resamples, step)])
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
