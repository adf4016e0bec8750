"""Published tables as data, and the verdict on each of their cells: does a measured board
reproduce what a paper (or unlearnkit itself) published?

A table file (``recipes/tables/NAME.toml``, docs/reproducing.md) names the recipe that runs it, the
benchmark its numbers belong to, and per row (one method) and metric the published value as written,
``"0.30±0.04"`` or ``"0.0375"``: the digits a number was published with are part of what it says.
A cell *holds* when our mean lies inside the interval the two spreads imply (:func:`tolerance`);
runtimes are compared as ratios to the retrain row's, never as minutes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearnkit.board.leaderboard import Board, Row, Stat
from unlearnkit.board.tables import csv_text, md_text
from unlearnkit.errors import ConfigError, shorten

TIME = "time"  # a row's published runtime: compared as its ratio to the retrain row's
RATIO = "time_ratio"  # the report's name for that comparison
AVG_GAP = "avg_gap"  # the board's own column, not a metric plugin's
CONFIDENCE = 0.95
RUNTIME_FACTOR = 2.0  # a runtime ratio holds within this factor: GPUs, loaders and data paths differ
VALUE = re.compile(r"^\s*(-?\d*\.?\d+)\s*(?:±\s*(\d*\.?\d+))?\s*$")
Verdict = Literal["holds", "outside", "not run"]
TABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class Published:
    """One published number: its mean, its spread over seeds (None: not published) and the rounding
    its digits imply (half a unit of the last digit)."""

    mean: float
    std: float | None
    rounding: float
    text: str = ""  # as published (in the table's units)
    decimals: int = 3
    scale: float = 1.0  # the table's units over ours: how to show our numbers beside it

    @classmethod
    def parse(cls, text: str, where: str) -> Published:
        m = VALUE.match(text)
        if not m:
            raise ConfigError(
                f'Bad published value \'{shorten(text)}\' at {where}: expected e.g. "0.30±0.04" or "0.0375".'
            )
        mean, std = m.group(1), m.group(2)
        decimals = len(mean.partition(".")[2])
        return cls(float(mean), None if std is None else float(std), 0.5 * 10.0**-decimals, text.strip(), decimals)

    def scaled(self, scale: float) -> Published:
        """In our units: a published ×1e4 JSD divided by 1e4."""
        std = None if self.std is None else self.std / scale
        return Published(self.mean / scale, std, self.rounding / scale, self.text, self.decimals, scale)

    def show(self, value: float, std: float | None = None) -> str:
        """One of our numbers in this number's units, to one digit more than it was published with."""
        if math.isnan(value):
            return "–"
        digits = self.decimals + 1
        text = f"{value * self.scale:.{digits}f}"
        if std is not None and not math.isnan(std):
            text += f" ± {std * self.scale:.{digits}f}"
        return text


class TableRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str | None = None  # our method (original / retrain for the reference rows); None: not run
    not_run: str | None = None  # why a published row has no counterpart here
    values: dict[str, str] = Field(default_factory=dict)


class TableFile(BaseModel):
    """The schema of ``recipes/tables/*.toml``."""

    # a table file is outside input: every number finite (nan/inf would pass ge= and gt=, then break
    # the verdict after every run is computed), scales positive (0 divides, a negative flips the sign)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str  # a plain name (TABLE_NAME): the store keeps the table as the artifact NAME.toml
    title: str
    source: str
    recipe: str  # a shipped recipe's name or a path
    protocol: Literal["clean", "paper"]
    dataset: str
    model: str
    scenario: str
    seeds: int = Field(ge=1, le=10_000)  # how many seeds each published mean averages
    measured_on: str  # where the published runtimes were measured
    time_unit: Literal["s", "min", "h"] = "min"
    runtime_factor: float = Field(RUNTIME_FACTOR, ge=1)
    scale: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)  # published = ours x scale
    retrained_row: str | None = None  # the label of the row that is the retrained model (the gold standard)
    original_row: str | None = None  # the label of the original model's row
    # the least tolerance per metric (ours): for cells whose spread is zero on both sides, where an
    # interval collapses to the rounding although another machine's floats move the numbers as a seed does
    min_tolerance: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    rows: dict[str, TableRow]

    @field_validator("name")
    @classmethod
    def plain_name(cls, name: str) -> str:
        """A name with ``/`` or ``..`` would be a path in the store: MLflow refuses it, but only when the
        reproduction is logged, with its own traceback, after every cell has run."""
        if not TABLE_NAME.fullmatch(name):
            raise ValueError(f"'{shorten(name)}' is not a plain name (letters, digits, '.', '_' and '-')")
        return name

    @field_validator("rows", mode="before")
    @classmethod
    def split_values(cls, rows: dict) -> dict:
        """``[rows."NegGrad+"]`` holds ``method``/``not_run`` beside the metric values: sort them apart."""
        if not isinstance(rows, dict):
            return rows
        out = {}
        for label, body in rows.items():
            if not isinstance(body, dict):
                out[label] = body
                continue
            known = {k: body[k] for k in ("method", "not_run") if k in body}
            out[label] = {**known, "values": {k: v for k, v in body.items() if k not in known}}
        return out


