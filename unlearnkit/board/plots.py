"""Figures with matplotlib (headless): per benchmark, Avg Gap against time and bars of the
Average-Gap metrics (std over seeds as error bars, or with ``ci`` the 95 % t-intervals the
``--ci`` tables show); per run, its per-epoch series.

A method keeps one colour across every panel of a figure. Rows carry the tables' marks (†: a weak
original, ∅: a no-op) in labels and legends, and each marked board says why under its title.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unlearnkit.board.leaderboard import Board, Stat
from unlearnkit.board.tables import NO_OP_MARK, WEAK_MARK, WEAK_SHORT, row_label, written_out
from unlearnkit.errors import ConfigError, UnlearnkitError, disk_full, shorten, translated


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shown(text: str) -> str:
    """Store text (a method, dataset or metric name) as a figure label shows it as written: ``$`` would
    start matplotlib's math mode (``$\\foo$`` failed the whole figure on an unknown symbol) and a control
    character reach the terminal in matplotlib's missing-glyph warning."""
    return written_out(text).replace("$", r"\$")


def method_colours(boards: list[Board]) -> dict[str, Any]:
    """One colour per method name, stable across panels and boards (sorted names, tab20)."""
    plt = _pyplot()
    names = sorted({r.method for b in boards for r in b.rows})
    cmap = plt.get_cmap("tab20")
    return {name: cmap(i % 20) for i, name in enumerate(names)}


def _nan_to_zero(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def error_bar(stat: Stat, at: float, *, ci: bool, floor: float = -math.inf) -> list[list[float]] | None:
    """Matplotlib's (below, above) extents around ``at``: ± std, or with ``ci`` the interval's bounds.
    Bounds, not a half-width, because the Average Gap point (from seed means) is not the per-seed
    mean its interval is centred on; ``floor`` cuts a bar where values cannot go (a gap below 0, a
    time at or below 0 on a log axis). None: no bar."""
    if not ci:
        std = _nan_to_zero(stat.std)
        return [[std], [std]] if std else None
    if not stat.has_interval:
        return None
    return [[max(0.0, at - max(stat.ci_low, floor))], [max(0.0, stat.ci_high - at)]]


def figure_title(board: Board) -> str:
    """The board's title, with one short line per mark its rows carry."""
    lines = [shown(board.title)]
    if board.weak_original:
        why = shown(", ".join(WEAK_SHORT.get(r, r) for r in board.weak_reasons))
        lines.append(f"{WEAK_MARK} weak original ({why}): numbers are noise (docs/protocols.md)")
    if board.no_op_rows:
        names = shown(", ".join(r.method for r in board.no_op_rows))
        lines.append(f"{NO_OP_MARK} no-op (model = original; never best): {names}")
    return "\n".join(lines)


def plot_boards(boards: list[Board], path: Path, *, ci: bool = False) -> Path:
    """The boards' figure, written to ``path`` (checked first: nothing is drawn for a path refused)."""
    return _save(board_figure(boards, ci=ci), figure_path(path))


def board_figure(boards: list[Board], *, ci: bool = False) -> Any:
    """Per board, Avg Gap against its cost metric and bars of the Average-Gap metrics; error bars
    are ± std over seeds, or with ``ci`` 95 % t-intervals (the per-seed gap's on the y axis)."""
    plt = _pyplot()
    colours = method_colours(boards)
    n = max(1, len(boards))
    fig, axes = plt.subplots(n, 2, figsize=(14, 4.2 * n), squeeze=False)
    for board, (ax_gap, ax_bar) in zip(boards, axes):
        cost = board.cost_metric or ""
        for r in (r for r in board.rows if not r.reference):
            t = r.metrics.get(cost)
            if t is None or math.isnan(r.avg_gap) or math.isnan(t.mean):
                continue
            x = max(t.mean, 1e-3)
            ax_gap.errorbar(
                x,
                r.avg_gap,
                xerr=error_bar(t, x, ci=ci, floor=1e-3),
                yerr=error_bar(r.avg_gap_per_seed, r.avg_gap, ci=ci, floor=0.0),  # a gap is never negative
                fmt="o",
                capsize=3,
                color=colours[r.method],
            )
            label = shown(row_label(r, ci=ci))
            ax_gap.annotate(label, (x, r.avg_gap), textcoords="offset points", xytext=(4, 4), fontsize=8)
        gold = board.retrained
        if gold is not None and cost in gold.metrics and not math.isnan(gold.metrics[cost].mean):
            ax_gap.axvline(gold.metrics[cost].mean, color="grey", linestyle="--", linewidth=1)
            ax_gap.annotate("retrained model", (gold.metrics[cost].mean, 0), fontsize=7, color="grey")
        ax_gap.set_xscale("log")
        ax_gap.set_xlabel(f"{cost or 'cost'} (log)")
        ax_gap.set_ylabel("Avg Gap to retrain (lower is better)")
        ax_gap.set_title(figure_title(board), fontsize=9)
        ax_gap.grid(alpha=0.3)
        metrics = board.gap_metrics
        width = 0.8 / max(1, len(board.rows))
        for i, r in enumerate(board.rows):
            xs = [j + i * width for j in range(len(metrics))]
            means = [r.metrics[m].mean if m in r.metrics else float("nan") for m in metrics]
            errs = [_bar_half(r.metrics[m], ci=ci) if m in r.metrics else 0.0 for m in metrics]
            ax_bar.bar(
                xs, means, width, yerr=errs, capsize=2, label=shown(row_label(r, ci=ci)), color=colours[r.method]
            )
        ax_bar.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics)
        ax_bar.set_ylim(0, 1.05)
        ax_bar.set_title("mean, 95 % t-interval over seeds" if ci else "mean ± std over seeds", fontsize=9)
        ax_bar.legend(fontsize=7, ncol=2)
    return fig


