"""Leaderboard figures with matplotlib (headless): Avg Gap against time, and per-metric bars
with error bars (std over seeds), one row of panels per benchmark."""

from __future__ import annotations

import math
from pathlib import Path

from unlearnkit.leaderboard import Board

BAR_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia")


def plot_boards(boards: list[Board], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(boards))
    fig, axes = plt.subplots(n, 2, figsize=(14, 4.2 * n), squeeze=False)
    for board, (ax_gap, ax_bar) in zip(boards, axes):
        rows = [r for r in board.rows if not r.reference]
        for r in rows:
            t = r.metrics.get("time_s")
            if t is None or math.isnan(r.avg_gap) or math.isnan(t.mean):
                continue
            ax_gap.errorbar(
                max(t.mean, 1e-3),
                r.avg_gap,
                xerr=t.std or None,
                yerr=r.avg_gap_per_seed.std or None,
                fmt="o",
                capsize=3,
            )
            ax_gap.annotate(
                r.method, (max(t.mean, 1e-3), r.avg_gap), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        ax_gap.set_xscale("log")
        ax_gap.set_xlabel("unlearning time (s, log)")
        ax_gap.set_ylabel("Avg Gap to retrain (lower is better)")
        ax_gap.set_title(board.title, fontsize=9)
        ax_gap.grid(alpha=0.3)
        width = 0.8 / max(1, len(board.rows))
        for i, r in enumerate(board.rows):
            xs = [j + i * width for j in range(len(BAR_METRICS))]
            means = [r.metrics[m].mean if m in r.metrics else float("nan") for m in BAR_METRICS]
            stds = [r.metrics[m].std if m in r.metrics else 0.0 for m in BAR_METRICS]
            ax_bar.bar(xs, means, width, yerr=stds, capsize=2, label=r.method)
        ax_bar.set_xticks([j + 0.4 - width / 2 for j in range(len(BAR_METRICS))], BAR_METRICS)
        ax_bar.set_ylim(0, 1.05)
        ax_bar.set_title("mean ± std over seeds", fontsize=9)
        ax_bar.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