@dataclass(frozen=True)
class PublishedTable:
    """A table file, read and checked: its published numbers parsed, its hash taken."""

    spec: TableFile
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    def published(self, label: str, metric: str) -> Published | None:
        text = self.spec.rows[label].values.get(metric)
        if text is None:
            return None
        value = Published.parse(text, f"{self.name} / {label} / {metric}")
        return value.scaled(self.spec.scale.get(metric, 1.0))

    @property
    def methods(self) -> list[str]:
        """Our methods the table's rows name (the reference rows included), in the table's order."""
        return list(dict.fromkeys(r.method for r in self.spec.rows.values() if r.method))

    @property
    def reference_labels(self) -> set[str]:
        return {label for label in (self.spec.retrained_row, self.spec.original_row) if label}

    @property
    def unlearning_methods(self) -> list[str]:
        """The methods to run: every row's but the reference rows' (a benchmark always has those)."""
        refs = self.reference_labels
        return list(dict.fromkeys(r.method for label, r in self.spec.rows.items() if r.method and label not in refs))

    def retrain_label(self) -> str | None:
        return self.spec.retrained_row

    def judged(self, label: str, metric: str) -> bool:
        """Whether a published cell gets a verdict: a runtime is judged as its ratio to the retrain
        row's, so the reference rows' runtimes (the ratio's denominator, the original's training)
        and every runtime of a table without a retrain runtime are shown, never judged."""
        if metric != TIME:
            return True
        gold = self.retrain_label()
        return label not in self.reference_labels and gold is not None and self.published(gold, TIME) is not None

    @property
    def cell_counts(self) -> tuple[int, int]:
        """(published cells, cells judged)."""
        cells = [(label, metric) for label, row in self.spec.rows.items() for metric in row.values]
        return len(cells), sum(self.judged(label, metric) for label, metric in cells)

    def floor(self, metric: str) -> float:
        """The least tolerance of ``metric``'s cells, in our units (``min_tolerance``; 0 when unset)."""
        return self.spec.min_tolerance.get(metric, 0.0) / self.spec.scale.get(metric, 1.0)

    def check_metrics(self, known: set[str]) -> None:
        """Every published cell names a metric this install computes (``known``: the registered
        metrics), the board's avg_gap, or the row's runtime; else one line naming the choices."""
        valid = known | {AVG_GAP, TIME}
        for label, row in self.spec.rows.items():
            for metric in row.values:
                if metric not in valid:
                    raise ConfigError(
                        f"Table '{self.name}', row '{label}': unknown metric '{shorten(metric)}'. "
                        f"Valid: {', '.join(sorted(valid))}."
                    )

    def cost_hours(self) -> float | None:
        """What the whole table took its authors: every published runtime times the seeds, the
        original's training counted at the retraining's cost; None when no runtime is published."""
        times = [self.published(label, TIME) for label in self.spec.rows if self.spec.rows[label].method]
        known = [t.mean for t in times if t is not None]
        if not known:
            return None
        gold = self.retrain_label()
        original = self.published(gold, TIME) if gold else None
        per_seed = sum(known) + (original.mean if original else 0.0)
        hours = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0}[self.spec.time_unit]
        return per_seed * self.spec.seeds * hours


