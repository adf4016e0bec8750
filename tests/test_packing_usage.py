"""Packing as it is used: Ctrl-C in a pack, models vmap cannot stack, bad pack sizes, the benchmark."""

from __future__ import annotations

import copy
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.test_packing import RECIPE, alone, jobs
from unlearnkit.errors import ConfigError
from unlearnkit.loops.packing import Packed, fit_many, stackable, vmap_problem

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def ctrl_c():
    """``press()`` from any thread: SIGINT to the main thread, as a terminal's Ctrl-C gives it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None
    yield lambda: signal.pthread_kill(main, signal.SIGINT)
    signal.signal(signal.SIGINT, before)


def returned(*args: Any, **kwargs: Any) -> list[Packed]:
    """``fit_many``, failing the test (not ending the session) when it raises the interrupt."""
    try:
        return fit_many(*args, **kwargs)
    except KeyboardInterrupt:
        pytest.fail("fit_many raised the interrupt: the models the pack had finished are lost with it")


def test_ctrl_c_in_a_threads_pack_keeps_the_finished_model_and_stops_the_next_within_a_step(ctrl_c):
    pack = jobs([40, 40, 40, 40])  # 9 steps each; one worker: model 0, then 1, 2, 3
    want = alone(pack[0])
    reporters = [job.ctx.reporter for job in pack]
    began = time.perf_counter()
    out = returned(pack, RECIPE, per_device=1, strategy="threads", on_done=lambda i: ctrl_c() if i == 0 else None)
    wall = time.perf_counter() - began
    assert out[0].error is None  # returned, not raised: the caller keeps model 0 and re-raises the interrupt
    assert all(isinstance(p.error, KeyboardInterrupt) for p in out[1:])
    assert all(torch.equal(pack[0].model.state_dict()[k], v) for k, v in want.items())
    assert pack[1].ctx.series == []  # stopped at its next step, not trained to the end
    assert [job.ctx.reporter for job in pack] == reporters  # put back
    # its share of the wall time is over the training it paid for (one model and a step), not over four
    assert out[0].seconds > 0.6 * wall


def test_ctrl_c_between_stacked_packs_keeps_the_trained_pack(ctrl_c):
    pack = jobs([40, 40, 40, 40])
    start = [copy.deepcopy(job.model.state_dict()) for job in pack]

    def interrupt(i: int) -> None:  # Ctrl-C landing on the main thread as the first pack ends
        if i == 0:
            raise KeyboardInterrupt

    out = returned(pack, RECIPE, per_device=2, strategy="stack", on_done=interrupt)
    assert [p.error for p in out[:2]] == [None, None] and [p.strategy for p in out[:2]] == ["stack", "stack"]
    assert all(isinstance(p.error, KeyboardInterrupt) for p in out[2:])
    for job, before in zip(pack[2:], start[2:]):  # never trained
        assert all(torch.equal(job.model.state_dict()[k], v) for k, v in before.items())


class FunctionalDropout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.3, self.training)


class SignBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.mean() > 0 else -x  # data-dependent control flow


@pytest.mark.parametrize("layer", [FunctionalDropout(), SignBranch()], ids=["functional dropout", "branch"])
def test_a_model_vmap_cannot_run_trains_with_threads_not_fails_the_pack(layer):
    pack = jobs([40, 40])
    for job in pack:
        job.model.insert(4, layer)
    assert stackable(pack, RECIPE) == ""  # nothing in its modules says so: only a trial step finds it
    start = [copy.deepcopy(job.model.state_dict()) for job in pack]
    rng = torch.get_rng_state()
    assert "cannot be vmapped" in vmap_problem(pack, RECIPE)
    assert torch.equal(torch.get_rng_state(), rng)  # the trial draws nothing from the streams
    for job, before in zip(pack, start):
        assert all(torch.equal(job.model.state_dict()[k], v) for k, v in before.items())
    singles = [alone(job) for job in pack]
    torch.manual_seed(7)  # the dropout masks: the same draws for the pack as for the models alone
    out = fit_many(pack, RECIPE, per_device=2, strategy="stack")
    assert [(p.strategy, p.error) for p in out] == [("threads", None), ("threads", None)]
    if isinstance(layer, SignBranch):  # deterministic: the very models trained alone
        for job, want in zip(pack, singles):
            assert all(torch.equal(job.model.state_dict()[k], v) for k, v in want.items())


def test_a_stackable_pack_passes_the_trial_step():
    assert vmap_problem(jobs([40, 40]), RECIPE) == ""


@pytest.mark.parametrize("per_device", [0, -1, True])
@pytest.mark.parametrize("strategy", ["threads", "stack"])
def test_a_pack_size_below_one_is_refused(per_device, strategy):
    with pytest.raises(ConfigError, match="Bad per_device .*: expected a whole number of 1 or more"):
        fit_many(jobs([40, 40]), RECIPE, per_device=per_device, strategy=strategy)


# --- benchmarks/ensemble.py ----------------------------------------------------------------------------


@pytest.fixture
def ensemble(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import ensemble as module

    yield module
    sys.modules.pop("ensemble", None)


def test_the_benchmark_always_has_its_baseline_first(ensemble):
    assert ensemble.pack_sizes("2,4") == [1, 2, 4]  # "vs one at a time" is against one at a time
    assert ensemble.pack_sizes("4,1,2,4") == [1, 4, 2]


@pytest.mark.parametrize(
    "flag,value",
    [("--per-device", "0"), ("--per-device", "a,2"), ("--strategy", "threds"), ("--models", "0")],
)
def test_the_benchmark_refuses_bad_arguments_in_one_line(ensemble, monkeypatch, capsys, flag, value):
    monkeypatch.setattr(sys, "argv", ["ensemble.py", flag, value])
    with pytest.raises(SystemExit) as exit:
        ensemble.main()
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"argument {flag}:" in err and "Traceback" not in err


def test_the_benchmark_warms_up_before_its_first_clock_and_runs_its_baseline_first(ensemble, monkeypatch, tmp_path):
    """The first row once paid the process's one-off set-up (about 1.5 s on digits: three one-epoch trainings)."""
    import json

    events: list[str] = []
    warm_up, fit = ensemble.warm_up, ensemble.fit
    monkeypatch.setattr(ensemble, "warm_up", lambda *a: (events.append("warm-up"), warm_up(*a)))
    monkeypatch.setattr(ensemble, "fit", lambda *a, **k: (events.append("fit"), fit(*a, **k))[1])
    out = tmp_path / "rows.json"
    argv = ["ensemble.py", "--dataset", "synthetic", "--epochs", "1", "--models", "2", "--per-device", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu", "--json", str(out)])
    ensemble.main()
    assert events[0] == "warm-up"
    rows = json.loads(out.read_text())["rows"]
    assert [(r["strategy"], r["per device"]) for r in rows] == [("one at a time", 1), ("threads", 2)]
