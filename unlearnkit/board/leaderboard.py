"""Reads finished runs back from the store and aggregates them over seeds; never prints.

Per benchmark (dataset, model, forget scenario, training recipe, subset, evaluation protocol)
there is one row per method: mean ± std over seeds of every metric, the paper's Average Gap
(from seed means, so no std) and the per-seed Average Gap (gap to the same seed's retrained
model, mean ± std). Which metrics the Average Gap covers, their order, scale and direction are
declared by the metric plugins (:class:`MetricInfo`), never named here — except the three U-LiRA
columns, which come from ``unlearnkit audit`` runs (``run_type=audit``, docs/audit.md), not from a metric
plugin: they are merged onto the rows of the same benchmark and method (:func:`merge_audits`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from unlearnkit.api.scenarios import REQUESTS_MEAN_SUFFIX
from unlearnkit.api.types import ROLE_ORDER
from unlearnkit.discovery.registry import Registries
from unlearnkit.store.mlflow_store import RunRecord, Store

AUDIT_MARK = "‡"  # marks U-LiRA numbers of an under-powered audit (see tables.AUDIT_NOTE)


@dataclass(frozen=True)
class MetricInfo:
    """What a board needs to know about a metric, read from its plugin class."""

    direction: str  # "higher", "lower", "closer_to_retrain"
    scale: float = 1.0
    order: int = 1000
    default: bool = False  # in the terminal's default column set
    in_avg_gap: bool = False
    digits: int = 3
    cost_axis: bool = False


# The U-LiRA audit's columns: AUC and TPR at low FPR of the per-example likelihood-ratio attack, the sign of
# the difference (direction: mean scaled logit of forgotten minus never-seen examples; over_unlearned: share
# of forgotten examples below the never-seen median), the retained audit's AUC, and 95 % bootstrap bounds
# (_low/_high). Every one is "closer to retrain": it sits near chance (AUCs 0.5, direction 0, share 0.5), and
# a method off it either way leaks (a trace kept, or over-unlearning). Only the AUC is shown by default.
AUDIT_INFO = {
    "ulira_auc": MetricInfo("closer_to_retrain", order=62, default=True),
    "ulira_auc_low": MetricInfo("closer_to_retrain", order=63),
    "ulira_auc_high": MetricInfo("closer_to_retrain", order=64),
    "ulira_tpr_at_1fpr": MetricInfo("closer_to_retrain", order=65),
    "ulira_tpr_at_01fpr": MetricInfo("closer_to_retrain", order=66),
    "ulira_direction": MetricInfo("closer_to_retrain", order=67),
    "ulira_direction_low": MetricInfo("closer_to_retrain", order=68),
    "ulira_direction_high": MetricInfo("closer_to_retrain", order=69),
    "ulira_over_unlearned": MetricInfo("closer_to_retrain", order=70),
    "ulira_retained_auc": MetricInfo("closer_to_retrain", order=71),
    "ulira_retained_auc_low": MetricInfo("closer_to_retrain", order=72),
    "ulira_retained_auc_high": MetricInfo("closer_to_retrain", order=73),
}

# What each audit column is, for `unlearnkit list metrics` (bounds: the column's 95 % bootstrap interval).
AUDIT_SUMMARIES = {
    "ulira_auc": "U-LiRA AUC: forgotten vs never-seen examples on shadow models (closer to retrain, ~0.5).",
    "ulira_tpr_at_1fpr": "U-LiRA true-positive rate at 1 % false positives (closer to retrain).",
    "ulira_tpr_at_01fpr": "U-LiRA true-positive rate at 0.1 % false positives (closer to retrain).",
    "ulira_direction": "Mean scaled logit of forgotten minus never-seen examples: > 0 a trace, < 0 over-unlearning.",
    "ulira_over_unlearned": "Share of forgotten examples below the never-seen median (0.5: interchangeable).",
    "ulira_retained_auc": "U-LiRA AUC of retained vs never-seen examples: the privacy of what was kept.",
}


def metric_info(registries: Registries) -> dict[str, MetricInfo]:
    """Every registered metric's display declaration, plus the audit's columns."""
    own = {
        e.name: MetricInfo(
            e.cls.direction,
            e.cls.display_scale,
            e.cls.display_order,
            e.cls.shown_by_default,
            e.cls.in_avg_gap,
            e.cls.display_digits,
            e.cls.cost_axis,
        )
        for e in registries.metrics.entries()
    }
    # a sequential scenario's means over its requests: shown beside the metric, never in the Avg Gap
    means = {
        f"{name}{REQUESTS_MEAN_SUFFIX}": replace(info, in_avg_gap=False, cost_axis=False) for name, info in own.items()
    }
    return AUDIT_INFO | own | means


@dataclass(frozen=True)
class Stat:
    """A metric over seeds: mean, sample std and a two-sided 95 % Student-t interval for the mean.

    The interval is mean ± t_{0.975, n-1} · s / √n. With the few seeds a benchmark has (often 3), the
    normal approximation (± 1.96 s/√n) is far too narrow; t accounts for s itself being estimated from
    those seeds (t_{0.975, 2} = 4.30). It assumes roughly normal per-seed values. One seed has no
    interval (NaN bounds), just as it has no std.
    """

    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for a single seed
    n: int
    # An interval computed elsewhere (an ensemble score's bootstrap over examples) instead of the t-interval
    interval: tuple[float, float] | None = None

    CONFIDENCE = 0.95  # not a field: a class constant (no annotation)

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        """Over the finite values: a NaN is a missing value, and so is ±inf, which a shared store may hold
        (another writer, a bug) and which would make the mean infinite and mark its row best."""
        vals = [v for v in values if math.isfinite(v)]
        if not vals:
            return cls(float("nan"), float("nan"), 0)
        return cls(mean_of(vals), std_of(vals), len(vals))

    @property
    def half_width(self) -> float:
        """t_{0.975, n-1} · s / √n; NaN below two seeds (no spread to estimate)."""
        if self.n < 2 or math.isnan(self.std):
            return float("nan")
        from scipy import stats  # here, not at import: ``unlearnkit --help`` need not load scipy

        return float(stats.t.ppf(0.5 + self.CONFIDENCE / 2, self.n - 1)) * self.std / math.sqrt(self.n)

    @property
    def ci_low(self) -> float:
        return self.interval[0] if self.interval is not None else self.mean - self.half_width

    @property
    def ci_high(self) -> float:
        return self.interval[1] if self.interval is not None else self.mean + self.half_width

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))

    def overlaps(self, other: Stat) -> bool | None:
        """Whether the two intervals share a point; None when either has none (one seed): not decided."""
        bounds = (self.ci_low, self.ci_high, other.ci_low, other.ci_high)
        if any(math.isnan(b) for b in bounds):
            return None
        return self.ci_low <= other.ci_high and other.ci_low <= self.ci_high


def mean_of(values: list[float]) -> float:
    """The mean of finite values. Two runs at 1e308 overflow the sum (fmean raises): then it is summed
    as fractions of the mean, which cannot overflow."""
    try:
        return statistics.fmean(values)
    except OverflowError:
        return math.fsum(v / len(values) for v in values)


def std_of(values: list[float]) -> float:
    """The sample std of finite values; NaN for one; inf where it is past the largest float (1e308 and
    -1e308), which statistics.stdev raises on."""
    if len(values) < 2:
        return float("nan")
    try:
        return statistics.stdev(values)
    except OverflowError:
        return math.inf


@dataclass
class Row:
    method: str
    access: str
    package: str
    version: str
    role: str  # "original", "retrained" or "" (an unlearning method)
    seeds: list[int]
    metrics: dict[str, Stat] = field(default_factory=dict)
    avg_gap: float = float("nan")
    avg_gap_per_seed: Stat = field(default_factory=lambda: Stat(float("nan"), float("nan"), 0))
    weak_original: bool = False  # some seed's original fails the reference-quality rule (docs/protocols.md)
    weak_reasons: list[str] = field(default_factory=list)  # which rules: "learning", "memorisation"
    no_op_seeds: int = 0  # seeds whose unlearned model is indistinguishable from the original
    audit_seeds: list[int] = field(default_factory=list)  # seeds of the U-LiRA audits behind its ulira_* values
    # its 95 % interval on the board's sort column overlaps the leader's; None: not compared (Board.mark_overlaps)
    overlaps_best: bool | None = None

    @property
    def reference(self) -> bool:
        return bool(self.role)

    def sort_stat(self, sort: str) -> Stat | None:
        """The per-seed Stat behind the sort column. The Average Gap comes from seed means and has no
        spread, so on ``avg_gap`` the per-seed Average Gap's interval stands in for it."""
        return self.avg_gap_per_seed if sort == "avg_gap" else self.metrics.get(sort)

    @property
    def no_op(self) -> bool:
        """The method left the original as it was on some seed: its numbers are the original's there."""
        return self.no_op_seeds > 0


