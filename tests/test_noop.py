"""A method that leaves the original as it was is a no-op: tagged when it runs, labelled on every
board (terminal, markdown, CSV, JSON, figure) and never marked best, however good its numbers look
(they are the original's). A method that changes the model is not labelled."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from tests.invoke import invoke
from unlearnkit.api.contracts import Method
from unlearnkit.api.hookspecs import hookimpl
from unlearnkit.api.types import DataAccess
from unlearnkit.board.leaderboard import leaderboard, metric_info
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.runner import Runner
from unlearnkit.store.mlflow_store import Store


class Keep(Method):
    """Returns the model it was given: the exact no-op."""

    name = "keep"
    summary = "Returns the model unchanged (test)."
    access = DataAccess.FORGET
    algorithm_version = 1

    def unlearn(self, model, data, ctx):
        data.forget  # noqa: B018  (reads what it declares, like a method that found nothing to change)
        return model


class Nudge(Method):
    """Moves one bias by 1e-5: other weights, the same answers on every split."""

    name = "nudge"
    summary = "Moves one bias by a rounding error (test)."
    access = DataAccess.FORGET
    algorithm_version = 1

    def unlearn(self, model, data, ctx):
        with torch.no_grad():
            bias = [p for n, p in model.named_parameters() if n.endswith("bias")][-1]
            bias[0] += 1e-5
        return model


class Shrink(Method):
    """Halves every weight: a real change (the control)."""

    name = "shrink"
    summary = "Halves every weight (test)."
    access = DataAccess.FORGET
    algorithm_version = 1
    factor = 0.5

    def unlearn(self, model, data, ctx):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(self.factor)
        return model


class Jolt(Shrink):
    """A second real change, so that two methods compete for "best"."""

    name = "jolt"
    summary = "Scales every weight by 0.8 (test)."
    factor = 0.8


class NoOpMethods:
    @hookimpl
    def register_methods(self, register):
        for cls in (Keep, Nudge, Shrink, Jolt):
            register(cls)


@pytest.fixture
def noop_host(host):
    plugin = NoOpMethods()
    host.register(plugin)
    yield host
    host.unregister(plugin)


@pytest.fixture
def runs(noop_host):
    request = RunRequest(
        dataset="tiny",
        model="tiny_cnn",
        methods=["keep", "nudge", "shrink", "jolt"],
        epochs=30,  # an original that memorised D_f: no weak mark on these boards
        seeds=[1],
        device="cpu",
        original_min_retain=0.0,  # only the no-op marks on these boards
    )
    results = Runner(validate(request, noop_host.registries), Store()).run()
    return {r.method: Store().get(r.run_id) for r in results}


NO_OPS = {"keep", "nudge"}


def test_a_method_that_changes_nothing_is_tagged_when_it_runs(runs):
    assert runs["keep"].tag("no_op") == "weights"  # the state dict is the original's, bit for bit
    assert runs["nudge"].tag("no_op") == "outputs"  # other weights, the same answers on every split
    assert not runs["shrink"].tag("no_op") and not runs["jolt"].tag("no_op")
    assert not runs["original"].tag("no_op")  # a reference row is its model by definition
    assert runs["keep"].metrics["acc_forget"] == runs["original"].metrics["acc_forget"]


def test_every_board_labels_a_no_op_and_never_marks_it_best(runs, noop_host, capsys):
    from unlearnkit.board import tables
    from unlearnkit.board.plots import board_figure

    info = metric_info(noop_host.registries)
    (board,) = leaderboard(Store(), info)
    head, cells = tables.board_cells(board, info)
    by_method = {row.method: row_cells for row, row_cells in zip(board.rows, cells)}
    bests = {m for m, row_cells in by_method.items() if any(best for _, best in row_cells)}
    assert bests and not bests & NO_OPS  # the controls compete; the no-ops (the original's numbers) never win
    assert {by_method[m][0][0] for m in NO_OPS} == {"keep ∅", "nudge ∅"}
    assert by_method["shrink"][0][0] == "shrink"

    code, out, _ = invoke(["leaderboard"], capsys)
    assert code == 0 and "keep ∅" in out and "nudge ∅" in out and "shrink ∅" not in out
    assert "∅ no-op: the unlearned model is indistinguishable from the original" in " ".join(out.split())
    code, out, _ = invoke(["leaderboard", "--format", "markdown"], capsys)
    rows = {line.split(" | ")[0].strip("| ").split(" ")[0]: line for line in out.splitlines() if line.startswith("| ")}
    assert "| keep ∅ |" in out and "| nudge ∅ |" in out and "∅ no-op" in out
    assert not any("**" in rows[m] for m in NO_OPS) and any("**" in rows[m] for m in ("shrink", "jolt"))
    code, out, _ = invoke(["leaderboard", "--format", "json"], capsys)
    flags = {r["method"]: (r["no_op"], r["no_op_seeds"]) for r in json.loads(out)[0]["rows"]}
    assert flags == {"original": (False, 0), "retrain": (False, 0), "keep": (True, 1), "nudge": (True, 1)} | {
        m: (False, 0) for m in ("shrink", "jolt")
    }
    code, out, _ = invoke(["leaderboard", "--format", "csv"], capsys)
    labelled = {r["method"] for r in csv.DictReader(io.StringIO(out)) if r["no_op"] == "True"}
    assert labelled == NO_OPS

    texts = [t for ax in board_figure([board]).axes for t in [ax.get_title(), *(x.get_text() for x in ax.texts)]]
    legend = [t.get_text() for ax in board_figure([board]).axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("∅ no-op (model = original; never best): keep, nudge" in t for t in texts)
    assert {"keep ∅", "nudge ∅", "shrink"} <= set(legend) and "shrink ∅" not in legend
