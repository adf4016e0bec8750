"""Every metric formula pinned on a case computed by hand (docs/metrics.md)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unlearnkit.api.protocols import CLEAN, PAPER, rounded
from unlearnkit.board.leaderboard import MetricInfo, build_boards
from unlearnkit.store.mlflow_store import RunRecord
from unlearnkit_plugins.metrics.accuracy import ForgetAccuracy
from unlearnkit_plugins.metrics.accuracy import TestAccuracy as HeldOutAccuracy
from unlearnkit_plugins.metrics.divergence import MeanJSD, PaperJSD, RetrainFreeJSD, paper_jsd
from unlearnkit_plugins.metrics.membership import MIAEfficacy, PaperMIA, entropy
from unlearnkit_plugins.metrics.runtime import RelativeTime, UnlearnTime


class FakeEval:
    """Stands in for Evaluation: fixed probabilities per (role, split)."""

    def __init__(
        self, probs: dict, labels: dict, time_s: float = 1.0, retrain_time_s: float = 4.0, protocol=CLEAN
    ) -> None:
        self._probs = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in probs.items()}
        self._labels = {k: torch.as_tensor(v) for k, v in labels.items()}
        self.time_s, self.retrain_time_s = time_s, retrain_time_s
        self.ctx = SimpleNamespace(seed=0)
        self.protocol = protocol

    def probs(self, role, split, pass_="eval"):
        return self._probs[(role, split)]

    def logits(self, role, split, pass_="eval"):
        return self._probs[(role, split)].log()

    def reported(self, value):
        return rounded(value, self.protocol)

    def labels(self, split):
        return self._labels[split]


def test_accuracy_counts_argmax_hits():
    ev = FakeEval({("unlearned", "forget"): [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]}, {"forget": [0, 0, 0, 1]})
    assert ForgetAccuracy().compute(ev) == 0.75  # rows 0, 2 and 3 are right


def test_accuracy_of_an_empty_split_is_nan():
    ev = FakeEval({("unlearned", "test"): torch.empty(0, 3)}, {"test": torch.empty(0, dtype=torch.long)})
    assert math.isnan(HeldOutAccuracy().compute(ev))


def test_paper_jsd_matches_hand_computation():
    p = [[1.0, 0.0], [0.5, 0.5]]
    q = [[0.5, 0.5], [0.5, 0.5]]
    # By hand: P clamped -> [[1, 1e-8], [.5, .5]], divided by its total 2+1e-8; Q / 2.
    s = 2 + 1e-8
    P = [[1 / s, 1e-8 / s], [0.5 / s, 0.5 / s]]
    Q = [[0.25, 0.25], [0.25, 0.25]]
    M = [[(P[i][j] + Q[i][j]) / 2 for j in range(2)] for i in range(2)]
    kl_mp = sum(M[i][j] * (math.log(M[i][j]) - math.log(P[i][j])) for i in range(2) for j in range(2)) / 2
    kl_mq = sum(M[i][j] * (math.log(M[i][j]) - math.log(Q[i][j])) for i in range(2) for j in range(2)) / 2
    expected = 0.5 * kl_mp + 0.5 * kl_mq
    assert expected == pytest.approx(0.5217, abs=1e-3)  # the number worked out on paper
    got = PaperJSD().compute(FakeEval({("unlearned", "forget"): p, ("retrained", "forget"): q}, {"forget": [0, 1]}))
    assert got == pytest.approx(expected, rel=1e-12)


def test_paper_jsd_is_zero_for_identical_outputs_and_shrinks_with_n():
    row = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    assert paper_jsd(torch.tensor(row), torch.tensor(row)) == pytest.approx(0.0, abs=1e-15)
    a, b = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.1, 0.9]])
    one = paper_jsd(a, b)
    four = paper_jsd(a.repeat(4, 1), b.repeat(4, 1))
    assert four == pytest.approx(one / 4, rel=1e-9)  # "divided by N": the spec's documented quirk


def test_mean_jsd_is_textbook_per_sample():
    p = [[1.0, 0.0], [0.3, 0.7]]
    q = [[0.0, 1.0], [0.3, 0.7]]
    ev = FakeEval({("unlearned", "forget"): p, ("retrained", "forget"): q}, {"forget": [0, 1]})
    assert MeanJSD().compute(ev) == pytest.approx(math.log(2) / 2, rel=1e-12)  # ln 2 for row 0, 0 for row 1


def test_rf_jsd_uses_class_means_of_unlearned_forget_and_original_test():
    forget_probs = [[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]  # classes 0, 0, 1
    test_probs = [[0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.9, 0.1]]  # classes 0, 0, 1, 1
    ev = FakeEval(
        {("unlearned", "forget"): forget_probs, ("original", "test"): test_probs},
        {"forget": [0, 0, 1], "test": [0, 0, 1, 1]},
    )
    p = torch.tensor([[0.7, 0.3], [0.3, 0.7]], dtype=torch.float64)  # class means of forget rows
    q = torch.tensor([[0.6, 0.4], [0.55, 0.45]], dtype=torch.float64)  # class means of test rows
    assert RetrainFreeJSD().compute(ev) == pytest.approx(paper_jsd(p, q), rel=1e-12)
    assert RetrainFreeJSD.needs == {"original"}  # needs no retrained model: usable with --no-retrain


def test_entropy_feature():
    h = entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64))
    assert h[0] == pytest.approx(math.log(2)) and h[1] == 0.0


def test_mia_calls_confident_forget_samples_members():
    confident, unsure = [0.99, 0.01], [0.55, 0.45]
    ev = FakeEval(
        {
            ("unlearned", "retain"): [confident] * 20,
            ("unlearned", "test"): [unsure] * 10,
            ("unlearned", "unseen"): [unsure] * 10,
            ("unlearned", "forget"): [confident] * 3 + [unsure] * 1,
        },
        {},
    )
    assert PaperMIA().compute(ev) == 0.75  # three confident (member-like) of four


def test_mia_efficacy_counts_forget_samples_called_non_members():
    hi, lo = [0.98, 0.02], [0.4, 0.6]
    ev = FakeEval(
        {
            ("unlearned", "retain"): [hi] * 30,
            ("unlearned", "test"): [lo] * 30,
            ("unlearned", "forget"): [hi, lo, lo, lo],
        },
        {"retain": [0] * 30, "test": [0] * 30, "forget": [0, 0, 0, 0]},
    )
    assert MIAEfficacy().compute(ev) == 0.75  # three low-confidence of four look like non-members


def test_runtime_metrics():
    ev = FakeEval({}, {}, time_s=3.0, retrain_time_s=12.0)
    assert UnlearnTime().compute(ev) == 3.0
    assert RelativeTime().compute(ev) == 0.25


# the Average-Gap metrics as the built-in plugins declare them
INFO = {m: MetricInfo("closer_to_retrain", in_avg_gap=True) for m in ("mia", "acc_forget", "acc_retain", "acc_test")}


def _record(method: str, seed: int, metrics: dict) -> RunRecord:
    tags = {
        f"unlearnkit.{k}": v
        for k, v in {
            "run_type": "unlearn",
            "method": method,
            "seed": str(seed),
            "benchmark": "b1",
            "dataset": "d",
            "model": "m",
            "scenario": "instance:0.1",
            "train_recipe": "fast",
            "config_hash": f"{method}-{seed}",
            "role": {"original": "original", "retrain": "retrained"}.get(method, ""),
            "access": "forget+retain",
        }.items()
    }
    return RunRecord(run_id=f"{method}{seed}", status="FINISHED", start_time=seed, tags=tags, metrics=metrics)


def test_avg_gap_from_seed_means_and_per_seed():
    base = {"acc_retain": 1.0, "acc_test": 0.9}
    recs = [
        _record("retrain", 1, {"mia": 0.7, "acc_forget": 0.9, **base}),
        _record("retrain", 2, {"mia": 0.9, "acc_forget": 0.9, **base}),
        _record("lotus", 1, {"mia": 0.8, "acc_forget": 0.9, **base}),  # gap seed 1: (0.1+0+0+0)/4 = 0.025
        _record("lotus", 2, {"mia": 0.8, "acc_forget": 0.7, **base}),  # gap seed 2: (0.1+0.2)/4 = 0.075
    ]
    (board,) = build_boards(recs, INFO)
    lotus = next(r for r in board.rows if r.method == "lotus")
    # seed means: lotus mia 0.8 / acc_f 0.8; retrain mia 0.8 / acc_f 0.9 -> (0 + 0.1 + 0 + 0) / 4
    assert lotus.avg_gap == pytest.approx(0.025)
    assert lotus.avg_gap_per_seed.mean == pytest.approx(0.05)
    assert lotus.avg_gap_per_seed.std == pytest.approx(math.sqrt(2 * 0.025**2))  # sample std of 0.025, 0.075
    assert lotus.metrics["mia"].mean == pytest.approx(0.8) and lotus.metrics["mia"].std == 0.0
    assert [r.method for r in board.rows][0] == "retrain"


def test_duplicate_finished_runs_count_once():
    recs = [_record("lotus", 1, {"acc_forget": 0.5}), _record("lotus", 1, {"acc_forget": 0.9})]
    recs[1].start_time = 99
    (board,) = build_boards(recs, INFO)
    (row,) = board.rows
    assert row.metrics["acc_forget"].n == 1 and row.metrics["acc_forget"].mean == 0.5


def test_paper_protocol_rounds_accuracy_and_mia_to_hundredths():
    probs = {("unlearned", "forget"): [[0.9, 0.1]] * 2 + [[0.1, 0.9]]}
    ev = FakeEval(probs, {"forget": [0, 0, 0]}, protocol=PAPER)
    assert ForgetAccuracy().compute(ev) == 0.67  # 2/3, rounded as the official code reports it
    assert ForgetAccuracy().compute(FakeEval(probs, {"forget": [0, 0, 0]})) == pytest.approx(2 / 3)


def test_paper_mia_is_the_official_two_class_multinomial_fit():
    """A 2-class multinomial regression with C = 1 (the official attack) decides exactly like a
    binary one with C = 2: fit the multinomial objective by hand and compare decisions."""
    import numpy as np
    from scipy.optimize import minimize

    from unlearnkit_plugins.metrics.membership import entropy_attack

    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.3, 0.2, 300), rng.normal(0.6, 0.25, 120)
    x = np.concatenate([members, non_members])
    y = np.concatenate([np.ones(300), np.zeros(120)])
    w_class = {1: len(y) / (2 * 300), 0: len(y) / (2 * 120)}  # class_weight="balanced"
    sw = np.array([w_class[int(v)] for v in y])

    def objective(theta):  # softmax over two classes: weights (w0, w1), intercepts (b0, b1)
        w0, w1, b0, b1 = theta
        z = np.stack([w0 * x + b0, w1 * x + b1], 1)
        logp = z - np.logaddexp(z[:, 0], z[:, 1])[:, None]
        nll = -(sw * logp[np.arange(len(y)), y.astype(int)]).sum()
        return nll + 0.5 * (w0**2 + w1**2)  # sklearn's C = 1

    w0, w1, b0, b1 = minimize(objective, np.zeros(4), method="BFGS").x
    targets = np.linspace(-0.2, 1.2, 141)
    hand = float(((w1 - w0) * targets + (b1 - b0) > 0).mean())
    assert entropy_attack(members, non_members, targets, paper=True) == pytest.approx(hand, abs=1 / 141)


def test_the_terminal_leaderboard_fits_120_columns():
    """Three seeds, the longest built-in method names, values as wide as real ones (rf_jsd x1e4 in the
    hundreds, times in minutes) and an audit's column: the default terminal board still fits."""
    import io

    from rich.console import Console

    from unlearnkit.board.leaderboard import AUDIT_INFO, metric_info
    from unlearnkit.cli.leaderboard import render
    from unlearnkit.discovery.host import PluginHost

    info = metric_info(PluginHost().registries)
    values = {
        "acc_forget": 0.912, "acc_retain": 0.987, "acc_test": 0.901, "mia": 0.763, "jsd": 0.0123,
        "rf_jsd": 0.0456, "time_s": 1234.5, "ulira_auc": 0.612, "acc_unseen": 0.9, "rte": 1.2,
    }  # fmt: skip
    recs = []
    for seed in (1, 2, 3):
        for method in ("retrain", "original", "neggrad_plus", "random_label", "grad_ascent_plus"):
            jitter = {k: v * (1 + 0.01 * seed) for k, v in values.items()}
            recs.append(_record(method, seed, jitter))
    (board,) = build_boards(recs, info)
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    console.print(render(board, info, ["default"], wide=False))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 120, out.getvalue()
    assert "…" not in out.getvalue() and "0.92±0.01" in out.getvalue()  # nothing truncated; compact mean±std
    assert set(AUDIT_INFO) - {"ulira_auc"} <= set(info) and "ulira_tpr_at_1fpr" not in out.getvalue()
