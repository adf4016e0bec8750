"""Reproducing a published table: the cells of its recipe that hold the table's benchmark, run
through the sweep machinery (resumable, reference models shared, nothing recomputed), then every
published cell judged against the measured board (:mod:`unlearnkit.board.published`)."""

from __future__ import annotations

from pathlib import Path

from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.api.protocols import get_protocol
from unlearnkit.board.leaderboard import Board, leaderboard
from unlearnkit.board.publish import publish_reproduction
from unlearnkit.board.published import PublishedTable, Reproduction, compare, load_table
from unlearnkit.discovery.registry import Registries
from unlearnkit.engine.runner import Runner
from unlearnkit.engine.splits import parse_scenario
from unlearnkit.errors import ConfigError, UnknownNameError
from unlearnkit.scale.estimate import Estimate, PlanEstimator
from unlearnkit.scale.sweep import Executor, Sweep
from unlearnkit.scale.sweep_recipes import Cell, resolve_recipe, shipped_folder
from unlearnkit.store.mlflow_store import Store

TABLES = "tables"  # the shipped tables' folder inside the shipped recipes


def shipped_tables() -> list[PublishedTable]:
    folder = shipped_folder(TABLES)
    return [load_table(p) for p in sorted(folder.glob("*.toml"))] if folder else []


def find_table(name_or_path: str) -> PublishedTable:
    """A table file by path, or a shipped table by name; unknown: one line naming the shipped ones."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return load_table(path)
    folder = shipped_folder(TABLES)
    if folder is not None and (folder / f"{path.stem}.toml").is_file() and path.parent == Path("."):
        return load_table(folder / f"{path.stem}.toml")
    if path.is_dir():  # "does not exist" of a folder that does sends its user looking for the wrong thing
        raise ConfigError(f"'{path}' is a folder, not a table file: name a table's .toml file or a shipped table.")
    if path.suffix == ".toml" or path.parent != Path("."):
        raise ConfigError(f"Table file '{path}' does not exist.")
    names = sorted(p.stem for p in folder.glob("*.toml")) if folder else []
    raise UnknownNameError("table", name_or_path, names)


class TableRun:
    """One table's benchmark as a sweep: the recipe's cell for the table's dataset, model and
    scenario, with the table's methods, under the table's protocol (or ``protocol``)."""

    def __init__(
        self,
        table: PublishedTable,
        registries: Registries,
        store: Store,
        *,
        protocol: str | None = None,
        eval_draw: int = 0,
        data_dir: Path | None = None,
        device: str | None = None,
        seeds: str | None = None,
    ) -> None:
        self.table = table
        table.check_metrics(set(registries.metrics.names()))
        spec = table.spec
        try:
            scenario = parse_scenario(spec.scenario).key
        except ConfigError as err:  # the scenario's own sentence, with where the bad value is
            raise ConfigError(f"Table '{table.name}' ({table.path}): scenario: {err}") from None
        target = (spec.dataset, spec.model, scenario)

        recipe_cells: list[str] = []  # what the recipe offers, for the error when none is the table's

        def in_table(cell: Cell) -> bool:
            r = cell.request
            if not cell.grid_point:
                recipe_cells.append(cell.label)
            return (r.dataset, r.model, parse_scenario(r.forget).key) == target and not cell.grid_point

        self.sweep = Sweep(
            resolve_recipe(spec.recipe),
            registries,
            store,
            seeds=seeds,
            data_dir=data_dir,
            device=device,
            protocol=protocol or spec.protocol,
            eval_draw=eval_draw,
            methods=table.unlearning_methods,
            where=in_table,
        )
        if len(self.sweep.plans) != 1:
            benchmark = f"{spec.dataset} / {spec.model} / {spec.scenario}"
            if not self.sweep.plans:  # the choices: the recipe's own cells
                raise ConfigError(
                    f"Table '{table.name}': recipe '{spec.recipe}' has no cell for {benchmark}. "
                    f"Its cells: {', '.join(dict.fromkeys(recipe_cells)) or 'none'}."
                )
            raise ConfigError(
                f"Table '{table.name}': recipe '{spec.recipe}' has {len(self.sweep.plans)} cells for "
                f"{benchmark}; a table needs exactly one."
            )

    @property
    def benchmark(self) -> str:
        """The benchmark hash the table's runs carry (what its board is keyed by)."""
        _, plan = self.sweep.plans[0]
        return Runner(plan, self.sweep.store).bench.key

    def run(self, reporter: Reporter = SILENT, executor: Executor | None = None) -> int:
        """Run what the store lacks; returns the count of failed runs."""
        return self.sweep.run(reporter, executor=executor).failed

    def board(self) -> Board | None:
        """The table's board: only its cell's runs are read from the store, then matched by benchmark."""
        _, plan = self.sweep.plans[0]
        key = self.benchmark
        boards = leaderboard(
            self.sweep.store,
            self.sweep.info(),
            dataset=plan.dataset.name,
            model=plan.model_name,
            scenario=plan.scenario.key,
            protocol=plan.protocol.name,
            seeds=plan.seeds,  # the seeds asked for (--seeds, else the recipe's), not every one stored
        )
        return next((b for b in boards if b.benchmark == key), None)


