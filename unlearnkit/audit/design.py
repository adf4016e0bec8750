"""The shadow design of a U-LiRA audit and its leave-one-out scoring (pure numpy, no store, no torch).

**Which examples are audited, and who forgets them.** The audit pool is the benchmark's forget set drawn
by its scenario rule on the whole (subset) training set U — e.g. the first 10 % of each class of U for
``instance:0.1``, every image of the class for ``class:c``. Each of the K shadows trains on a seeded half
H_k of U (:func:`~unlearnkit.audit.shadow_splits.shadow_halves`) and forgets ``F_k = pool ∩ H_k``; it
retains ``H_k \\ pool``. Why this design rather than drawing a fresh forget set inside each half:

- every pool example is IN the half of exactly K/2 shadows (even K) and, being in the pool, is forgotten
  by every one of them, so it has K/2 "trained on, then unlearned" (IN) observations and K/2 "never trained
  on" (OUT) ones — the balance the per-example Gaussians need, from the fewest shadows. A forget set drawn
  per half by the scenario rule (:func:`~unlearnkit.audit.shadow_splits.forget_subset`) would forget each
  example in only a fraction f of the K/2 shadows that train on it, wasting shadows (f = 0.1: 10x fewer IN
  observations), and the ``instance`` rule would forget the same first-in-order examples of every half;
- each shadow's forget set is still the scenario's forget set of its own training data: for ``class:c``
  exactly (the class within H_k), for ``random:f`` equal in distribution (a uniformly random f of H_k),
  for ``instance:f`` the same fraction f of each class, drawn from the examples the benchmark forgets;
- trained-and-retained examples are outside the pool, so no audited example is ever "neither IN nor OUT":
  no observation is wasted.

**What is scored.** For one row (a method, or the ``original``/``retrain`` references) every shadow yields
the scaled logits of the pool under that row's model: the method applied to shadow original k (or the
shadow original itself, or the shadow retrain). IN[k, n] = example n was forgotten by shadow k, OUT[k, n] =
it was not in H_k. Each shadow in turn is the target (leave-one-out): per-example Gaussians are fitted on
the other K-1 shadows of the same row, the target's forgotten examples are the members and its OUT pool
examples the non-members, and every (target, example) pair is pooled into one ROC. OUT observations come
from the same row's models: under "never trained on" the model has still been through the same unlearning
step, so a method that shifts every confidence (members and non-members alike) is not mistaken for a leak.
Leave-one-out leaves a member with one IN observation fewer than OUT ones (a non-member the reverse);
the means are fitted on balanced counts (:func:`balance`), or a row with no signal would score below 0.5.

**Which way, and how sure.** The AUC says *that* forgotten examples differ from never-seen ones, not which
way: online, an over-unlearned example (less confident than never-seen) scores above 0.5 as a remembered
one does. :func:`signed_metrics` adds the sign — the mean scaled logit of the members minus that of the
non-members over the AUC's own pairs — and the share of members that sit low, and bootstrap intervals
over the audited examples (:func:`~unlearnkit.audit.scoring.cluster_bootstrap`).

**The retained audit.** Unlearning can expose the examples a model *keeps* (Hayes et al. 2024). The design
already has what the test needs: a retained example r (in U, not in the pool) is in K/2 halves, and each of
those shadows trained on it and retained it when the method ran (its retain set is ``H_k \\ pool``); the
other K/2 never saw it. So IN[k, r] = r in H_k, OUT = the rest, scored like the pool over a seeded sample of
the retained examples (:attr:`ShadowDesign.retained`, as many as the pool) whose logits every row also
forwards. The halves, hence every shadow model, do not depend on the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from unlearnkit.audit.scoring import (
    Clustered,
    GaussianFits,
    Mode,
    cluster_bootstrap,
    fit_gaussians,
    likelihood_ratio_scores,
    mean_difference,
    roc_auc,
    scaled_logit,
    share_below_median,
    summarise,
)
from unlearnkit.audit.shadow_splits import ulira_masks
from unlearnkit.engine.halves import shadow_seed, universe_halves
from unlearnkit.errors import ConfigError
from unlearnkit.identity import array_fingerprint

#: The fewest shadows a leave-one-out audit can score: with K shadows a target's member has K/2 - 1 other
#: IN observations and a non-member K/2 - 1 other OUT ones, and a spread needs a second observation somewhere.
MIN_SHADOWS = 4

#: "Clearly above": the original row's AUC must exceed the retrain row's by this many standard errors of the
#: difference (one-sided p ~ 0.0013), estimated with this many bootstrap resamples (see :func:`power_check`).
POWER_Z = 3.0
POWER_RESAMPLES = 200

#: The false-positive rates reported, by metric name.
FPRS = {"ulira_tpr_at_1fpr": 0.01, "ulira_tpr_at_01fpr": 0.001}

#: Resamples of the bootstrap behind the reported 95 % intervals (percentile intervals need ~1000).
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
#: How the offline test is labelled wherever a mode is shown: the paper's one-sided test, not the LiRA
#: code's two-sided one (which ranks differently; docs/audit.md).
OFFLINE_LABEL = "offline one-sided (paper)"


def one_request(scenario_key: str, requests: int, what: str) -> None:
    """Refuse a scenario of successive deletion requests: an audit scores one deletion (the
    models it compares saw one forget set removed, not a chain of them)."""
    if requests > 1:
        raise ConfigError(
            f"Scenario '{scenario_key}' makes {requests} successive deletion requests; {what} scores a single "
            "deletion: give a single-request scenario (e.g. the one inside it)."
        )


def mode_label(mode: str) -> str:
    """A mode as tables and titles show it."""
    return OFFLINE_LABEL if mode == "offline" else mode


@dataclass(frozen=True)
class ShadowDesign:
    """Who trains on, forgets and never sees which example; all indices are dataset (training-set) indices."""

    universe: np.ndarray  # U: the (subset) training set, sorted
    pool: np.ndarray  # the audited examples (the scenario's forget set on U), sorted
    halves: np.ndarray  # (K, |U|) bool: shadow k trains on universe[halves[k]]
    seed: int
    retained: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # retained audit's sample, sorted

    @property
    def shadows(self) -> int:
        return int(self.halves.shape[0])

    @property
    def pool_halves(self) -> np.ndarray:
        """(K, N) bool: which pool examples each shadow trains on (and so forgets)."""
        return self.halves[:, np.searchsorted(self.universe, self.pool)]

    def trained_on(self, k: int) -> np.ndarray:
        return self.universe[self.halves[k]]

    def forget(self, k: int) -> np.ndarray:
        return self.pool[self.pool_halves[k]]

    def retain(self, k: int) -> np.ndarray:
        return np.setdiff1d(self.trained_on(k), self.pool, assume_unique=True)

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """U-LiRA's (K, N) IN and OUT masks over the pool."""
        ph = self.pool_halves
        return ulira_masks(ph, [np.flatnonzero(row) for row in ph])

    def retained_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, R) IN and OUT masks over the retained sample: IN = shadow k trained on it and kept it."""
        rh = self.halves[:, np.searchsorted(self.universe, self.retained)]
        return rh, ~rh

    def fingerprint(self) -> str:
        return array_fingerprint(self.universe, self.pool, self.halves, self.retained)


def make_design(
    forget: np.ndarray, retain: np.ndarray, shadows: int, seed: int, retained_sample: int | None = None
) -> ShadowDesign:
    """The design for a benchmark seed's forget/retain split: U = forget ∪ retain, pool = forget.

    The retained audit's sample is ``retained_sample`` retained examples (default: as many as the pool, so
    its cost matches the pool's), drawn on a seed stream of its own: the halves do not depend on it.
    """
    if shadows < MIN_SHADOWS:
        raise ValueError(f"a U-LiRA audit needs at least {MIN_SHADOWS} shadows; got {shadows}")
    universe = np.sort(np.concatenate([forget, retain]).astype(np.int64))
    pool = np.sort(np.asarray(forget, dtype=np.int64))
    halves = universe_halves(len(universe), shadows, seed)
    kept = np.setdiff1d(universe, pool)
    size = min(len(pool) if retained_sample is None else retained_sample, len(kept))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E7A]))
    retained = np.sort(rng.choice(kept, size=size, replace=False)) if size > 0 else kept[:0]
    return ShadowDesign(universe, pool, halves, seed, retained)


@dataclass
class RowScores:
    """One row's leave-one-out audit: per (target shadow, pool example) scores and the headline numbers."""

    scaled: np.ndarray  # (K, N) scaled logits
    scores: np.ndarray  # (K, N) likelihood-ratio score of example n with shadow k as the target; NaN = not a pair
    in_mask: np.ndarray
    out_mask: np.ndarray
    summary: dict[str, float | int]
    examples_member: int  # distinct pool examples scored at least once as a member
    examples_nonmember: int
    acc_in: float  # accuracy of the row's models on the examples they forgot (IN)
    acc_out: float  # ... and on pool examples they never trained on (OUT)
    # (K, N) the target's scaled logit standardised by the example's OUT Gaussian fitted on the other shadows
    z_out: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    signed: dict[str, float] = field(default_factory=dict)  # direction, over-unlearned share, intervals
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN

    @property
    def auc(self) -> float:
        return float(self.summary["ulira_auc"])

    @property
    def pairs(self) -> np.ndarray:
        """(K, N) bool: the scored (target, example) pairs — exactly those the AUC ranks."""
        return (self.in_mask | self.out_mask) & np.isfinite(self.scores)

    def metrics(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.summary.items()}
        out.update(self.signed)
        out.update(
            examples_member=float(self.examples_member),
            examples_nonmember=float(self.examples_nonmember),
            acc_in=self.acc_in,
            acc_out=self.acc_out,
        )
        return out