def load_table(path: Path) -> PublishedTable:
    """Read and check one table file; every published value is parsed here, so a typo is caught
    before anything runs."""
    raw = path.read_bytes()
    try:
        spec = TableFile(**tomllib.loads(raw.decode()))
    except UnicodeDecodeError as err:
        raise ConfigError(f"Table '{path}' is not UTF-8 text (byte {err.start}): save it as UTF-8 TOML.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Table '{path}' is not valid TOML: {err}.") from None
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"Bad table '{path}': {key}: {first['msg']}.") from None
    table = PublishedTable(spec, path, hashlib.sha256(raw).hexdigest())
    for role, label in (("retrained_row", spec.retrained_row), ("original_row", spec.original_row)):
        if label is not None and label not in spec.rows:
            raise ConfigError(f"Bad table '{path}': {role} '{shorten(label)}' is not one of its rows.")
    for label, row in spec.rows.items():
        if bool(row.method) == bool(row.not_run):
            raise ConfigError(f"Bad table '{path}': row '{label}' needs exactly one of method or not_run.")
        for metric in row.values:
            table.published(label, metric)
    return table


# ------------------------------------------------------------------------------------------ verdicts
def tolerance(published: Published, n_published: int, measured: Stat, draws: Stat | None = None) -> float:
    """How far our mean may lie from the published one and still reproduce it.

    A two-sided 95 % Welch interval on the difference of the two means (each side's standard error
    from its std and seed count; Welch–Satterthwaite degrees of freedom), widened by the rounding
    of the published digits. A side without a spread (a number published without one, or a single
    seed of ours) borrows the other side's, with n_published + n_ours - 2 degrees of freedom; with
    neither, the rounding alone is the tolerance.

    ``draws``: our mean over draws of the evaluation's random crops (``--eval-draws``). The
    published mean is one such draw, so that variance joins the published side's, as a third
    Welch–Satterthwaite component with n_draws - 1 degrees of freedom.
    """
    s_pub = published.std
    s_our = measured.std if measured.n > 1 and not math.isnan(measured.std) else None
    v_draw = draws.std**2 if draws is not None and draws.n > 1 and not math.isnan(draws.std) else 0.0
    if s_pub is None and s_our is None and not v_draw:
        return published.rounding
    borrowed = (s_pub is None) != (s_our is None)
    s_pub = s_our if s_pub is None else s_pub
    s_our = s_pub if s_our is None else s_our
    parts = [(v_draw, (draws.n if draws else 1) - 1)]  # (variance, its degrees of freedom)
    if s_pub is not None and s_our is not None and borrowed:
        # one spread stands for both sides: one component with pooled degrees of freedom (the draws,
        # when there are any, still join it as a Welch–Satterthwaite component of their own)
        parts.append((s_pub**2 / n_published + s_our**2 / max(measured.n, 1), n_published + measured.n - 2))
    elif s_pub is not None and s_our is not None:
        parts += [(s_pub**2 / n_published, n_published - 1), (s_our**2 / max(measured.n, 1), measured.n - 1)]
    total = sum(v for v, _ in parts)
    if total == 0:
        return published.rounding
    denominator = sum(v**2 / df for v, df in parts if v and df > 0)
    df = total**2 / denominator if denominator > 0 else 1.0
    from scipy import stats  # here: importing it costs every run's board half a second

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, max(df, 1.0))) * math.sqrt(total) + published.rounding


def ratio(numerator: Stat | Published, denominator: Stat | Published) -> tuple[float, float | None]:
    """a / b and its std by first-order propagation (None when neither side has a spread)."""
    a, b = numerator.mean, denominator.mean
    if b == 0 or math.isnan(a) or math.isnan(b):
        return float("nan"), None
    sa, sb = (x.std if x.std is not None and not math.isnan(x.std) else None for x in (numerator, denominator))
    if sa is None and sb is None:
        return a / b, None
    rel = math.hypot((sa or 0.0) / a if a else 0.0, (sb or 0.0) / b)
    return a / b, abs(a / b) * rel