@dataclass
class Board:
    benchmark: str
    dataset: str
    model: str
    scenario: str
    train_recipe: str
    subset: str
    protocol: str
    rows: list[Row]
    metric_names: list[str]
    gap_metrics: list[str] = field(default_factory=list)
    cost_metric: str | None = None  # what the figure plots Avg Gap against (a metric declaring cost_axis)
    audit: str = ""  # the U-LiRA audit behind the ulira_* columns, e.g. "16 shadows, online"
    audit_underpowered: bool = False  # its original row was not clearly above its retrain row
    eval_draw: int = 0  # which draw of the paper protocol's random crops evaluated it (docs/reproducing.md)
    sort: str = "avg_gap"  # the column its rows are ranked by
    ensemble: str = ""  # the ensemble behind its ensemble-score columns, e.g. "8 members"
    leader: str = ""  # the top-ranked competing row on ``sort``, the one the overlap flags compare with
    direction: str = "lower"  # the sort column's (:func:`direction_of`): how its rows are ranked

    @classmethod
    def of(cls, benchmark: str, run: RunRecord, **fields: Any) -> Board:
        """A board for ``benchmark``, its heading read from the tags of one of its runs."""
        return cls(
            benchmark=benchmark,
            dataset=run.tag("dataset"),
            model=run.tag("model"),
            scenario=run.tag("scenario"),
            train_recipe=run.tag("train_recipe"),
            subset=run.tag("subset", "full"),
            protocol=run.tag("protocol", "clean"),
            eval_draw=int(run.tag("eval_draw") or 0),
            **{"rows": [], "metric_names": [], **fields},
        )

    @property
    def title(self) -> str:
        extra = f", subset {self.subset}" if self.subset != "full" else ""
        draw = f", eval draw {self.eval_draw}" if self.eval_draw else ""
        audit = ""
        if self.audit:
            audit = f"; U-LiRA: {self.audit}" + (f", under-powered {AUDIT_MARK}" if self.audit_underpowered else "")
        ensemble = f"; ensemble scores: {self.ensemble}" if self.ensemble else ""
        return (
            f"{self.dataset} / {self.model} / {self.scenario} "
            f"(train: {self.train_recipe}{extra}; protocol: {self.protocol}{draw}{audit}{ensemble})"
        )

    @property
    def retrained(self) -> Row | None:
        return next((r for r in self.rows if r.role == "retrained"), None)

    @property
    def weak_original(self) -> bool:
        return any(r.weak_original for r in self.rows)

    @property
    def weak_reasons(self) -> list[str]:
        return sorted({reason for r in self.rows for reason in r.weak_reasons})

    @property
    def no_op_rows(self) -> list[Row]:
        return [r for r in self.rows if r.no_op]

    def mark_overlaps(self) -> None:
        """Flag the rows whose 95 % interval on the sort column overlaps the leader's: their rank
        against the leader is not resolved. Against the leader, not the neighbour: overlap is not
        transitive (A ≈ B ≈ C with A clear of C), and the question a reader asks is "could this one be
        the best?". The leader is the first ranked row that is neither a reference nor a no-op (those
        are never best); references are never compared, and rows are read in their current order. An
        under-powered audit's columns rank nothing (tables.AUDIT_NOTE), so sorted by one, none is flagged.
        On a closer-to-retrain column the intervals compared are those of the distance to the retrained
        row's mean (:func:`distance_bounds`): two rows either side of the target, equally close, are tied."""
        unranked = self.sort in AUDIT_INFO and self.audit_underpowered
        ranked = [r for r in self.rows if not r.reference and not r.no_op and not math.isnan(self.rank_value(r))]
        leader = ranked[0] if ranked and not unranked else None
        self.leader = leader.method if leader else ""
        best = self.sort_bounds(leader) if leader else None
        for row in self.rows:
            bounds = self.sort_bounds(row)
            if best is None or bounds is None or row.reference or row is leader:
                row.overlaps_best = None
            elif any(math.isnan(b) for b in (*bounds, *best)):
                row.overlaps_best = None
            else:
                row.overlaps_best = bounds[0] <= best[1] and best[0] <= bounds[1]

    def sort_bounds(self, row: Row) -> tuple[float, float] | None:
        """The 95 % interval of what ``row`` is ranked by: the sort column's (the per-seed Average Gap's
        on ``avg_gap``), or on a closer-to-retrain column that of its distance to the retrained mean."""
        stat = row.sort_stat(self.sort)
        if stat is None:
            return None
        if self.direction == "closer_to_retrain":
            return distance_bounds(stat, self.target)
        return (stat.ci_low, stat.ci_high)

    @property
    def target(self) -> float:
        """The retrained row's mean on the sort column (NaN without one): what closer-to-retrain ranks by."""
        gold = self.retrained
        stat = gold.metrics.get(self.sort) if gold is not None else None
        return stat.mean if stat is not None else math.nan

    def rank(self, info: dict[str, MetricInfo] | None = None) -> None:
        """Order the rows on the sort column under its direction (``info``'s, else the audit's), best
        first, and mark the overlaps with the leader."""
        self.direction = direction_of(self.sort, info or {})
        target = self.target
        self.rows.sort(key=lambda r: row_sort_key(r, self.sort, self.direction, target))
        self.mark_overlaps()

    def rank_value(self, row: Row) -> float:
        """The number a row is ranked by on this board's sort column (lower ranks higher)."""
        return row_sort_key(row, self.sort, self.direction, self.target)[2]


