"""A leaderboard kept in the store: its markdown, CSV and figure logged as one MLflow run, so the
table a sweep (or a multi-method ``run``) ends with can be found again in the UI.

The board run is held like any claim (host, PID, a renewed lease): a publish killed midway leaves a
RUNNING run that the next publish fails as abandoned, instead of one that stays RUNNING for good."""

from __future__ import annotations

import tempfile
from pathlib import Path

from unlearnkit._version import __version__
from unlearnkit.board import published, tables
from unlearnkit.board.leaderboard import Board, MetricInfo, leaderboard, metric_info
from unlearnkit.board.plots import plot_boards
from unlearnkit.discovery.registry import Registries
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import Store, tag


def publish_leaderboard(
    store: Store,
    boards: list[Board],
    info: dict[str, MetricInfo],
    name: str,
    *,
    params: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
    figure: Path | None = None,
) -> str:
    """Log ``boards`` as a finished ``leaderboard`` run named ``leaderboard-<name>``; returns its id.
    ``figure``: also write the figure there (it is logged either way)."""
    markdown = tables.to_markdown(boards, info)
    claims.reap(store, {"run_type": "leaderboard"})  # publishes that died midway: failed, never left RUNNING
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_boards(boards, figure or Path(tmp) / "leaderboard.png")
        run_id = store.start_run(
            f"leaderboard-{name}",
            {tag("run_type"): "leaderboard", tag("sweep"): name, **claims.owner_tags()},
            params or {},
        )
        with claims.held(store, run_id):
            store.log_text(run_id, markdown, "leaderboard.md")
            store.log_text(run_id, tables.to_csv(boards, info), "leaderboard.csv")
            store.log_text(run_id, tables.to_json(boards), "leaderboard.json")
            store.log_file(run_id, path)
            if metrics:
                store.log_metrics(run_id, metrics)
            store.finish(run_id)
    return run_id


def publish_benchmark_board(store: Store, registries: Registries, benchmark: str) -> str:
    """A ``run`` with several methods keeps its benchmark's leaderboard in the store, as a sweep
    does; returns the board run's id ("" when the store has no finished row of it)."""
    info = metric_info(registries)
    boards = [b for b in leaderboard(store, info) if b.benchmark == benchmark]
    return publish_leaderboard(store, boards, info, f"run-{benchmark[:8]}") if boards else ""


def publish_reproduction(store: Store, rep: published.Reproduction) -> str:
    """Log a table's verdicts as a finished ``reproduction`` run (its report as markdown, CSV and
    JSON, the table file itself), with the code version and the table's hash; returns its id."""
    table = rep.table
    claims.reap(store, {"run_type": "reproduction"})
    run_id = store.start_run(
        f"reproduction-{table.name}",
        {
            tag("run_type"): "reproduction",
            tag("reproduction_table"): table.name,
            tag("table_hash"): table.sha256,
            **claims.owner_tags(),
        },
        {
            "table": table.name,
            "table_sha256": table.sha256,
            "recipe": table.spec.recipe,
            "protocol": table.spec.protocol,
            "unlearnkit_version": __version__,
        },
    )
    with claims.held(store, run_id):
        store.log_text(run_id, published.to_markdown(rep), "reproduction.md")
        store.log_text(run_id, published.to_csv(rep), "reproduction.csv")
        store.log_text(run_id, published.to_json(rep), "reproduction.json")
        store.log_text(run_id, table.path.read_text(encoding="utf-8"), f"{table.name}.toml")
        store.log_metrics(
            run_id,
            {
                "cells_hold": float(rep.count("holds")),
                "cells_outside": float(rep.count("outside")),
                "cells_not_run": float(rep.count("not run")),
                "holds": float(rep.holds),
            },
        )
        store.finish(run_id)
    return run_id
