"""Privacy audits of unlearning: U-LiRA (Hayes et al. 2024), a per-example likelihood-ratio membership test.

Asks whether a target's forgotten examples still look "trained on" to an attacker with shadow models.
Importing this package loads numpy only: the scoring (:mod:`.scoring`), the shadow splits
(:mod:`.shadow_splits`) and the audit's shadow design with its leave-one-out scoring (:mod:`.design`).
The orchestration that trains shadows and runs methods through the store is in :mod:`.runner` (one
benchmark cell) and :mod:`.job` (a recipe); ``unlearnkit audit`` drives it (docs/audit.md).
"""

from unlearnkit.audit.design import PowerCheck, RowScores, ShadowDesign, make_design, power_check, score_row
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
    "PowerCheck",
    "RowScores",
    "ShadowDesign",
    "fit_gaussians",
    "forget_subset",
    "likelihood_ratio_scores",
    "make_design",
    "power_check",
    "roc_auc",
    "roc_curve",
    "scaled_logit",
    "score_row",
    "shadow_halves",
    "summarise",
    "tpr_at_fpr",
    "ulira_masks",
]
