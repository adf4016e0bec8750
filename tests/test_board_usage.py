"""The leaderboard as a researcher reads it: rows ranked best first under each sort column's direction,
the leader the overlap flags compare with agreeing with the column's best mark, and a cell over fewer
seeds than its row saying so. Boards are built from records shaped like the runner's."""

from __future__ import annotations

import math

import pytest

from tests.board_runs import run_tags
from unlearnkit.board import tables
from unlearnkit.board.leaderboard import Board, MetricInfo, Stat, build_boards
from unlearnkit.store.mlflow_store import RunRecord

GAP = ("acc_forget", "acc_retain", "acc_test", "mia")
INFO = {m: MetricInfo("closer_to_retrain", in_avg_gap=True, default=True) for m in GAP} | {
    "tow": MetricInfo("higher", default=True),
    "time_s": MetricInfo("lower", default=True, digits=2),
    "jsd": MetricInfo("lower", scale=1e4, default=True),
}
SEEDS = (1, 2, 3)


# method -> (acc_forget, tow, time_s) around which the seeds vary by +seed/1000 (+seed s for the time).
# Retrain's acc_forget is 0.5: b (0.55) is the closest, a (0.3) the farthest; tow: b highest, a lowest;
# time: c fastest. Ascending raw values would put a first on acc_forget and on tow, the worst on both.
ROWS = {
    "original": (0.9, 0.8, 0.0),
    "retrain": (0.5, 1.0, 100.0),
    "a": (0.3, 0.7, 5.0),
    "b": (0.55, 0.95, 3.0),
    "c": (0.7, 0.9, 1.0),
}


def metrics_of(method: str, seed: int) -> dict[str, float]:
    forget, tow, time_s = ROWS[method]
    return {
        "acc_forget": forget + seed / 1000,
        "acc_retain": 0.9,
        "acc_test": 0.8,
        "mia": 0.6,
        "tow": tow + seed / 1000,
        "time_s": time_s + seed,
        "jsd": 1e-4 * seed,
    }


def records(drop: dict[tuple[str, int], tuple[str, ...]] | None = None) -> list[RunRecord]:
    """Three seeds of every row of ROWS; ``drop``: (method, seed) -> metrics not stored on that run."""
    out = []
    for method in ROWS:
        for seed in SEEDS:
            metrics = metrics_of(method, seed)
            for name in (drop or {}).get((method, seed), ()):
                del metrics[name]
            out.append(RunRecord(f"{method}{seed}", "FINISHED", seed, run_tags(method, seed), {}, metrics))
    return out


def methods(board: Board) -> list[str]:
    return [r.method for r in board.rows if not r.reference]


# ------------------------------------------------------------------------------- sort direction
@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("avg_gap", ["b", "c", "a"]),  # lower first
        ("time_s", ["c", "b", "a"]),  # lower first
        ("tow", ["b", "c", "a"]),  # higher is better: highest first (it was lowest first: a led)
        ("acc_forget", ["b", "c", "a"]),  # closer to retrain's 0.5 first (it was the lowest accuracy: a led)
    ],
)
def test_rows_are_ranked_best_first_under_the_sort_columns_direction(sort, order):
    (board,) = build_boards(records(), INFO, sort=sort)
    assert [r.method for r in board.rows[:2]] == ["original", "retrain"]  # references stay on top
    assert methods(board) == order
    assert board.leader == order[0]
    if sort != "avg_gap":  # the leader is the row the column's green mark calls best
        assert tables.best_rows(board, sort, INFO[sort]) == {board.leader}


def test_a_closer_to_retrain_column_without_a_retrained_row_ranks_nothing():
    (board,) = build_boards([r for r in records() if r.tag("role") != "retrained"], INFO, sort="acc_forget")
    assert methods(board) == ["a", "b", "c"]  # by name: no target to be close to
    assert board.leader == "" and all(r.overlaps_best is None for r in board.rows)