def direction_of(sort: str, info: dict[str, MetricInfo]) -> str:
    """The direction of the sort column: the Average Gap's is lower; a metric's is its declaration."""
    if sort == "avg_gap":
        return "lower"
    found = info.get(sort) or AUDIT_INFO.get(sort)
    return found.direction if found is not None else "lower"


def distance_bounds(stat: Stat, target: float) -> tuple[float, float]:
    """The interval of |value − target| for ``stat``'s interval of the value: from 0 where it spans
    the target. NaN bounds where there is no interval or no target."""
    low, high = stat.ci_low - target, stat.ci_high - target
    if any(math.isnan(b) for b in (low, high)):
        return (math.nan, math.nan)
    if low <= 0 <= high:
        return (0.0, max(-low, high))
    return (min(abs(low), abs(high)), max(abs(low), abs(high)))


def weak_reasons(records: list[RunRecord]) -> list[str]:
    """The reference-quality rules the originals behind ``records`` failed. A run tagged weak before
    the learning bar existed failed the only rule there was: memorisation."""
    reasons = set()
    for rec in records:
        if rec.tag("weak_original"):
            reasons |= set(filter(None, rec.tag("weak_original_reason", "memorisation").split(",")))
    return sorted(reasons)


def dedupe(records: list[RunRecord]) -> list[RunRecord]:
    """One run per config hash: the first finished wins (concurrent duplicates are ignored)."""
    seen: dict[str, RunRecord] = {}
    for rec in sorted(records, key=lambda r: r.start_time):
        seen.setdefault(rec.tag("config_hash", rec.run_id), rec)
    return list(seen.values())