def balance(in_obs: np.ndarray, out_obs: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop surplus observations so each example has as many IN as OUT ones (the lower count).

    Leave-one-out makes the counts lopsided: a member of the target has K/2 - 1 other IN observations and
    K/2 OUT ones, a non-member the reverse. The side fitted from fewer observations has a noisier mean, so
    the target sits farther from it on average (``E (x - mu_hat)^2 = sigma^2 (1 + 1/m)``): with few shadows
    and little signal that pushes members *below* non-members, an AUC under 0.5 that means nothing (simulated
    with no signal at all: 0.43 at K = 4, 0.47 at K = 8, 0.48 at K = 16). Equal counts make members and non-members
    exchangeable when IN and OUT coincide, so a leak-free row scores 0.5 in expectation. Which surplus
    observation goes is seeded (``rank``: one random number per (shadow, example), shared by every row).
    """
    n_in, n_out = in_obs.sum(axis=0), out_obs.sum(axis=0)
    keep = np.minimum(n_in, n_out)
    result = []
    for obs, count in ((in_obs, n_in), (out_obs, n_out)):
        surplus = count - keep
        order = np.argsort(-np.where(obs, rank, -np.inf), axis=0, kind="stable")  # this side's shadows first
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(obs.shape[0])[:, None], axis=0)
        result.append(obs & ~(position < surplus[None, :]))
    return result[0], result[1]


def fit_balanced(
    scaled: np.ndarray,
    in_obs: np.ndarray,
    out_obs: np.ndarray,
    rank: np.ndarray,
    *,
    fixed_variance: bool,
    balanced: bool = True,
) -> GaussianFits:
    """Per-example Gaussians with means from :func:`balance`-d observations.

    Only the means need balancing (their estimation noise is what biases the online ratio). A fixed variance
    is pooled over every observation given — thousands of degrees of freedom, the same for members and
    non-members. A per-example variance comes from the balanced observations (equal degrees of freedom on
    both sides), and falls back to the pooled one where a side has a single observation. Offline scoring
    (``balanced=False``) only reads the OUT side, whose symmetric spread ranks at 0.5 without balancing.
    """
    pooled = fit_gaussians(scaled, in_obs, scaled, out_obs, fixed_variance=True)
    if not balanced:
        own = fit_gaussians(scaled, in_obs, scaled, out_obs, fixed_variance=fixed_variance)
        return own if not fixed_variance else pooled
    b_in, b_out = balance(in_obs, out_obs, rank)
    fits = fit_gaussians(scaled, b_in, scaled, b_out, fixed_variance=fixed_variance)
    std_in, std_out = pooled.std_in, pooled.std_out
    if not fixed_variance:
        std_in = np.where(fits.n_in >= 2, fits.std_in, pooled.std_in)
        std_out = np.where(fits.n_out >= 2, fits.std_out, pooled.std_out)
    std_in = np.where(fits.n_in > 0, std_in, np.nan)
    std_out = np.where(fits.n_out > 0, std_out, np.nan)
    return replace(fits, std_in=std_in, std_out=std_out)


def score_row(
    logits: np.ndarray,
    labels: np.ndarray,
    in_mask: np.ndarray,
    out_mask: np.ndarray,
    *,
    mode: Mode = "online",
    fixed_variance: bool = True,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> RowScores:
    """Leave-one-out U-LiRA over K shadows: ``logits`` (K, N, C) of the row's models on the pool.

    For each target shadow k, Gaussians are fitted on the other shadows' observations, balanced per example
    (:func:`balance`, seeded by ``seed``), and the target's IN (member) and OUT (non-member) examples scored;
    then :func:`signed_metrics` (``resamples`` bootstrap draws; 0: no intervals, NaN bounds).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 3 or in_mask.shape != z.shape[:2] or out_mask.shape != z.shape[:2]:
        raise ValueError(f"logits must be (K, N, C) matching the (K, N) masks; got {z.shape} and {in_mask.shape}")
    k_count = z.shape[0]
    scaled = scaled_logit(z, labels)
    finite = np.isfinite(scaled)  # a non-finite output is no observation (never a made-up one)
    obs_in, obs_out = in_mask & finite, out_mask & finite
    rank = np.random.default_rng(np.random.SeedSequence([seed, 0xBA1])).random(scaled.shape)
    scores = np.full(scaled.shape, np.nan)
    z_out = np.full(scaled.shape, np.nan)
    for k in range(k_count):
        others_in, others_out = obs_in.copy(), obs_out.copy()
        others_in[k] = False
        others_out[k] = False
        fits = fit_balanced(
            scaled, others_in, others_out, rank, fixed_variance=fixed_variance, balanced=mode == "online"
        )
        target = np.where(finite[k], scaled[k], np.nan)
        row = likelihood_ratio_scores(target, fits, mode)
        scores[k] = np.where(in_mask[k] | out_mask[k], row, np.nan)
        with np.errstate(invalid="ignore"):  # no OUT fit: NaN, and the pair is unscored anyway
            z_out[k] = (target - fits.mean_out) / fits.std_out
    pair = in_mask | out_mask
    summary = summarise(scores[pair], in_mask[pair])
    scored = np.isfinite(scores)
    predicted = z.argmax(axis=-1) == np.asarray(labels)[None, :]
    acc_in = float(predicted[in_mask].mean()) if in_mask.any() else math.nan
    acc_out = float(predicted[out_mask].mean()) if out_mask.any() else math.nan
    result = RowScores(
        scaled=scaled,
        scores=scores,
        in_mask=in_mask,
        out_mask=out_mask,
        summary=summary,
        examples_member=int((scored & in_mask).any(axis=0).sum()),
        examples_nonmember=int((scored & out_mask).any(axis=0).sum()),
        acc_in=acc_in,
        acc_out=acc_out,
        z_out=z_out,
    )
    result.signed = signed_metrics(result, resamples=resamples, seed=seed)
    result.notes = nan_reasons(summary, mode)
    return result


def signed_metrics(row: RowScores, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, float]:
    """What the AUC does not say: which way members differ, how many look over-unlearned, how sure we are.

    Over the AUC's own (target shadow, example) pairs (:attr:`RowScores.pairs`), members vs non-members:

    - ``ulira_direction``: mean scaled logit (LiRA's phi) of the members minus that of the non-members. Every
      pool example is a member for some targets and a non-member for others, so per-example difficulty
      cancels: ~0 after retraining, > 0 when forgotten examples keep the original's confidence, < 0 when a
      method pushes them below never-seen ones (over-unlearning, which online also lifts the AUC above 0.5);
    - ``ulira_over_unlearned``: the share of members whose ``z_out`` (phi standardised by the example's own
      OUT Gaussian from the other shadows) is below the non-members' median ``z_out`` (ties one half): 0.5
      when forgotten looks like never-seen, above it when forgotten examples sit low, below it when high;
    - 95 % percentile intervals (``_low``/``_high``) of the AUC and the direction, from one cluster
      bootstrap over the audited examples (all pairs of a drawn example kept: they are correlated), seeded
      by ``seed`` — the same draws for both.
    """
    pair = row.pairs
    _, examples = np.nonzero(pair)
    member = row.in_mask[pair]
    stream = np.random.SeedSequence([seed, 0xC1A5])
    by_score = Clustered.of(row.scores[pair], member, examples)
    by_phi = Clustered.of(row.scaled[pair], member, examples)
    auc_low, auc_high = cluster_bootstrap(
        by_score, Clustered.auc, resamples=resamples, seed=stream, confidence=CONFIDENCE
    )
    dir_low, dir_high = cluster_bootstrap(
        by_phi, Clustered.mean_difference, resamples=resamples, seed=stream, confidence=CONFIDENCE
    )
    return {
        "ulira_auc_low": auc_low,
        "ulira_auc_high": auc_high,
        "ulira_direction": mean_difference(row.scaled[pair], member),
        "ulira_direction_low": dir_low,
        "ulira_direction_high": dir_high,
        "ulira_over_unlearned": share_below_median(row.z_out[pair], member),
    }


def retained_metrics(row: RowScores) -> dict[str, float]:
    """The retained audit's numbers, from :func:`score_row` on the retained sample (IN = trained on, kept)."""
    return {
        "ulira_retained_auc": row.auc,
        "ulira_retained_auc_low": row.signed.get("ulira_auc_low", math.nan),
        "ulira_retained_auc_high": row.signed.get("ulira_auc_high", math.nan),
    }


def nan_reasons(summary: dict[str, float | int], mode: str = "online") -> dict[str, str]:
    """Why a headline number is NaN, in words (too few scored non-members for that FPR, nothing scored)."""
    notes: dict[str, str] = {}
    members, nonmembers = int(summary["n_members"]), int(summary["n_nonmembers"])
    if members == 0 or nonmembers == 0:
        what = "IN and OUT" if mode == "online" else "OUT"
        reason = (
            f"nothing to rank: {members} members and {nonmembers} non-members scored "
            f"(each example needs {what} observations on other shadows: use more shadows)"
        )
        return {name: reason for name in ("ulira_auc", *FPRS)}
    for name, fpr in FPRS.items():
        need = math.ceil(1 / fpr - 1e-9)
        if nonmembers < need and math.isnan(float(summary[name])):
            notes[name] = (
                f"TPR at {fpr:.1%} FPR needs >= {need} scored non-members (an FPR of 1/Q is the smallest one can "
                f"observe), there are {nonmembers}: use a larger pool or more shadows"
            )
    return notes


@dataclass(frozen=True)
class PowerCheck:
    """Whether the audit can tell memorisation from its absence: original clearly above retrain."""

    original_auc: float
    retrain_auc: float
    threshold: float  # the AUC difference that counts as "clearly above": z x its standard error
    ok: bool

    @property
    def difference(self) -> float:
        return self.original_auc - self.retrain_auc

    def message(self, shadows: int) -> str:
        if self.ok:
            return (
                f"U-LiRA separates memorisation: original AUC {self.original_auc:.3f} vs retrain "
                f"{self.retrain_auc:.3f} (difference {self.difference:+.3f} > {self.threshold:.3f})."
            )
        return (
            f"U-LiRA audit under-powered: the original row (AUC {self.original_auc:.3f}) is not clearly above the "
            f"retrain row ({self.retrain_auc:.3f}; needs a difference > {self.threshold:.3f}) with {shadows} shadows: "
            "use more shadows, train longer (--epochs), on less data (--subset) or audit more examples (a larger "
            "forget fraction); its numbers are marked, not ranked."
        )


def _auc_of(row: RowScores, examples: np.ndarray) -> float:
    pair = (row.in_mask | row.out_mask)[:, examples]
    return roc_auc(row.scores[:, examples][pair], row.in_mask[:, examples][pair])


def power_check(
    original: RowScores, retrain: RowScores, z: float = POWER_Z, resamples: int = POWER_RESAMPLES, seed: int = 0
) -> PowerCheck:
    """Original AUC - retrain AUC > ``z`` x the standard error of that difference.

    The standard error comes from a paired cluster bootstrap over the audited examples: resample the pool
    examples with replacement, keep every (target shadow, example) pair of a drawn example, recompute both
    rows' AUCs on the same draw. Resampling examples, not pairs, respects that one example's K scores are
    correlated (treating the pairs as independent would understate the noise about sqrt(K/2) times);
    pairing the rows removes the part of the noise both share (which examples are easy to memorise). With
    z = 3 a retrain-like original passes by chance in about 1 audit in 740. Deterministic for a ``seed``.
    """
    o, r = original.auc, retrain.auc
    n = original.scores.shape[1]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))
    diffs = []
    for _ in range(resamples):
        drawn = np.asarray(rng.integers(0, n, size=n))
        diffs.append(_auc_of(original, drawn) - _auc_of(retrain, drawn))
    finite = np.asarray([d for d in diffs if not math.isnan(d)])
    se = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    threshold = z * se
    ok = not (math.isnan(o) or math.isnan(r) or math.isnan(threshold)) and o - r > threshold
    return PowerCheck(o, r, threshold, ok)


