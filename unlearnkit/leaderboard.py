"""Reads finished runs back from the store and aggregates them over seeds; never prints.

Per benchmark (dataset, model, forget scenario, training recipe, subset) there is one row per
method: mean ± std over seeds of every metric, the paper's Average Gap (from seed means, so no
std) and the per-seed Average Gap (gap to the same seed's retrained model, mean ± std).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from unlearnkit.store import RunRecord, Store

GAP_METRICS = ("mia", "acc_forget", "acc_retain", "acc_test")


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single seed
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        vals = [v for v in values if not math.isnan(v)]
        if not vals:
            return cls(float("nan"), float("nan"), 0)
        return cls(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))


@dataclass
class Row:
    method: str
    access: str
    package: str
    version: str
    reference: bool
    seeds: list[int]
    metrics: dict[str, Stat] = field(default_factory=dict)
    avg_gap: float = float("nan")
    avg_gap_per_seed: Stat = field(default_factory=lambda: Stat(float("nan"), float("nan"), 0))


@dataclass
class Board:
    benchmark: str
    dataset: str
    model: str
    scenario: str
    train_recipe: str
    subset: str
    rows: list[Row]
    metric_names: list[str]

    @property
    def title(self) -> str:
        extra = f", subset {self.subset}" if self.subset != "full" else ""
        return f"{self.dataset} / {self.model} / {self.scenario} (train: {self.train_recipe}{extra})"


def dedupe(records: list[RunRecord]) -> list[RunRecord]:
    """One run per config hash: the first finished wins (concurrent duplicates are ignored)."""
    seen: dict[str, RunRecord] = {}
    for rec in sorted(records, key=lambda r: r.start_time):
        seen.setdefault(rec.t("config_hash", rec.run_id), rec)
    return list(seen.values())


def gap(a: dict[str, float], b: dict[str, float]) -> float:
    """Mean absolute difference over the four Average-Gap metrics; NaN if one is missing."""
    diffs = [abs(a[m] - b[m]) for m in GAP_METRICS if m in a and m in b]
    return statistics.fmean(diffs) if len(diffs) == len(GAP_METRICS) else float("nan")


def build_boards(records: list[RunRecord], sort: str = "avg_gap") -> list[Board]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for rec in dedupe(records):
        groups[rec.t("benchmark")].append(rec)
    boards = []
    for bench, recs in groups.items():
        first = recs[0]
        per_method: dict[str, list[RunRecord]] = defaultdict(list)
        for rec in recs:
            per_method[row_name(rec)].append(rec)
        names = sorted({k for r in recs for k in r.metrics})
        retrain_by_seed = {r.t("seed"): r.metrics for r in per_method.get("retrain", [])}
        retrain_means = (
            {m: Stat.of([r.metrics.get(m, math.nan) for r in per_method["retrain"]]).mean for m in GAP_METRICS}
            if "retrain" in per_method
            else {}
        )
        rows = []
        for method, mrecs in per_method.items():
            stats = {m: Stat.of([r.metrics.get(m, math.nan) for r in mrecs]) for m in names}
            means = {m: s.mean for m, s in stats.items()}
            per_seed = [gap(r.metrics, retrain_by_seed[r.t("seed")]) for r in mrecs if r.t("seed") in retrain_by_seed]
            rows.append(
                Row(
                    method=method,
                    access=mrecs[0].t("access"),
                    package=mrecs[0].t("method.package"),
                    version=mrecs[0].t("method.version"),
                    reference=mrecs[0].t("reference") == "true",
                    seeds=sorted(int(r.t("seed", "0")) for r in mrecs),
                    metrics=stats,
                    avg_gap=gap(means, retrain_means) if retrain_means else float("nan"),
                    avg_gap_per_seed=Stat.of(per_seed),
                )
            )
        rows.sort(key=lambda r: row_sort_key(r, sort))
        boards.append(
            Board(
                bench,
                first.t("dataset"),
                first.t("model"),
                first.t("scenario"),
                first.t("train_recipe"),
                first.t("subset", "full"),
                rows,
                names,
            )
        )
    boards.sort(key=lambda b: (b.dataset, b.model, b.scenario, b.train_recipe, b.subset))
    return boards


def row_name(rec: RunRecord) -> str:
    """A method's row; recipe grid points get their own rows, e.g. ``lotus [lotus.alpha=8]``."""
    variant = rec.t("variant")
    return f"{rec.t('method')} [{variant}]" if variant else rec.t("method")


def in_recipe(board: Board, cells: set[tuple[str, str, str]], methods: set[str] | None) -> Board | None:
    """Keep a board only if it is a cell of the recipe; keep only the recipe's methods (and references)."""
    if (board.dataset, board.model, board.scenario) not in cells:
        return None
    if methods is not None and "all" not in methods:
        board.rows = [r for r in board.rows if r.reference or r.method.split(" [")[0] in methods]
    return board


def row_sort_key(row: Row, sort: str) -> tuple:
    ref_order = {"original": 0, "retrain": 1}.get(row.method, 2)
    if sort == "avg_gap":
        value = row.avg_gap
    elif sort in row.metrics:
        value = row.metrics[sort].mean
    else:
        value = math.nan
    return (ref_order, math.isnan(value), value, row.method)


def leaderboard(
    store: Store,
    *,
    dataset: str | None = None,
    model: str | None = None,
    scenario: str | None = None,
    access: str | None = None,
    sort: str = "avg_gap",
    recipe_cells: set[tuple[str, str, str]] | None = None,
    recipe_methods: set[str] | None = None,
) -> list[Board]:
    """Finished unlearning runs in the store, filtered by tag (or a recipe's grid), aggregated into boards."""
    filters = {"kind": "unlearn"}
    for key, value in (("dataset", dataset), ("model", model), ("scenario", scenario)):
        if value:
            filters[key] = value
    records = store.search(filters)
    if access:
        records = [r for r in records if r.t("access") == access or r.t("reference") == "true"]
    boards = build_boards(records, sort=sort)
    if recipe_cells is not None:
        boards = [b for b in (in_recipe(b, recipe_cells, recipe_methods) for b in boards) if b is not None]
    return boards
