"""The installed package, end to end (the one full run): entry point -> registry -> run -> store -> leaderboard."""

from __future__ import annotations

from unlearnkit.board.leaderboard import leaderboard, metric_info
from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.runner import Runner
from unlearnkit.store.mlflow_store import Store
from unlearnkit.testing import TinyPlugin


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
    (board,) = leaderboard(Store(), metric_info(host.registries))
    assert [r.method for r in board.rows] == ["original", "retrain", "grad_ascent_plus"]  # references first
    row = board.rows[-1]
    assert (row.package, row.version, row.access, row.seeds) == ("unlearnkit-example", "0.1.0", "forget+retain", [1])
    assert 0 <= row.metrics["forget_confidence"].mean <= 1  # its metric ran for every row of the benchmark
    assert all("forget_confidence" in r.metrics for r in board.rows)
