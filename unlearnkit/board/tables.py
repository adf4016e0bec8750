"""Leaderboards as cells: values formatted the paper's way, the best per column marked, and the
same content as markdown, CSV or JSON. No printing here; the CLI renders.

Columns come from the metric plugins' declarations: their order (``display_order``), scale
(JSD-type values x1e4) and whether the terminal shows them by default. A std is shown only over
two or more seeds, and "best" is marked only when two or more methods compete. With ``ci`` the
cells show 95 % t-intervals instead (:class:`Stat`) and rows not separated from the leader on the
sort column are marked ≈ (:meth:`Board.mark_overlaps`); CSV and JSON always carry both.
"""

from __future__ import annotations

import csv
import io
import json
import math

from unlearnkit.board.leaderboard import AUDIT_INFO, AUDIT_MARK, Board, MetricInfo, Row, Stat
from unlearnkit.errors import written_out

WEAK_MARK = "†"
WEAK_WHY = {
    "memorisation": "it has not memorised D_f (forget accuracy not clearly above unseen accuracy)",
    "learning": "it has not learnt its training data (retain accuracy under the bar, 0.9 unless the run declared one)",
}
WEAK_SHORT = {"memorisation": "D_f not memorised", "learning": "retain accuracy under the bar"}
NO_OP_MARK = "∅"
NO_OP_NOTE = (
    f"{NO_OP_MARK} no-op: the unlearned model is indistinguishable from the original (same weights, or the same "
    "predictions and probabilities on every split) on some seed, so its numbers are the original's: never marked best."
)
AUDIT_NOTE = (
    f"{AUDIT_MARK} U-LiRA under-powered: the original row is not clearly above the retrain row (too few shadows or "
    "too short training), so its numbers say nothing about privacy and are not ranked (docs/audit.md)."
)
OVERLAP_MARK = "≈"
PARTIAL_NOTE = (
    "(k/n): over k of the row's n seeds; the value is missing on the others (not stored there, e.g. NaN), so that "
    "mean and std are of fewer seeds than the row's."
)
GAP_INFO = MetricInfo("lower")  # how the per-seed Average Gap is shown: unscaled, three decimals
FIXED_HEAD = ("method", "access", "seeds")


def columns(board: Board, info: dict[str, MetricInfo], chosen: list[str] | None = None) -> list[str]:
    """Registered metrics present on the board, in their declared order; ``chosen`` restricts them
    (in the order given), ``["default"]`` keeps the plugins' default set."""
    present = [m for m in board.metric_names if m in info]
    ordered = sorted(present, key=lambda m: (info[m].order, m))
    if chosen is None:
        return ordered
    if chosen == ["default"]:
        return [m for m in ordered if info[m].default]
    return [m for m in chosen if m in present]


def header(name: str, info: MetricInfo) -> str:
    return f"{name} x1e4" if info.scale == 1e4 else (name if info.scale == 1 else f"{name} x{info.scale:g}")


# No metric a board shows comes near this; a store's value past it (MLflow keeps inf as 1.8e308) is shown
# in exponent form, so one such run does not widen a column to 309 digits and cut every method name off.
HUGE = 1e15


def shown_digits(value: float, digits: int, compact: bool) -> int:
    """Decimals for ``value``: ``compact`` (the terminal) keeps four significant digits at most."""
    if not compact or not math.isfinite(value):
        return digits
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    return max(0, min(digits - 1, 3 - magnitude))


def number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; in exponent form past :data:`HUGE` (or inf)."""
    return f"{value:.{digits}f}" if abs(value) < HUGE else f"{value:.3g}"


def fmt(mean: float, std: float | None, scale: float, digits: int = 3, *, compact: bool = False) -> str:
    """``mean ± std`` (the std only over two or more seeds). ``compact`` (the terminal): four
    significant digits at most (``0.93``, ``12.35``, ``465.1``, ``1259``), no spaces around ±."""
    if math.isnan(mean):
        return "—"
    value = mean * scale
    digits = shown_digits(value, digits, compact)
    text = number(value, digits)
    if std is None or math.isnan(std):
        return text
    sep = "±" if compact else " ± "
    return f"{text}{sep}{number(std * scale, digits)}"


def fmt_ci(stat: Stat, scale: float, digits: int = 3, *, compact: bool = False) -> str:
    """``mean [low, high]``, the 95 % t-interval over seeds (only over two or more, like the std);
    the bounds get the mean's decimals. ``compact``: no spaces (``0.91[0.89,0.93]``)."""
    if math.isnan(stat.mean):
        return "—"
    value = stat.mean * scale
    digits = shown_digits(value, digits, compact)
    text = number(value, digits)
    if not stat.has_interval:
        return text
    low, high = number(stat.ci_low * scale, digits), number(stat.ci_high * scale, digits)
    return f"{text}[{low},{high}]" if compact else f"{text} [{low}, {high}]"