@dataclass
class CellVerdict:
    row: str  # the published row's label
    method: str | None
    metric: str
    published: Published
    measured: Stat
    tolerance: float
    verdict: Verdict
    why: str = ""  # for "not run": why not
    draws: Stat | None = None  # our mean over draws of the evaluation's crops (--eval-draws): its spread

    @property
    def difference(self) -> float:
        return self.measured.mean - self.published.mean

    @property
    def shown_measured(self) -> str:
        """Our mean ± std (n) in the table's units."""
        if self.measured.n == 0:
            return "–"
        return f"{self.published.show(self.measured.mean, self.measured.std)} ({self.measured.n})"

    @property
    def shown_draws(self) -> str:
        """Our mean's spread over the evaluation's draws, in the table's units."""
        if self.draws is None or self.draws.n < 2:
            return "–"
        return f"± {self.published.show(self.draws.std)} ({self.draws.n})"

    def shown_clean(self, rep: Reproduction) -> str:
        """The same cell under the clean protocol (``--clean-column``), in the table's units."""
        clean = rep.clean.get((self.row, self.metric))
        return "–" if clean is None or clean.n == 0 else self.published.show(clean.mean)

    @property
    def shown_tolerance(self) -> str:
        return "–" if math.isnan(self.tolerance) else f"± {self.published.show(self.tolerance)}"


@dataclass
class Reproduction:
    """Every cell of one table against one board (or none: nothing ran)."""

    table: PublishedTable
    cells: list[CellVerdict] = field(default_factory=list)
    clean: dict[tuple[str, str], Stat] = field(default_factory=dict)  # the same cells under --protocol clean

    def count(self, verdict: Verdict) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    @property
    def holds(self) -> bool:
        """True when every cell that ran holds (and at least one ran)."""
        ran = [c for c in self.cells if c.verdict != "not run"]
        return bool(ran) and all(c.verdict == "holds" for c in ran)

    @property
    def summary(self) -> str:
        ran = len(self.cells) - self.count("not run")
        head = "holds" if self.holds else ("not run" if not ran else "does not hold")
        return (
            f"Table '{self.table.name}' {head}: {self.count('holds')} of {ran} run cells hold, "
            f"{self.count('outside')} outside, {self.count('not run')} not run."
        )

    def outside(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.verdict == "outside"]


def measured_stat(row: Row, metric: str) -> Stat:
    """Our number for a published cell. Avg Gap, as the LoTUS tables compute it, is the gap between
    the seed-mean metrics (the board's avg_gap); its spread is that of the per-seed gaps."""
    if metric == AVG_GAP:
        per_seed = row.avg_gap_per_seed
        return Stat(row.avg_gap, per_seed.std, per_seed.n) if not math.isnan(row.avg_gap) else per_seed
    return row.metrics.get(metric, Stat(float("nan"), float("nan"), 0))


def compare(
    table: PublishedTable, board: Board | None, clean: Board | None = None, draws: list[Board] | None = None
) -> Reproduction:
    """The verdict on every published cell: ``board`` is the table's benchmark as measured (None:
    not run), ``clean`` the same benchmark under the clean protocol (shown beside, never judged),
    ``draws`` the same models re-evaluated under other draws of the paper protocol's crops: the
    spread of a cell over them widens its tolerance (:func:`with_draws`)."""
    rep = Reproduction(table)
    rows = methods_of(board, table)
    clean_rows = methods_of(clean, table)
    gold_label = table.retrain_label()
    gold_time = table.published(gold_label, TIME) if gold_label else None
    n_pub = table.spec.seeds
    for label, spec_row in table.spec.rows.items():
        for metric in spec_row.values:
            published = table.published(label, metric)
            assert published is not None
            row = rows.get(spec_row.method) if spec_row.method else None
            if not table.judged(label, metric):
                continue  # the retrain row is the ratio's denominator; the original's time is its training
            if metric == TIME:
                assert gold_time is not None  # judged() says so
                cell = time_cell(label, spec_row.method, published, gold_time, row, board, table)
            else:
                measured = measured_stat(row, metric) if row else Stat(float("nan"), float("nan"), 0)
                verdict: Verdict
                tol = max(tolerance(published, n_pub, measured), table.floor(metric)) if measured.n else float("nan")
                if not spec_row.method:
                    verdict, why = "not run", spec_row.not_run or ""
                elif measured.n == 0:
                    verdict, why = "not run", missing(board)
                else:
                    verdict = "holds" if abs(measured.mean - published.mean) <= tol else "outside"
                    why = ""
                cell = CellVerdict(label, spec_row.method, metric, published, measured, tol, verdict, why)
            rep.cells.append(cell)
            if spec_row.method in clean_rows and clean is not None:
                clean_metric = RATIO if metric == TIME else metric
                rep.clean[(label, clean_metric)] = (
                    time_ratio_stat(clean_rows[spec_row.method], clean)
                    if metric == TIME
                    else measured_stat(clean_rows[spec_row.method], metric)
                )
    if draws:
        with_draws(rep, draws)
    return rep