def readable(rec: RunRecord) -> bool:
    """Whether the board can read the run's integer tags (its seed; an eval draw, shadow or member
    count where it has one). A shared store is outside input: a run whose seed says "abc" was not
    written by unlearnkit, and is left off the board rather than crash it."""
    texts = [rec.tag("seed", "0"), *(rec.tag(name) or "0" for name in ("eval_draw", "shadows", "members"))]
    try:
        for text in texts:
            int(text)
    except ValueError:  # not a whole number, or one of thousands of digits
        return False
    return True


def of_seeds(records: list[RunRecord], seeds: Collection[int] | None) -> list[RunRecord]:
    """The records of ``seeds`` (all when None); one whose seed tag is unreadable is of none."""
    if seeds is None:
        return records
    wanted = set(seeds)
    return [r for r in records if readable(r) and int(r.tag("seed", "0")) in wanted]


def by_benchmark(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The records the board can read (:func:`readable`), deduplicated (:func:`dedupe`), per benchmark:
    what one board is made of."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for rec in dedupe([r for r in records if readable(r)]):
        groups[rec.tag("benchmark")].append(rec)
    return groups


def board_order(board: Board) -> tuple[str, str, str, str, str, str]:
    """Boards are listed by dataset, model, scenario, training recipe, subset, then protocol."""
    return (board.dataset, board.model, board.scenario, board.train_recipe, board.subset, board.protocol)


def gap(a: dict[str, float], b: dict[str, float], metrics: list[str]) -> float:
    """Mean absolute difference over the Average-Gap metrics; NaN if one is missing."""
    diffs = [abs(a[m] - b[m]) for m in metrics if m in a and m in b]
    return mean_of(diffs) if metrics and len(diffs) == len(metrics) else float("nan")


def build_boards(records: list[RunRecord], info: dict[str, MetricInfo], sort: str = "avg_gap") -> list[Board]:
    gap_metrics = sorted((m for m, i in info.items() if i.in_avg_gap), key=lambda m: (info[m].order, m))
    cost_metric = next((m for m, i in sorted(info.items()) if i.cost_axis), None)
    boards = []
    for bench, recs in by_benchmark(records).items():
        first = recs[0]
        per_method: dict[str, list[RunRecord]] = defaultdict(list)
        for rec in recs:
            per_method[row_name(rec)].append(rec)
        per_method = {name: newest_code(mrecs) for name, mrecs in per_method.items()}
        recs = [r for mrecs in per_method.values() for r in mrecs]
        names = sorted({k for r in recs for k in r.metrics})
        gold = [r for r in recs if r.tag("role") == "retrained"]
        gold_by_seed = {r.tag("seed"): r.metrics for r in gold}
        gold_means = {m: Stat.of([r.metrics.get(m, math.nan) for r in gold]).mean for m in gap_metrics}
        rows = []
        for method, mrecs in per_method.items():
            stats = {m: Stat.of([r.metrics.get(m, math.nan) for r in mrecs]) for m in names}
            means = {m: s.mean for m, s in stats.items()}
            per_seed = [
                gap(r.metrics, gold_by_seed[r.tag("seed")], gap_metrics) for r in mrecs if r.tag("seed") in gold_by_seed
            ]
            rows.append(
                Row(
                    method=method,
                    access=mrecs[0].tag("access"),
                    package=mrecs[0].tag("method.package"),
                    version=mrecs[0].tag("method.version"),
                    role=mrecs[0].tag("role"),
                    seeds=sorted(int(r.tag("seed", "0")) for r in mrecs),
                    metrics=stats,
                    avg_gap=gap(means, gold_means, gap_metrics) if gold else float("nan"),
                    avg_gap_per_seed=Stat.of(per_seed),
                    weak_original=any(r.tag("weak_original") for r in mrecs),
                    weak_reasons=weak_reasons(mrecs),
                    no_op_seeds=sum(1 for r in mrecs if r.tag("no_op")),
                )
            )
        board = Board.of(
            bench, first, rows=rows, metric_names=names, gap_metrics=gap_metrics, cost_metric=cost_metric, sort=sort
        )
        board.rank(info)
        boards.append(board)
    boards.sort(key=board_order)
    return boards


def audit_config(rec: RunRecord) -> tuple[int, str, str]:
    return (int(rec.tag("shadows", "0") or 0), rec.tag("mode"), rec.tag("fixed_variance"))


def describe_audit(config: tuple[int, str, str]) -> str:
    shadows, mode, fixed = config
    # as unlearnkit.audit.design.mode_label (the board sits below the audit layer and cannot import it)
    label = "offline one-sided (paper)" if mode == "offline" else mode
    return f"{shadows} shadows, {label}" + (", fixed variance" if fixed == "true" else "")


def latest_audits(recs: list[RunRecord]) -> list[RunRecord]:
    """Per audit seed, the rows of its most recent audit (a re-scored audit supersedes the earlier one)."""
    newest: dict[str, tuple[int, str]] = {}
    for rec in recs:
        group = (rec.start_time, rec.tag("audit"))
        newest[rec.tag("seed")] = max(newest.get(rec.tag("seed"), group), group)
    return [r for r in recs if r.tag("audit") == newest[r.tag("seed")][1]]


def chosen_audits(recs: list[RunRecord]) -> list[RunRecord]:
    """One benchmark's audits under one configuration — the one with the most shadows, then the most
    recent — so every row of its board is scored against the same shadows; per seed its latest audit."""
    latest = {c: max(r.start_time for r in recs if audit_config(r) == c) for c in {audit_config(r) for r in recs}}
    chosen = max(latest, key=lambda c: (c[0], latest[c]))
    return latest_audits([r for r in recs if audit_config(r) == chosen])


def boards_to_merge(
    boards: list[Board], records: list[RunRecord], choose: Callable[[list[RunRecord]], list[RunRecord]]
) -> Iterator[tuple[Board, list[RunRecord]]]:
    """Per benchmark of ``records``, the records ``choose`` keeps and the board they go on: the benchmark's
    board in ``boards``, else a new one headed from them and appended to ``boards`` (scored, never run)."""
    known = {b.benchmark: b for b in boards}
    for bench, recs in by_benchmark(records).items():
        chosen = choose(recs)
        board = known.get(bench)
        if board is None:
            board = Board.of(bench, chosen[0])
            boards.append(board)
        yield board, chosen


def row_of(rec: RunRecord, seeds: list[int]) -> Row:
    """A row for a method a board has no runs of, described by the tags of one of its audit or score runs."""
    return Row(
        method=rec.tag("method"),
        access=rec.tag("access"),
        package=rec.tag("method.package"),
        version=rec.tag("method.version"),
        role=rec.tag("role"),
        seeds=seeds,
    )


def merge_audits(
    boards: list[Board], audits: list[RunRecord], sort: str = "avg_gap", info: dict[str, MetricInfo] | None = None
) -> list[Board]:
    """Put U-LiRA audit results on the boards' rows, matched by benchmark and method.

    Per benchmark one audit configuration is shown — the one with the most shadows (then the most recent) —
    so every row of a board is scored against the same shadows; per audit seed its most recent audit counts,
    and several audit seeds are aggregated like seeds (mean ± std; the bootstrap bounds ``_low``/``_high``
    of one audit too, so over seeds they are a typical bound, not an interval). A benchmark audited but never
    run gets a board of its audit rows alone.
    """
    boards = list(boards)
    for board, recs in boards_to_merge(boards, audits, chosen_audits):
        board.audit = describe_audit(audit_config(recs[0]))
        board.audit_underpowered = any(r.tag("ulira_power") == "underpowered" for r in recs)
        # AUC and TPRs always (a NaN TPR is not stored, and "—" says so); the later columns where recorded,
        # so an audit made before them does not grow empty columns
        always = ("ulira_auc", "ulira_tpr_at_1fpr", "ulira_tpr_at_01fpr")
        carried = [n for n in AUDIT_INFO if n in always or any(n in r.metrics for r in recs)]
        per_method: dict[str, list[RunRecord]] = defaultdict(list)
        for rec in recs:
            per_method[rec.tag("method")].append(rec)
        rows = {r.method: r for r in board.rows}
        for method, mrecs in per_method.items():
            row = rows.get(method)
            if row is None:  # audited but never run: its seeds are its audit seeds
                row = row_of(mrecs[0], seeds=sorted(int(r.tag("seed", "0")) for r in mrecs))
                board.rows.append(row)
            for name in carried:
                row.metrics[name] = Stat.of([r.metrics.get(name, math.nan) for r in mrecs])
            row.audit_seeds = sorted(int(r.tag("seed", "0")) for r in mrecs)
        board.metric_names = sorted(set(board.metric_names) | set(carried))
        board.sort = sort
        board.rank(info)
    boards.sort(key=board_order)
    return boards


def members_of(rec: RunRecord) -> int:
    return int(rec.tag("members", "0") or 0)


def chosen_records(recs: list[RunRecord]) -> list[RunRecord]:
    """One ensemble size per benchmark (the most members), its rows oldest first: a later row's
    scores supersede an earlier one's, score by score (a re-scoring with other scores adds columns)."""
    most = max(members_of(r) for r in recs)
    return sorted((r for r in recs if members_of(r) == most), key=lambda r: r.start_time)


def merge_ensembles(
    boards: list[Board], records: list[RunRecord], info: dict[str, MetricInfo], sort: str = "avg_gap"
) -> list[Board]:
    """Put each benchmark's ensemble scores (and their bounds) on its board's rows, matched by method.
    A benchmark scored but never run gets a board of its ensemble rows alone."""
    boards = list(boards)
    for board, chosen in boards_to_merge(boards, records, chosen_records):
        rows = {r.method: r for r in board.rows}
        names: set[str] = set()
        for rec in chosen:
            row = rows.get(rec.tag("method"))
            if row is None:
                row = row_of(rec, seeds=[])
                board.rows.append(row)
                rows[row.method] = row
            m = rec.metrics
            for name in (n for n in rec.tag("scores").split(",") if n in info and n in m):
                bounds = (m.get(f"{name}_low", math.nan), m.get(f"{name}_high", math.nan))
                row.metrics[name] = Stat(m[name], math.nan, 1, bounds)  # one ensemble: its bootstrap interval
                names.add(name)
        board.metric_names = sorted(set(board.metric_names) | names)
        board.ensemble = f"{max(members_of(r) for r in chosen)} members"
        board.sort = sort
        board.rank(info)
    boards.sort(key=board_order)
    return boards


def row_name(rec: RunRecord) -> str:
    """A method's row; recipe grid points and data-parallel runs get their own rows, e.g.
    ``lotus [lotus.alpha=8]``, ``lotus [2 ranks]``."""
    labels = [rec.tag("grid_point"), f"{rec.tag('world_size')} ranks" if rec.tag("world_size") else ""]
    label = ", ".join(x for x in labels if x)
    return f"{rec.tag('method')} [{label}]" if label else rec.tag("method")


def newest_code(records: list[RunRecord]) -> list[RunRecord]:
    """The numbers made by the newest code, one method's runs in: after a version bump the old
    numbers stay in the store but never share a row with the new ones. The method's version is the
    newest run's; each metric's is the newest run's that computed it, so a later run of fewer metrics
    (``--metric``, ``--no-retrain``) supersedes none of the others' numbers, and a metric's bump
    drops only that metric's older values. A run stored without a ``versions`` tag (0.2) counts
    where a run that has one shares its ``code``: the same versions made both."""
    newest = max(records, key=lambda r: r.start_time)
    if not newest.tag("versions"):
        return [r for r in records if r.tag("code") == newest.tag("code")]
    method = newest.tag("versions").split(",")[0]
    current: dict[str, str] = {}  # metric name -> the version of the newest run that computed it
    for rec in sorted(records, key=lambda r: -r.start_time):
        versions = rec.tag("versions").split(",")
        if versions[0] == method:
            for version in versions[1:]:
                current.setdefault(plugin_name(version), version)
    stale: dict[str, set[str]] = {}  # code -> the metrics that code computed at an older version
    for rec in records:
        versions = rec.tag("versions").split(",")
        if versions[0] == method:
            stale[rec.tag("code")] = {plugin_name(v) for v in versions[1:] if current[plugin_name(v)] != v}
    kept = []
    for rec in records:  # one code, one set of versions: a 0.2 run (no versions tag) with a code seen above too
        if rec.tag("code") not in stale:
            continue
        old = stale[rec.tag("code")]
        kept.append(replace(rec, metrics={k: v for k, v in rec.metrics.items() if k not in old}) if old else rec)
    return kept


def plugin_name(version: str) -> str:
    """``name`` of ``package:name@1`` (or of ``pkg:name==1.2``, a plugin without
    an ``algorithm_version``)."""
    return version.split(":", 1)[-1].split("@", 1)[0].split("==", 1)[0]


def in_recipe(board: Board, cells: set[tuple[str, str, str]], methods: set[str] | None) -> Board | None:
    """Keep a board only if it is a cell of the recipe; keep only the recipe's methods (and references):
    the names in ``methods``, or with ``all`` among them every method but those written ``-NAME``."""
    if (board.dataset, board.model, board.scenario) not in cells:
        return None
    if methods is not None:
        dropped = {m[1:] for m in methods if m.startswith("-")}

        def kept(name: str) -> bool:
            return name not in dropped if "all" in methods else name in methods

        board.rows = [r for r in board.rows if r.reference or kept(r.method.split(" [")[0])]
    return board


def row_sort_key(
    row: Row, sort: str, direction: str = "lower", target: float = math.nan
) -> tuple[int, bool, float, str]:
    """References first (original, retrained), then the rows ranked best first on ``sort`` under its
    ``direction``: lowest first, highest first, or closest first to ``target`` (the retrained row's
    mean; without one nothing is ranked); a row with no value last, ties by name."""
    if sort == "avg_gap":
        value = row.avg_gap
    elif sort in row.metrics:
        value = row.metrics[sort].mean
    else:
        value = math.nan
    if direction == "higher":
        value = -value
    elif direction == "closer_to_retrain":
        value = abs(value - target)
    return (ROLE_ORDER.get(row.role, 2), math.isnan(value), value, row.method)


def leaderboard(
    store: Store,
    info: dict[str, MetricInfo],
    *,
    dataset: str | None = None,
    model: str | None = None,
    scenario: str | None = None,
    protocol: str | None = None,
    access: str | None = None,
    sort: str = "avg_gap",
    recipe_cells: set[tuple[str, str, str]] | None = None,
    recipe_methods: set[str] | None = None,
    include_tuning: bool = False,
    seeds: Collection[int] | None = None,
) -> list[Board]:
    """Finished unlearning runs in the store, filtered by tag (or a recipe's grid), aggregated into boards,
    with the U-LiRA audits of the same benchmarks merged in (:func:`merge_audits`) and each row's 95 %
    interval on ``sort`` compared with the leader's (:meth:`Board.mark_overlaps`).

    Tuning trials (``unlearnkit tune``) are left out unless ``include_tuning``; ``seeds``: only the
    runs of these seeds (a store may hold more seeds than a reproduction was asked to judge)."""
    if not store.exists():
        return []
    filters = {"run_type": "unlearn"}
    for key, value in (("dataset", dataset), ("model", model), ("scenario", scenario), ("protocol", protocol)):
        if value:
            filters[key] = value
    records = store.search(filters)
    if not include_tuning:
        records = [r for r in records if not r.tag("tuning_trial")]
    if access:
        records = [r for r in records if r.tag("access") == access or r.tag("role")]
    records = of_seeds(records, seeds)
    boards = build_boards(records, info, sort=sort)
    audits = of_seeds(store.search({**filters, "run_type": "audit"}), seeds)  # --seeds keeps its audits too
    if audits:
        boards = merge_audits(boards, audits, sort=sort, info=info)
        if access:
            for board in boards:
                board.rows = [r for r in board.rows if r.access == access or r.reference]
    ensembles = of_seeds(store.search({**filters, "run_type": "ensemble"}), seeds)
    if ensembles:
        boards = merge_ensembles(boards, ensembles, info, sort=sort)
    if recipe_cells is not None:
        boards = [b for b in (in_recipe(b, recipe_cells, recipe_methods) for b in boards) if b is not None]
    for board in boards:  # last: audits, filters and the recipe may have changed the rows and their order
        board.sort = sort
        board.rank(info)
    return boards
