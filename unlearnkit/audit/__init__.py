"""Privacy audits of unlearning: U-LiRA (Hayes et al. 2024), a per-example likelihood-ratio membership test.

Asks whether a target's forgotten examples still look "trained on" to an attacker with shadow models.
This package is the pure numpy part (splits, scoring, metrics); training shadows is the caller's job.
"""

from unlearnkit.audit.scoring import (
    DEFAULT_MIN_STD,
    GaussianFits,
    fit_gaussians,
    likelihood_ratio_scores,
    roc_auc,
    roc_curve,
    scaled_logit,
    summarise,
    tpr_at_fpr,
)
from unlearnkit.audit.shadow_splits import forget_subset, shadow_halves, ulira_masks

__all__ = [
    "DEFAULT_MIN_STD",
    "GaussianFits",
    "fit_gaussians",
    "forget_subset",
    "likelihood_ratio_scores",
    "roc_auc",
    "roc_curve",
    "scaled_logit",
    "shadow_halves",
    "summarise",
    "tpr_at_fpr",
    "ulira_masks",
]
