"""95 % t-intervals over seeds on the leaderboard, and the flag on rows not separated from the leader.

The intervals are checked against hand-computed values (t quantiles from tables, not from scipy), the
flag on boards built from records and from a real store, and ``--ci`` through the command as a reader
runs it, in the terminal, markdown, CSV and JSON, and as error bars on the figure.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from tests.board_runs import run_tags
from unlearnkit.board import tables
from unlearnkit.board.leaderboard import Board, MetricInfo, Stat, build_boards
from unlearnkit.store.mlflow_store import RunRecord, Store, tag

T975 = {1: 12.706205, 2: 4.302653, 4: 2.776445}  # t_{0.975, df} from a table
GAP = ("acc_forget", "acc_retain", "acc_test", "mia")
INFO = {m: MetricInfo("closer_to_retrain", in_avg_gap=True) for m in GAP}
SAME = {"acc_retain": 0.9, "acc_test": 0.8, "mia": 0.6}  # every row equal: the gaps come from acc_forget
# acc_forget per seed. Per-seed gaps (|Δ acc_forget| / 4): a 0, .0025, .005; b .005, .0075, .0025 (overlaps a);
# c .075, .0775, .08 (well clear of a). The ranking a < b < c holds on avg_gap and on acc_forget alike.
FORGET = {
    "retrain": (0.50, 0.50, 0.50),
    "original": (0.90, 0.90, 0.90),
    "a": (0.50, 0.51, 0.52),
    "b": (0.52, 0.53, 0.51),
    "c": (0.80, 0.81, 0.82),
}


def records(forget: dict[str, tuple[float, ...]] = FORGET) -> list[RunRecord]:
    return [
        RunRecord(f"{m}{s}", "FINISHED", s, run_tags(m, s), metrics={"acc_forget": v, **SAME})
        for m, values in forget.items()
        for s, v in enumerate(values, start=1)
    ]


def rows_of(board: Board) -> dict[str, object]:
    return {r.method: r.overlaps_best for r in board.rows}


# ------------------------------------------------------------------------------------- the interval
def test_interval_is_student_t_over_seeds_by_hand():
    s = Stat.of([1.0, 2.0, 3.0])  # mean 2, s 1
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.half_width == pytest.approx(T975[2] / math.sqrt(3), rel=1e-6)  # 2.48414
    assert (s.ci_low, s.ci_high) == pytest.approx((2 - 2.484138, 2 + 2.484138), rel=1e-6)
    two = Stat.of([1.0, 3.0])  # s = √2, so the half-width is t_{0.975,1} itself
    assert two.half_width == pytest.approx(T975[1], rel=1e-6)
    five = Stat.of([0.90, 0.91, 0.92, 0.93, 0.94])  # s = 0.0158114
    assert five.half_width == pytest.approx(T975[4] * 0.0158114 / math.sqrt(5), rel=1e-5)
    assert five.half_width > 1.96 * five.std / math.sqrt(5)  # not the normal approximation


def test_one_seed_has_no_interval_and_is_not_compared():
    for one in (Stat.of([0.7]), Stat.of([0.7, math.nan]), Stat.of([])):
        assert math.isnan(one.half_width) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
        assert one.overlaps(Stat.of([0.6, 0.7, 0.8])) is None and Stat.of([0.6, 0.7]).overlaps(one) is None


def test_overlap_uses_t_not_the_normal_width():
    low, high = Stat.of([-1.0, 0.0, 1.0]), Stat.of([2.0, 3.0, 4.0])  # ±1.13 at 1.96 s/√n: apart; ±2.48 at t: not
    assert low.overlaps(high) is True and high.overlaps(low) is True
    assert low.overlaps(Stat.of([9.0, 10.0, 11.0])) is False
    assert Stat.of([1.0, 1.0]).overlaps(Stat.of([1.0, 1.0])) is True  # zero spread, equal: the same point
    assert Stat.of([1.0, 1.0]).overlaps(Stat.of([2.0, 2.0])) is False


# ------------------------------------------------------------------------------------- the flag
@pytest.mark.parametrize("sort", ["avg_gap", "acc_forget"])
def test_rows_overlapping_the_leader_are_flagged_separated_ones_not(sort):
    (board,) = build_boards(records(), INFO, sort=sort)
    assert [r.method for r in board.rows] == ["original", "retrain", "a", "b", "c"]
    assert board.leader == "a" and board.sort == sort
    assert rows_of(board) == {"original": None, "retrain": None, "a": None, "b": True, "c": False}
    b, a = (next(r for r in board.rows if r.method == m) for m in "ba")
    assert b.sort_stat(sort).ci_low <= a.sort_stat(sort).ci_high  # the flag agrees with the numbers
    (gap,) = build_boards(records(), INFO)
    assert next(r for r in gap.rows if r.method == "c").avg_gap_per_seed.ci_low > 0.06  # per-seed gap interval


def test_the_leader_is_the_top_ranked_method_never_a_no_op_nor_a_reference():
    recs = records({**FORGET, "keep": (0.50, 0.50, 0.50)})  # the best gap of all, but a no-op
    for rec in recs:
        if rec.tag("method") == "keep":
            rec.tags[tag("no_op")] = "weights"
    (board,) = build_boards(recs, INFO)
    assert board.leader == "a" and rows_of(board)["keep"] is True and rows_of(board)["c"] is False


def test_one_seed_rows_are_not_compared_and_the_note_says_so():
    (board,) = build_boards(records({**FORGET, "d": (0.51,)}), INFO)
    assert rows_of(board)["d"] is None and rows_of(board)["b"] is True
    notes = tables.ci_notes(board, INFO)
    assert notes[0].startswith("≈ not separated from the leader a at 95 % on avg gap (per seed)")
    assert notes[1] == "Not compared with a on avg gap (per seed) (one seed or no value): d."
    (single,) = build_boards(records({m: v[:1] for m, v in FORGET.items()}), INFO)
    assert single.leader == "a" and all(r.overlaps_best is None for r in single.rows)
    assert not any(n.startswith("≈") for n in tables.ci_notes(single, INFO))


def test_cells_show_intervals_and_the_mark_only_with_ci():
    (board,) = build_boards(records(), INFO, sort="acc_forget")
    head, cells = tables.board_cells(board, INFO, ["acc_forget"], wide=False, ci=True)
    by = {row.method: row_cells for row, row_cells in zip(board.rows, cells)}
    assert by["b"][0][0] == "b ≈" and by["c"][0][0] == "c" and by["a"][0][0] == "a"
    assert by["a"][head.index("acc_forget")][0] == "0.51[0.49,0.53]"  # 0.51 ± 4.3027 · 0.01 / √3 = ± 0.0248
    assert "avg gap (per seed)" not in head  # sorted by a metric: the per-seed gap is not what ≈ is about
    head, cells = tables.board_cells(board, INFO, ["acc_forget"], ci=True)
    assert cells[2][head.index("acc_forget")][0] == "0.510 [0.485, 0.535]"
    assert cells[2][head.index("avg gap (per seed)")][0] == "0.003 [-0.004, 0.009]"
    head, plain = tables.board_cells(board, INFO, ["acc_forget"], wide=False)
    assert plain[3][0][0] == "b" and plain[2][head.index("acc_forget")][0] == "0.51±0.01"  # without ci: as before


# ------------------------------------------------------------------------------------- the command
def fill_store() -> None:
    """The boards above as a real store: finished runs, as the runner logs them."""
    store = Store()
    store.check()
    for method, values in FORGET.items():
        for seed, value in enumerate(values, start=1):
            run = store.start_run(method, run_tags(method, seed), {})
            store.log_metrics(run, {"acc_forget": value, **SAME})
            store.finish(run)


def table_rows(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in FORGET}


def test_cli_ci_prints_intervals_and_flags_unresolved_rows(host, cli):
    fill_store()
    code, out, err = cli("leaderboard", "--ci", "--columns", "acc_forget")
    assert code == 0, err
    rows = table_rows(out)
    assert "b ≈" in rows["b"] and "≈" not in rows["a"] + rows["c"] + rows["retrain"] + rows["original"]
    assert "0.51[0.49,0.53]" in rows["a"] and "±" not in out
    assert "avg gap (per seed)" in out  # sorted by avg_gap: the interval the flag compares is on screen
    flat = " ".join(out.split())
    assert "≈ not separated from the leader a at 95 % on avg gap (per seed)" in flat
    assert "mean [95 % t-interval] over seeds" in flat
    code, out, _ = cli("leaderboard", "--columns", "acc_forget")
    assert code == 0 and "≈" not in out and "0.51±0.01" in out and "[" not in table_rows(out)["a"]


def test_cli_ci_table_is_never_cut_to_an_ellipsis(host, cli):
    fill_store()
    code, out, _ = cli("leaderboard", "--ci", "--wide")
    assert code == 0 and "…" not in out and "0.510 [0.485, 0.535]" in out


def test_cli_markdown_csv_json_carry_intervals_and_flag(host, cli):
    fill_store()
    code, out, _ = cli("leaderboard", "--ci", "--format", "markdown", "--sort", "acc_forget")
    assert code == 0 and "| b ≈ |" in out and "0.510 [0.485, 0.535]" in out
    assert "≈ not separated from the leader a at 95 % on acc_forget" in out

    code, out, _ = cli("leaderboard", "--format", "csv")  # scripts get them without --ci
    lines = list(csv.DictReader(io.StringIO(out)))
    af = {r["method"]: r for r in lines if r["metric"] == "acc_forget"}
    assert float(af["a"]["ci_low"]) == pytest.approx(0.51 - T975[2] * 0.01 / math.sqrt(3), rel=1e-5)
    assert float(af["a"]["ci_high"]) == pytest.approx(0.51 + T975[2] * 0.01 / math.sqrt(3), rel=1e-5)
    assert {r["method"]: r["overlaps_best"] for r in af.values()} == {
        "original": "",
        "retrain": "",
        "a": "",
        "b": "True",
        "c": "False",
    }
    assert {r["ranked_by"] for r in lines} == {"avg_gap"}
    per_seed = {r["method"]: r for r in lines if r["metric"] == "avg_gap_per_seed"}
    assert float(per_seed["c"]["ci_low"]) > float(per_seed["a"]["ci_high"])

    code, out, _ = cli("leaderboard", "--format", "json")
    (board,) = json.loads(out)
    assert (board["confidence"], board["ranked_by"], board["leader"]) == (0.95, "avg_gap", "a")
    rows = {r["method"]: r for r in board["rows"]}
    assert {m: r["overlaps_best"] for m, r in rows.items()} == {
        "original": None,
        "retrain": None,
        "a": None,
        "b": True,
        "c": False,
    }
    assert rows["a"]["metrics"]["acc_forget"]["ci_high"] == pytest.approx(float(af["a"]["ci_high"]))
    assert rows["retrain"]["metrics"]["acc_forget"]["ci_low"] == pytest.approx(0.5)  # zero spread: a point
    assert rows["b"]["avg_gap_per_seed"]["ci_low"] == pytest.approx(0.005 - T975[2] * 0.0025 / math.sqrt(3))


def test_sort_changes_the_leader_and_the_flags(host, cli):
    fill_store()
    code, out, _ = cli("leaderboard", "--format", "json", "--sort", "mia")  # every row ties on mia
    (board,) = json.loads(out)
    assert board["ranked_by"] == "mia" and board["leader"] == "a"
    assert {r["method"]: r["overlaps_best"] for r in board["rows"] if not r["role"]} == {
        "a": None,
        "b": True,
        "c": True,
    }


# ------------------------------------------------------------------------------------- the figure
def test_figure_draws_the_intervals_as_error_bars():
    from unlearnkit.board.plots import board_figure

    (board,) = build_boards(records(), INFO)
    a = next(r for r in board.rows if r.method == "a")
    for ci, expected in ((True, a.metrics["acc_forget"].half_width), (False, a.metrics["acc_forget"].std)):
        fig = board_figure([board], ci=ci)
        ax_bar = fig.axes[1]
        bars = [c for c in ax_bar.containers if c.get_label() == "a"]
        (segments,) = [c.errorbar.lines[2][0].get_segments() for c in bars]
        (_, low), (_, high) = segments[0]  # acc_forget is the first Average-Gap metric
        assert (high - low) / 2 == pytest.approx(expected)
        assert ("95 % t-interval" in ax_bar.get_title()) is ci


def test_figure_gap_axis_spans_the_per_seed_gap_interval():
    """The Avg Gap point comes from seed means, the interval from per-seed gaps: the bar runs from the
    interval's low bound (clipped at 0) to its high bound, not symmetrically around the point."""
    from unlearnkit.board.plots import board_figure

    info = {**INFO, "time_s": MetricInfo("lower", cost_axis=True)}
    recs = records()
    for rec in recs:
        rec.metrics["time_s"] = 10.0 + int(rec.tag("seed"))  # 11, 12, 13 s: interval 12 ± 2.48
    (board,) = build_boards(recs, info)
    ax_gap = board_figure([board], ci=True).axes[0]
    points = ax_gap.containers  # one error bar per method, in row order: a, b, c (references are not drawn)
    assert len(points) == 3
    for row, point in zip(board.rows[2:], points):
        (x_bar,), (y_bar,) = (col.get_segments() for col in point.lines[2])
        assert [x for x, _ in x_bar] == pytest.approx([12 - 2.484138, 12 + 2.484138], rel=1e-6)
        gap = row.avg_gap_per_seed
        assert [y for _, y in y_bar] == pytest.approx([max(gap.ci_low, 0.0), gap.ci_high], abs=1e-12)


def test_an_underpowered_audit_column_ranks_nothing():
    (board,) = build_boards(records(), INFO, sort="ulira_auc")
    for row, auc in zip(board.rows, (0.6, 0.5, 0.55, 0.56, 0.57)):
        row.metrics["ulira_auc"] = Stat.of([auc, auc + 0.01, auc + 0.02])
    board.mark_overlaps()
    assert board.leader == "a" and rows_of(board)["b"] is True
    board.audit_underpowered = True
    board.mark_overlaps()
    assert board.leader == "" and all(r.overlaps_best is None for r in board.rows)
    assert tables.ci_notes(board, INFO) == []