def _csv_lines(sample: str, indices: np.ndarray, labels: np.ndarray, row: RowScores) -> list[str]:
    lines = []
    ks, ns = np.nonzero(row.in_mask | row.out_mask)
    for k, n in zip(ks.tolist(), ns.tolist()):
        score = row.scores[k, n]
        lines.append(
            f"{k},{int(indices[n])},{int(labels[n])},{int(row.in_mask[k, n])},"
            f"{row.scaled[k, n]:.6g},{'' if math.isnan(score) else f'{score:.6g}'},{sample}"
        )
    return lines


def scores_csv(
    design: ShadowDesign, labels: np.ndarray, row: RowScores, retained: tuple[np.ndarray, RowScores] | None = None
) -> str:
    """Per-example scores, long format: one line per (target shadow, audited example) pair; ``sample`` says
    which audit (``forget``: the pool, member = forgotten; ``retained``: member = trained on and kept).
    ``retained``: the retained sample's labels and scores, when it was audited."""
    lines = ["shadow,index,label,member,scaled_logit,score,sample", *_csv_lines("forget", design.pool, labels, row)]
    if retained is not None:
        lines += _csv_lines("retained", design.retained, *retained)
    return "\n".join(lines) + "\n"


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "FPRS",
    "MIN_SHADOWS",
    "OFFLINE_LABEL",
    "POWER_RESAMPLES",
    "POWER_Z",
    "PowerCheck",
    "RowScores",
    "ShadowDesign",
    "balance",
    "fit_balanced",
    "make_design",
    "mode_label",
    "nan_reasons",
    "power_check",
    "retained_metrics",
    "score_row",
    "scores_csv",
    "shadow_seed",
    "signed_metrics",
]