def test_rows_either_side_of_the_retrained_value_equally_close_are_not_called_apart():
    """On a closer-to-retrain column the leader is the closest and ≈ compares distances to the target:
    0.45 and 0.55 around a retrain at 0.5 are equally good, though their raw intervals are disjoint."""
    recs = [r for r in records() if r.tag("method") in ("original", "retrain")]
    for method, forget in (("below", 0.45), ("above", 0.55), ("far", 0.8)):
        for seed in SEEDS:
            metrics = {**metrics_of("a", seed), "acc_forget": forget + seed / 1000}
            recs.append(RunRecord(f"{method}{seed}", "FINISHED", seed, run_tags(method, seed), {}, metrics))
    (board,) = build_boards(recs, INFO, sort="acc_forget")
    assert methods(board)[2] == "far"
    flags = {r.method: r.overlaps_best for r in board.rows}
    assert flags[board.leader] is None and flags["far"] is False
    other = ({"below", "above"} - {board.leader}).pop()
    assert flags[other] is True
    below, above = (next(r for r in board.rows if r.method == m).metrics["acc_forget"] for m in ("below", "above"))
    assert below.overlaps(above) is False  # the raw intervals alone would have called them apart


def test_distance_bounds_start_at_zero_where_the_interval_spans_the_target():
    from unlearnkit.board.leaderboard import distance_bounds

    stat = Stat.of([0.4, 0.5, 0.6])  # 0.5 ± 0.248
    low, high = distance_bounds(stat, 0.5)
    assert low == 0.0 and high == pytest.approx(stat.half_width)
    assert distance_bounds(stat, 2.0) == pytest.approx((2.0 - stat.ci_high, 2.0 - stat.ci_low))
    assert all(math.isnan(b) for b in distance_bounds(Stat.of([0.4]), 0.5))
    assert all(math.isnan(b) for b in distance_bounds(stat, math.nan))


# ------------------------------------------------------------------------ fewer seeds than the row
def test_a_cell_over_fewer_seeds_than_its_row_says_how_many_and_the_note_says_why():
    """Seed 3 of a has no jsd and no mia stored: its jsd mean is over seeds 1 and 2 (lower, so marked
    best) while its row says 3 seeds. The cell says (2/3), and so does its per-seed gap."""
    (board,) = build_boards(records({("a", 3): ("jsd", "mia")}), INFO)
    head, cells = tables.board_cells(board, INFO, ["jsd", "mia", "acc_forget"], wide=True)
    by = {row.method: dict(zip(head, (t for t, _ in row_cells))) for row, row_cells in zip(board.rows, cells)}
    assert by["a"]["jsd x1e4"] == "1.500 ± 0.707 (2/3)" and by["a"]["mia"] == "0.600 ± 0.000 (2/3)"
    assert by["a"]["acc_forget"] == "0.302 ± 0.001" and by["a"]["seeds"] == "3"
    assert by["a"]["avg gap (per seed)"].endswith(" (2/3)")
    assert not any(text.endswith("/3)") for m in ("b", "c", "retrain") for text in by[m].values())
    assert tables.PARTIAL_NOTE in tables.notes(board, INFO)
    (whole,) = build_boards(records(), INFO)
    assert tables.PARTIAL_NOTE not in tables.notes(whole, INFO)
    assert "(2/3)" in tables.to_markdown([board], INFO, ["jsd"]) and tables.PARTIAL_NOTE in tables.to_markdown(
        [board], INFO, ["jsd"]
    )


def test_cli_leaderboard_prints_the_fewer_seeds_note(cli):
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    store.check()
    for rec in records({("a", 3): ("jsd",)}):
        run = store.start_run(rec.run_id, rec.tags, {})
        store.log_metrics(run, rec.metrics)
        store.finish(run)
    code, out, err = cli("leaderboard", "--columns", "jsd,tow", "--sort", "tow")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert any(line.lstrip().startswith("a ") and "(2/3)" in line for line in lines), out
    assert "(k/n): over k of the row's n seeds" in " ".join(out.split())
    ranked = [line.split()[0] for line in lines if line.split()[0] in ("a", "b", "c")]
    assert ranked == ["b", "c", "a"]  # highest tow first
