"""The installed package, end to end: entry point -> registry -> run -> store -> leaderboard."""

from __future__ import annotations

import importlib.metadata as md

from unlearnkit.config import RunRequest, validate
from unlearnkit.leaderboard import leaderboard
from unlearnkit.plugins import PluginHost
from unlearnkit.runner import Runner
from unlearnkit.store import Store
from unlearnkit.testing import TinyPlugin


def test_entry_point_is_installed():
    (ep,) = [ep for ep in md.entry_points(group="unlearnkit") if ep.value == "unlearnkit_example"]
    assert ep.dist.name == "unlearnkit-example"


def test_grad_ascent_plus_runs_and_lands_on_the_leaderboard():
    host = PluginHost()  # loads every installed `unlearnkit` entry point, this package's included
    host.register(TinyPlugin())  # the tiny test dataset and model
    entry = host.registries.methods.get("grad_ascent_plus")
    assert (entry.provenance.package, entry.provenance.version) == ("unlearnkit-example", "0.1.0")
    assert "forget_confidence" in host.registries.metrics

    request = RunRequest(
        dataset="tiny", model="tiny_cnn", methods=["grad_ascent_plus"], epochs=4, seeds=[1], device="cpu"
    )
    results = Runner(validate(request, host.registries), Store()).run()
    assert [(r.method, r.status) for r in results] == [
        ("original", "finished"),
        ("retrain", "finished"),
        ("grad_ascent_plus", "finished"),
    ]
    (board,) = leaderboard(Store())
    row = next(r for r in board.rows if r.method == "grad_ascent_plus")
    assert (row.package, row.version, row.access) == ("unlearnkit-example", "0.1.0", "forget+retain")
    assert 0 <= row.metrics["forget_confidence"].mean <= 1