def check_eval_draws(table: PublishedTable, eval_draws: int) -> None:
    """``--eval-draws N``: 1 or more, and more than 1 only under a protocol whose evaluation draws."""
    if eval_draws < 1:
        raise ConfigError(f"Bad --eval-draws {eval_draws}: expected 1 or more.")
    if eval_draws > 1 and not get_protocol(table.spec.protocol).draws:
        raise ConfigError(
            f"--eval-draws {eval_draws}: table '{table.name}' is under the '{table.spec.protocol}' protocol, whose "
            "evaluation draws nothing; more than 1 draw needs the paper protocol."
        )


class TableJobs:
    """Every sweep one reproduction makes: the table's own, one per further evaluation draw
    (``eval_draws``), and the clean column's (``clean_column``). What ``--dry-run`` counts and what
    :func:`reproduce` runs are these, so the plan and the run cannot disagree."""

    def __init__(
        self,
        table: PublishedTable,
        registries: Registries,
        store: Store,
        *,
        clean_column: bool = False,
        eval_draws: int = 1,
        data_dir: Path | None = None,
        device: str | None = None,
        seeds: str | None = None,
    ) -> None:
        check_eval_draws(table, eval_draws)
        self.table = table
        self.store = store

        def job(protocol: str | None = None, eval_draw: int = 0) -> TableRun:
            return TableRun(
                table,
                registries,
                store,
                protocol=protocol,
                eval_draw=eval_draw,
                data_dir=data_dir,
                device=device,
                seeds=seeds,
            )

        self.main = job()
        self.draws = [job(eval_draw=k) for k in range(1, eval_draws)]
        # beside a clean table there is nothing to show: it is its own clean column
        self.clean = job(protocol="clean") if clean_column and table.spec.protocol != "clean" else None

    def labelled(self) -> list[tuple[str, TableRun]]:
        """Each sweep with what sets it apart from the table's own ('' for that one)."""
        return [
            ("", self.main),
            *((f"eval draw {k}", d) for k, d in enumerate(self.draws, start=1)),
            *([("clean protocol", self.clean)] if self.clean else []),
        ]

    def estimate(self) -> list[Estimate]:
        """One estimate per sweep; the reference models they share (every protocol and draw evaluates
        the same ones) counted once, as the runs train them once."""
        estimator = PlanEstimator(self.store)
        out = []
        for what, each in self.labelled():
            for cell, plan in each.sweep.plans:
                label = cell.label + (f", {what}" if what else "")
                out.append(estimator.plan(plan, label, grid_point=cell.grid_point, sweep=each.sweep.name))
        return out


def reproduce(
    jobs: TableJobs,
    *,
    reporter: Reporter = SILENT,
    executor: Executor | None = None,
    run: bool = True,
) -> tuple[Reproduction, str, int]:
    """Run the table's jobs (unless ``run`` is False: judge what the store holds), judge every cell,
    and log the report as a ``reproduction`` run. Returns the report, that run's id and the failed runs.

    With ``eval_draws`` N > 1 the jobs hold N - 1 further draws of the paper protocol's random crops:
    the same models re-evaluated (never re-run: their weights are reused), each cell's spread over
    the draws shown and added to its tolerance. ``--dry-run`` plans the very same ``jobs``."""
    table, store = jobs.table, jobs.store
    failed = 0
    if run:
        for _, each in jobs.labelled():
            failed += each.run(reporter, executor)
    draw_boards = [b for b in (d.board() for d in jobs.draws) if b is not None]
    rep = compare(table, jobs.main.board(), jobs.clean.board() if jobs.clean else None, draw_boards)
    return rep, publish_reproduction(store, rep), failed
