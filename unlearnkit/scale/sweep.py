"""Sweeps: a recipe's whole grid run resumably, then its leaderboard published to the store.

Every cell is validated before anything runs. Each run is keyed by its config hash, so running
the same sweep again skips finished runs and redoes only unfinished ones; two sweeps sharing a
store cooperate through claims (:mod:`unlearnkit.claims`). The executor decides where runs
happen: ``local`` here, one after another; ``ray`` over a Ray cluster (:mod:`unlearnkit.distributed`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Unpack

from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.board.leaderboard import Board, MetricInfo, leaderboard, metric_info
from unlearnkit.board.publish import publish_leaderboard
from unlearnkit.discovery.registry import Registries
from unlearnkit.engine.config import Plan, parse_seeds, validate
from unlearnkit.engine.references import ModelMemo
from unlearnkit.engine.runner import Runner, RunResult
from unlearnkit.errors import counted
from unlearnkit.scale.sweep_recipes import (
    MAX_CELLS,
    Cell,
    RecipeFile,
    RecipeOverrides,
    expand,
    load_recipe,
    recipe_scope,
)
from unlearnkit.store.mlflow_store import Store


@dataclass
class SweepReport:
    """What a finished sweep did: run counts by status, wall time, the boards and where they were logged."""

    name: str
    total: int
    counts: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    boards: list[Board] = field(default_factory=list)
    leaderboard_run: str = ""

    @property
    def failed(self) -> int:
        return self.counts["failed"]


class Executor(Protocol):
    """Where a sweep's runs happen: ``execute`` calls ``on_result`` once per (cell, method, seed)."""

    def execute(self, sweep: Sweep, reporter: Reporter, on_result: Callable[[RunResult], None]) -> None: ...


class LocalExecutor:
    """Every cell here, one after another, sharing trained models across cells in memory."""

    name = "local"

    def execute(self, sweep: Sweep, reporter: Reporter, on_result: Callable[[RunResult], None]) -> None:
        memo: ModelMemo = {}
        for cell, plan in sweep.plans:
            reporter.event(
                f"Cell {cell.label}: {counted(len(plan.methods), 'method')} × {counted(len(plan.seeds), 'seed')}"
            )
            Runner(
                plan,
                sweep.store,
                reporter,
                grid_point=cell.grid_point,
                sweep=sweep.name,
                memo=memo,
                on_result=on_result,
            ).run()


class Sweep:
    """A recipe resolved into validated plans, ready to run."""

    def __init__(
        self,
        recipe: str | Path,
        registries: Registries,
        store: Store,
        *,
        seeds: str | None = None,
        protocol: str | None = None,
        eval_draw: int | None = None,
        max_cells: int | None = MAX_CELLS,
        methods: list[str] | None = None,
        where: Callable[[Cell], bool] | None = None,
        **overrides: Unpack[RecipeOverrides],
    ) -> None:
        """``methods`` replaces the recipe's; ``where`` keeps only the cells it accepts (a table's benchmark)."""
        self.spec: RecipeFile = load_recipe(recipe, registries)
        self.registries = registries
        self.store = store
        given = {
            **overrides,
            "seeds": parse_seeds(seeds) if seeds else None,
            "protocol": protocol,
            "eval_draw": eval_draw,
            "methods": methods,
        }
        self.cells: list[Cell] = [
            c for c in expand(self.spec, given, max_cells=max_cells, registries=registries) if where is None or where(c)
        ]
        self.plans: list[tuple[Cell, Plan]] = [(cell, validate(cell.request, registries)) for cell in self.cells]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def total(self) -> int:
        return sum(len(plan.methods) * len(plan.seeds) for _, plan in self.plans)

    def info(self) -> dict[str, MetricInfo]:
        return metric_info(self.registries)

    def run(
        self, reporter: Reporter = SILENT, *, figure: Path | None = None, executor: Executor | None = None
    ) -> SweepReport:
        """Run every cell with ``executor`` (default: here, one after another), then publish the leaderboard."""
        started = time.perf_counter()
        self.store.check()
        report = SweepReport(self.name, self.total)
        advance = reporter.counter(f"sweep {self.name}", self.total)

        def count(result: RunResult) -> None:
            report.counts[result.status] += 1
            advance()

        (executor or LocalExecutor()).execute(self, reporter, count)
        return self.finish(report, started, figure)

    def finish(self, report: SweepReport, started: float, figure: Path | None = None) -> SweepReport:
        """Read the recipe's boards back and log them as this sweep's leaderboard run."""
        report.wall_s = time.perf_counter() - started
        report.boards = self.boards()
        report.leaderboard_run = publish_leaderboard(
            self.store,
            report.boards,
            self.info(),
            self.name,
            params={
                "recipe": self.name,
                "cells": len(self.cells),
                "runs": self.total,
                "wall_s": round(report.wall_s, 1),
            },
            metrics={"wall_s": report.wall_s, **{f"runs_{k}": float(v) for k, v in report.counts.items()}},
            figure=figure,
        )
        return report

    def boards(self) -> list[Board]:
        cells, methods = recipe_scope(self.spec)
        return leaderboard(self.store, self.info(), recipe_cells=cells, recipe_methods=methods)