def with_draws(rep: Reproduction, draws: list[Board]) -> None:
    """Each judged cell's mean under every draw of the evaluation (draw 0 is the board's own), its
    spread over the draws added to the published side's variance, and the verdict taken again."""
    others = [methods_of(b, rep.table) for b in draws]
    n_pub = rep.table.spec.seeds
    for cell in rep.cells:
        if cell.verdict == "not run" or cell.metric == RATIO:
            continue  # a runtime is not evaluated: reused models keep their time
        means = [cell.measured.mean]
        for rows in others:
            row = rows.get(cell.method)
            stat = measured_stat(row, cell.metric) if row else None
            if stat is not None and stat.n:
                means.append(stat.mean)
        cell.draws = Stat.of(means)
        if cell.draws.n < 2:
            continue
        cell.tolerance = max(tolerance(cell.published, n_pub, cell.measured, cell.draws), rep.table.floor(cell.metric))
        cell.verdict = "holds" if abs(cell.difference) <= cell.tolerance else "outside"


def missing(board: Board | None) -> str:
    """Why a cell of ours has no number: the same words for every metric of a row. Without a board
    nothing of the benchmark is in the store (``--from-store`` on another store, or every run failed)."""
    return "no finished run in the store" if board else "no finished run of the table's benchmark in the store"


def methods_of(board: Board | None, table: PublishedTable) -> dict[str | None, Row]:
    """A board's rows by the table's method names; the reference rows found by their role (the
    table's retrained_row / original_row), not by the names the reference methods register."""
    if board is None:
        return {}
    rows: dict[str | None, Row] = {r.method: r for r in board.rows if not r.reference}
    spec = table.spec
    for label, role in ((spec.retrained_row, "retrained"), (spec.original_row, "original")):
        row = next((r for r in board.rows if r.role == role), None)
        if label is not None and row is not None:
            rows[spec.rows[label].method] = row
    return rows


def time_ratio_stat(row: Row | None, board: Board | None) -> Stat:
    """Our runtime as a fraction of the retraining's, read from the board's cost metric (the one
    declaring itself the cost axis): mean ratio, propagated std, seed count."""
    cost = board.cost_metric if board else None
    retrain = board.retrained if board else None
    if row is None or retrain is None or cost is None or cost not in row.metrics or cost not in retrain.metrics:
        return Stat(float("nan"), float("nan"), 0)
    mean, std = ratio(row.metrics[cost], retrain.metrics[cost])
    if math.isnan(mean):
        return Stat(float("nan"), float("nan"), 0)
    return Stat(mean, float("nan") if std is None else std, row.metrics[cost].n)