def stat_text(stat: Stat, info: MetricInfo, *, compact: bool, ci: bool) -> str:
    """A metric cell: the interval with ``ci``, else mean ± std."""
    if ci:
        return fmt_ci(stat, info.scale, info.digits, compact=compact)
    return fmt(stat.mean, stat.std, info.scale, info.digits, compact=compact)


def weak_note(board: Board) -> str:
    """The footnote of a board with a weak original: which rule failed and what it means."""
    why = "; ".join(WEAK_WHY.get(r, r) for r in board.weak_reasons) or WEAK_WHY["memorisation"]
    return (
        f"{WEAK_MARK} weak original on some seed (docs/protocols.md): {why}. Unlearning numbers there are noise: "
        "train the original longer, on a smaller subset or with a larger model."
    )


def seeds_of(row: Row, name: str) -> int | None:
    """How many of ``row``'s seeds a metric's cell is over, where that is fewer than the row's (a value
    missing on some seed); None where it is over all of them. Audit and ensemble columns have their own
    seeds (audit seeds, one ensemble), so they are never counted against the row's."""
    stat = row.metrics.get(name)
    if stat is None or name in AUDIT_INFO or stat.interval is not None:
        return None
    return stat.n if 0 < stat.n < len(row.seeds) else None


def gap_seeds(row: Row, board: Board) -> int | None:
    """How many seeds the row's per-seed Average Gap is over, where fewer than the row's; None otherwise."""
    n = row.avg_gap_per_seed.n
    return n if 0 < n < len(row.seeds) and board.retrained is not None else None


def partial(text: str, n: int | None, row: Row) -> str:
    """A cell over fewer seeds than its row's says over how many: ``0.52±0.01 (2/3)``."""
    return text if n is None or text == "—" else f"{text} ({n}/{len(row.seeds)})"


def partial_rows(board: Board, info: dict[str, MetricInfo]) -> bool:
    """Whether some cell of the board is over fewer seeds than its row (the note then says what that means)."""
    return any(seeds_of(r, m) is not None for r in board.rows for m in r.metrics if m in info) or any(
        gap_seeds(r, board) is not None for r in board.rows
    )


def notes(board: Board, info: dict[str, MetricInfo] | None = None) -> list[str]:
    """The footnotes a board's marks need, in the order the marks can appear."""
    out = []
    if info is not None and partial_rows(board, info):
        out.append(PARTIAL_NOTE)
    if board.weak_original:
        out.append(weak_note(board))
    if board.no_op_rows:
        out.append(NO_OP_NOTE)
    if board.audit_underpowered:
        out.append(AUDIT_NOTE)
    return out


def sort_label(board: Board, info: dict[str, MetricInfo]) -> str:
    """The column the overlap flags are about, as the tables head it."""
    if board.sort == "avg_gap":
        return "avg gap (per seed)"
    return header(board.sort, info[board.sort]) if board.sort in info else board.sort


def ci_notes(board: Board, info: dict[str, MetricInfo]) -> list[str]:
    """What ≈ means on this board, and which rows the overlap test could not decide (one seed)."""
    if not board.leader:
        return []
    label = sort_label(board, info)
    others = [r for r in board.rows if not r.reference and r.method != board.leader]
    out = []
    if any(r.overlaps_best for r in others):
        out.append(
            f"{OVERLAP_MARK} not separated from the leader {board.leader} at 95 % on {label}: their t-intervals over "
            "seeds overlap, so the ranking there is not resolved."
        )
    undecided = [r.method for r in others if r.overlaps_best is None]
    if undecided:
        out.append(f"Not compared with {board.leader} on {label} (one seed or no value): {', '.join(undecided)}.")
    return out


def row_label(row: Row, *, ci: bool = False) -> str:
    """A row's method name with its marks: † weak original, ∅ no-op and, with ``ci``, ≈ not
    separated from the leader on the sort column."""
    marks = (WEAK_MARK if row.weak_original else "") + (NO_OP_MARK if row.no_op and not row.reference else "")
    marks += OVERLAP_MARK if ci and row.overlaps_best else ""
    return f"{row.method} {marks}" if marks else row.method