def _bar_half(stat: Stat, *, ci: bool) -> float:
    """A bar's symmetric error: the interval's half-width with ``ci``, else the std (0: none)."""
    return _nan_to_zero(stat.half_width if ci else stat.std)


def plot_series(series: dict[str, list[tuple[int, float]]], title: str, path: Path) -> Path:
    """One panel per series (e.g. train_loss, lotus_tau): value against epoch."""
    path = figure_path(path)  # before anything is drawn
    plt = _pyplot()
    names = sorted(series)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        steps, values = zip(*series[name]) if series[name] else ((), ())
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_title(shown(name), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(shown(title), fontsize=10)
    return _save(fig, path)


PATH_CHARS = 200  # how much of a figure path an error line repeats (a path is often past ECHO_CHARS)


def figure_formats() -> list[str]:
    """The file extensions matplotlib writes a figure as (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def figure_path(path: Path) -> Path:
    """``path`` checked as where a figure goes, before anything is read or drawn: a file, not a folder,
    whose extension is a format matplotlib writes, in a folder that is there or can be made. Given no
    extension, matplotlib adds ``.png`` (``--plot board`` wrote board.png, ``--plot ''`` a hidden
    ``.png``), so the figure was not where the message said; a path under a file
    (``notes.txt/board.png``) was found out only when the figure was drawn, after a whole sweep."""
    path = Path(path)
    formats = figure_formats()
    if path.is_dir() or not path.name:
        raise ConfigError(f"Figure path '{shorten(path, PATH_CHARS)}' is a folder: name a file in it, e.g. board.png.")
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"the extension '.{shorten(suffix)}'" if suffix else "no extension"
        raise ConfigError(
            f"Figure path '{shorten(path, PATH_CHARS)}' has {what}. Valid extensions: {', '.join(formats)}."
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # missing folders are made when the figure is written
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(
            f"Cannot write the figure to '{shorten(path, PATH_CHARS)}': '{shorten(folder, PATH_CHARS)}' is a file, "
            "not a folder."
        )
    if not os.access(folder, os.W_OK):
        raise ConfigError(
            f"Cannot write the figure to '{shorten(path, PATH_CHARS)}': the folder '{shorten(folder, PATH_CHARS)}' "
            "is not writable."
        )
    return path


def not_written(path: Path) -> Callable[[BaseException], UnlearnkitError]:
    """The one line for a figure that could not be written there: a full disk as such, else why."""

    def translate(err: BaseException) -> UnlearnkitError:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return disk_full(err) or ConfigError(f"Cannot write the figure to '{shorten(path, PATH_CHARS)}': {why}.")

    return translate


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` (checked by :func:`figure_path`) under a temporary name beside it, then
    moved into place: a figure interrupted midway never leaves half an image where an earlier one was."""
    plt = _pyplot()
    try:
        fig.tight_layout()
        with translated(OSError, not_written(path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
            try:
                fig.savefig(partial, dpi=110, format=path.suffix.lower().lstrip("."))
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
    finally:
        plt.close(fig)
    return path