def time_cell(
    label: str,
    method: str | None,
    published: Published,
    gold: Published,
    row: Row | None,
    board: Board | None,
    table: PublishedTable,
) -> CellVerdict:
    """A runtime cell: published minutes over the published retraining's, against our seconds over
    ours. Holds inside the Welch interval of the two ratios or within the table's runtime factor."""
    mean, std = ratio(published, gold)
    rounding = ratio(Published(published.rounding, None, 0), gold)[0]
    text = f"{mean:.3f}" + ("" if std is None else f"±{std:.3f}")
    pub_ratio = Published(mean, std, rounding, text, 3)
    measured = time_ratio_stat(row, board)
    if not method:
        return CellVerdict(
            label, method, RATIO, pub_ratio, measured, float("nan"), "not run", table.spec.rows[label].not_run or ""
        )
    if measured.n == 0:
        return CellVerdict(label, method, RATIO, pub_ratio, measured, float("nan"), "not run", missing(board))
    tol = tolerance(pub_ratio, table.spec.seeds, measured)
    factor = table.spec.runtime_factor
    within_factor = (
        pub_ratio.mean > 0 and measured.mean > 0 and abs(math.log(measured.mean / pub_ratio.mean)) <= math.log(factor)
    )
    verdict: Verdict = "holds" if abs(measured.mean - pub_ratio.mean) <= tol or within_factor else "outside"
    return CellVerdict(label, method, RATIO, pub_ratio, measured, tol, verdict)


# ------------------------------------------------------------------------------------------- reports
def report_rows(rep: Reproduction) -> list[dict[str, object]]:
    """One flat record per cell: what csv and json write and the terminal shows."""
    out = []
    for c in rep.cells:
        clean = rep.clean.get((c.row, c.metric))
        out.append(
            {
                "row": c.row,
                "method": c.method or "",
                "metric": c.metric,
                "published_mean": c.published.mean,
                "published_std": c.published.std,
                "measured_mean": None if c.measured.n == 0 else c.measured.mean,
                "measured_std": None if c.measured.n < 2 else c.measured.std,
                "n": c.measured.n,
                "tolerance": None if math.isnan(c.tolerance) else c.tolerance,
                "verdict": c.verdict,
                "why": c.why,
                "clean_mean": None if clean is None or clean.n == 0 else clean.mean,
                "eval_draws": 0 if c.draws is None else c.draws.n,
                "eval_draw_std": None if c.draws is None or c.draws.n < 2 else c.draws.std,
            }
        )
    return out


def to_markdown(rep: Reproduction) -> str:
    spec = rep.table.spec
    with_clean = bool(rep.clean)
    show_draws = any(c.draws is not None for c in rep.cells)
    lines = [
        f"## {spec.title}",
        "",
        f"Table `{spec.name}` (sha256 {rep.table.sha256[:12]}), recipe `{spec.recipe}`, protocol `{spec.protocol}`; "
        f"{spec.dataset} / {spec.model} / {spec.scenario}. Source: {spec.source}.",
        "",
        "| row | metric | published | measured (n) |"
        + (" eval draws |" if show_draws else "")
        + " tolerance | verdict |"
        + (" clean |" if with_clean else ""),
        "|---|---|---|---|" + ("---|" if show_draws else "") + "---|---|" + ("---|" if with_clean else ""),
    ]
    for c in rep.cells:
        verdict = c.verdict + (f": {c.why}" if c.why else "")
        clean = f" {c.shown_clean(rep)} |" if with_clean else ""
        draws = f" {c.shown_draws} |" if show_draws else ""
        lines.append(
            f"| {md_text(c.row)} | {c.metric} | {md_text(c.published.text)} | {c.shown_measured} |{draws} "
            f"{c.shown_tolerance} | {md_text(verdict)} |{clean}"
        )
    lines += ["", rep.summary]
    return "\n".join(lines) + "\n"


def to_csv(rep: Reproduction) -> str:
    rows = report_rows(rep)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["row"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_text(v) for k, v in row.items()} for row in rows)  # a table file is outside input
    return buf.getvalue()


def to_json(rep: Reproduction) -> str:
    spec = rep.table.spec
    doc = {
        "table": spec.name,
        "sha256": rep.table.sha256,
        "title": spec.title,
        "source": spec.source,
        "recipe": spec.recipe,
        "protocol": spec.protocol,
        "benchmark": {"dataset": spec.dataset, "model": spec.model, "scenario": spec.scenario},
        "holds": rep.holds,
        "counts": {v: rep.count(v) for v in ("holds", "outside", "not run")},
        "cells": report_rows(rep),
    }
    return json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"