def competitors(board: Board) -> list[Row]:
    """The rows that may be marked best: methods (not references) that changed the original."""
    return [r for r in board.rows if not r.reference and not r.no_op]


def best_rows(board: Board, metric: str, info: MetricInfo) -> set[str]:
    """Methods (not references) best on ``metric`` under its direction; none unless two compete."""
    retrained = board.retrained
    scored = []
    for row in competitors(board):
        if metric not in row.metrics or math.isnan(row.metrics[metric].mean):
            continue
        value = row.metrics[metric].mean
        if info.direction == "closer_to_retrain":
            if retrained is None or metric not in retrained.metrics:
                continue
            score = abs(value - retrained.metrics[metric].mean)
        else:
            score = -value if info.direction == "higher" else value
        scored.append((score, row.method))
    if len(scored) < 2:
        return set()
    top = min(s for s, _ in scored)
    return {m for s, m in scored if math.isclose(s, top, rel_tol=1e-9, abs_tol=1e-12)}


def best_gap(board: Board) -> set[str]:
    gaps = [(r.avg_gap, r.method) for r in competitors(board) if not math.isnan(r.avg_gap)]
    if len(gaps) < 2:
        return set()
    top = min(g for g, _ in gaps)
    return {m for g, m in gaps if math.isclose(g, top, abs_tol=1e-12)}


def board_cells(
    board: Board, info: dict[str, MetricInfo], chosen: list[str] | None = None, *, wide: bool = True, ci: bool = False
) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of (text, is_best) cells. ``wide`` (files, ``--wide``) adds the data access,
    the per-seed gap and the package; otherwise values are compact (the terminal's 120 columns).
    ``ci``: 95 % intervals instead of ± std, ≈ on rows not separated from the leader, and the
    per-seed gap even when compact if the board is sorted by the Average Gap (the ≈ is about it)."""
    cols = columns(board, info, chosen)
    fixed = FIXED_HEAD if wide else tuple(h for h in FIXED_HEAD if h != "access")
    head = [*fixed, *[header(c, info[c]) for c in cols], "avg gap"]
    per_seed = wide or (ci and board.sort == "avg_gap")
    if per_seed:
        head.append("avg gap (per seed)")
    if wide:
        head.append("package")
    marked = {c for c in cols if c in AUDIT_INFO and board.audit_underpowered}
    bests = {c: set() if c in marked else best_rows(board, c, info[c]) for c in cols}
    gap_best = best_gap(board)
    rows = []
    for row in board.rows:
        label = row_label(row, ci=ci)
        cells: list[tuple[str, bool]] = [(label, False), (row.access, False), (str(len(row.seeds)), False)]
        if not wide:
            del cells[1]
        for c in cols:
            stat = row.metrics.get(c)
            text = stat_text(stat, info[c], compact=not wide, ci=ci) if stat else "—"
            if c in marked and text != "—":
                text += AUDIT_MARK
            cells.append((partial(text, seeds_of(row, c), row), row.method in bests[c]))
        cells.append((fmt(row.avg_gap, None, 1.0, compact=not wide), row.method in gap_best))
        if per_seed:
            gap_text = stat_text(row.avg_gap_per_seed, GAP_INFO, compact=not wide, ci=ci)
            cells.append((partial(gap_text, gap_seeds(row, board), row), False))
        if wide:
            cells.append((f"{row.package} {row.version}".strip(), False))
        rows.append(cells)
    return head, rows


def md_text(text: str) -> str:
    """Store text (a method, dataset or grid label) as markdown that shows it as written: a ``|`` would
    split a table cell (``\\|`` too: the backslash escapes, the pipe splits), a line break end the row,
    ``<`` open raw HTML (``<script>``, which a docs site renders as it is) and ``](`` make a link. No name
    unlearnkit writes holds any of them."""
    flat = written_out(" ".join(text.splitlines())).replace("\\", "\\\\")
    return flat.replace("|", "\\|").replace("<", "&lt;").replace("](", "]\\(")


def to_markdown(
    boards: list[Board], info: dict[str, MetricInfo], chosen: list[str] | None = None, *, ci: bool = False
) -> str:
    parts = []
    for board in boards:
        head, rows = board_cells(board, info, chosen, ci=ci)
        lines = [f"### {md_text(board.title)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for cells in rows:
            lines.append("| " + " | ".join(f"**{md_text(t)}**" if b else md_text(t) for t, b in cells) + " |")
        for note in notes(board, info) + (ci_notes(board, info) if ci else []):
            lines += ["", md_text(note)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads a cell as a formula by


def csv_text(value: object) -> object:
    """A CSV cell that a spreadsheet shows as written: store text starting like a formula
    (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) gets a leading ``'``, so opening the file runs nothing.
    Numbers pass unchanged; no name unlearnkit writes starts so."""
    if not isinstance(value, str):
        return value
    text = written_out(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def flag(value: bool | None) -> str:
    """A tri-state flag for CSV: True, False or empty (not compared)."""
    return "" if value is None else str(value)


def to_csv(boards: list[Board], info: dict[str, MetricInfo]) -> str:
    """One line per row and metric. The interval bounds (empty with one seed), the sort column and
    the row's overlap flag on it (empty: not compared) come last, so older readers keep their columns;
    after them, on a U-LiRA number, whether its audit was under-powered (the table's ‡; empty elsewhere)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "dataset",
            "model",
            "scenario",
            "train_recipe",
            "subset",
            "protocol",
            "method",
            "access",
            "seeds",
            "metric",
            "mean",
            "std",
            "n",
            "weak_original",
            "weak_original_reason",
            "no_op",
            "ci_low",
            "ci_high",
            "ranked_by",
            "overlaps_best",
            "audit_underpowered",
        ]
    )
    for board in boards:
        for row in board.rows:
            text = [board.dataset, board.model, board.scenario, board.train_recipe, board.subset, board.protocol]
            base = [*(csv_text(t) for t in (*text, row.method, row.access)), len(row.seeds)]
            marks = [row.weak_original, csv_text("+".join(row.weak_reasons)), row.no_op]
            rank = [board.sort, flag(row.overlaps_best)]
            for name in columns(board, info):
                s = row.metrics.get(name)
                if s:
                    audit = [board.audit_underpowered if name in AUDIT_INFO else ""]
                    writer.writerow([*base, name, s.mean, s.std, s.n, *marks, *bounds(s), *rank, *audit])
            writer.writerow([*base, "avg_gap", row.avg_gap, "", len(row.seeds), *marks, "", "", *rank, ""])
            g = row.avg_gap_per_seed
            writer.writerow([*base, "avg_gap_per_seed", g.mean, g.std, g.n, *marks, *bounds(g), *rank, ""])
    return buf.getvalue()


def bounds(stat: Stat) -> list[float | str]:
    """The interval's bounds for CSV; empty cells where there is none (one seed)."""
    return [stat.ci_low, stat.ci_high] if stat.has_interval else ["", ""]


def clean(x: float) -> float | None:
    """JSON has no NaN and no infinity (json.dumps would write ``Infinity``, which readers refuse): null."""
    return x if math.isfinite(x) else None


def stat_json(stat: Stat) -> dict:
    return {
        "mean": clean(stat.mean),
        "std": clean(stat.std),
        "n": stat.n,
        "ci_low": clean(stat.ci_low),
        "ci_high": clean(stat.ci_high),
    }


def row_json(row: Row) -> dict:
    return {
        "method": row.method,
        "access": row.access,
        "role": row.role or None,
        "package": row.package,
        "version": row.version,
        "seeds": row.seeds,
        "weak_original": row.weak_original,
        "weak_original_reason": row.weak_reasons,
        "no_op": row.no_op,
        "no_op_seeds": row.no_op_seeds,
        "avg_gap": clean(row.avg_gap),
        "avg_gap_per_seed": stat_json(row.avg_gap_per_seed),
        "metrics": {k: stat_json(s) for k, s in row.metrics.items()},
        "overlaps_best": row.overlaps_best,
    }


def to_json(boards: list[Board]) -> str:
    return json.dumps(
        [
            {
                "benchmark": b.benchmark,
                "dataset": b.dataset,
                "model": b.model,
                "scenario": b.scenario,
                "train_recipe": b.train_recipe,
                "subset": b.subset,
                "protocol": b.protocol,
                "eval_draw": b.eval_draw,
                "audit": b.audit or None,
                "audit_underpowered": b.audit_underpowered,
                "confidence": Stat.CONFIDENCE,
                "ranked_by": b.sort,
                "leader": b.leader or None,
                "rows": [row_json(r) for r in b.rows],
            }
            for b in boards
        ],
        indent=2,
    )
