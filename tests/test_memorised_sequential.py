"""The memorisation-stratified and the sequential scenarios: formulas by hand, draws, the score
cache under tampering, and a sequential run end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unlearnkit.api.progress import RecordingReporter
from unlearnkit.api.scenarios import ScenarioData
from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.halves import AUDIT_SEED, SHADOW_ORIGINAL, shadow_seed, universe_halves
from unlearnkit.engine.memorisation import cached, loo_estimate, proxies, training_record, watched
from unlearnkit.engine.prepared import Benchmark, seed_everything
from unlearnkit.engine.references import References
from unlearnkit.engine.runner import Runner
from unlearnkit.engine.splits import make_splits, parse_scenario
from unlearnkit.errors import ConfigError
from unlearnkit.loops.training import fit
from unlearnkit.store.mlflow_store import Store


@pytest.fixture(scope="module")
def regs():
    return PluginHost().registries


def data_with(scores: np.ndarray) -> ScenarioData:
    n = len(scores)
    return ScenarioData(np.arange(n), np.arange(n) % 2, ["a", "b"], scores=lambda source: scores)


# ------------------------------------------------------------------------------------ formulas
def test_the_proxies_by_hand():
    prob = np.array([[0.2, 0.9], [0.6, 0.9], [1.0, 0.3]])  # 3 epochs, 2 images
    hit = np.array([[False, True], [True, True], [True, False]])
    got = proxies(prob, hit)
    assert np.allclose(got["confidence"], [1 - 0.6, 1 - 0.7])
    assert np.allclose(got["learning"], [1 / 3, 1 / 3])


def test_the_leave_one_out_estimate_by_hand():
    halves = np.array([[True, False], [True, True], [False, True], [False, False]])
    correct = np.array([[True, True], [False, True], [True, False], [False, True]])
    # image 0: IN = shadows 0, 1 -> 1/2; OUT = 2, 3 -> 1/2; image 1: IN = 1, 2 -> 1/2; OUT = 0, 3 -> 1
    assert np.allclose(loo_estimate(correct, halves), [0.0, -0.5])
    assert np.isnan(loo_estimate(correct[:, :1], np.ones((4, 1), bool)))[0]


def test_the_audit_and_the_memorisation_estimate_draw_the_same_shadows():
    from unlearnkit.audit import runner as audit_runner
    from unlearnkit.audit.design import make_design

    design = make_design(np.arange(10), np.arange(10, 40), 4, AUDIT_SEED)
    assert (design.halves == universe_halves(40, 4, AUDIT_SEED)).all()
    assert audit_runner.SHADOW_ORIGINAL == SHADOW_ORIGINAL
    assert audit_runner.AuditSettings().seed == AUDIT_SEED
    assert shadow_seed(AUDIT_SEED, 0) == AUDIT_SEED + 1000


# ------------------------------------------------------------------------------------ memorised
def test_memorised_strata_draw_from_their_third(regs):
    scores = np.arange(90, dtype=float)  # image i scores i: thirds are 0-29, 30-59, 60-89
    for stratum, low, high in (("low", 0, 30), ("medium", 30, 60), ("high", 60, 90)):
        scenario = parse_scenario(f"memorised:{stratum}:0.1", regs.scenarios)
        picked = scenario.draw(data_with(scores), seed=0).indices
        assert len(picked) == 9 and ((picked >= low) & (picked < high)).all()
    control = parse_scenario("random:0.1", regs.scenarios).draw(data_with(scores), seed=0).indices
    assert (control < 30).any() and (control >= 60).any()  # a random set of the same size spans the strata


def test_memorised_keys_and_bad_text(regs):
    assert parse_scenario("memorised:high:0.050", regs.scenarios).key == "memorised:high:0.05:confidence"
    assert parse_scenario("memorised:low:0.1:shadows:08", regs.scenarios).needs_scores() == "shadows:8"
    for bad, says in [
        ("memorised:top:0.1", "low, medium, high"),
        ("memorised:high:0.5", "at most 1/3"),
        ("memorised:high:0.1:oracle", "confidence, learning or shadows"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_scenario(bad, regs.scenarios)


def test_the_score_source_enters_the_benchmark_identity(regs):
    def key(forget: str) -> str:
        plan = validate(RunRequest(dataset="synthetic", model="cnn", forget=forget, methods=["finetune"]), regs)
        bench = Benchmark(plan)
        return bench.key

    assert key("memorised:high:0.1") != key("memorised:high:0.1:learning")
    plan = validate(
        RunRequest(dataset="synthetic", model="cnn", forget="memorised:high:0.1", methods=["finetune"]), regs
    )
    assert Benchmark(plan).identity["memorisation_scores"] == "confidence@1"


def test_the_training_record_is_the_originals_training(regs):
    """The proxies are read off a run identical to the original's: the same weights come out."""
    plan = validate(
        RunRequest(dataset="synthetic", model="cnn", forget="memorised:high:0.1", methods=["finetune"], epochs=2),
        regs,
    )
    bench = Benchmark(plan)
    pool = np.arange(len(bench.raw.y_train))
    record = training_record(bench, 0, pool)
    assert record["confidence"].shape == record["learning"].shape == (len(pool),)
    assert ((record["learning"] >= 0) & (record["learning"] <= 1)).all()
    trained = References(bench, Store())._train("original", 0, bench.training_split(pool))[0]
    seed_everything(0)
    watched_model = bench.build_model()
    ctx = watched(bench.context(0, None, method="original"), lambda epoch: None)
    fit(watched_model, bench.training_split(pool), bench.train_recipe, ctx)
    again = watched_model
    for a, b in zip(trained.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_tampered_score_cache_is_recomputed_not_trusted(tmp_path):
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(5, dtype=float)

    warnings: list[str] = []
    first = cached(tmp_path, "k", 5, compute, warnings.append)
    assert np.array_equal(cached(tmp_path, "k", 5, compute, warnings.append), first) and len(calls) == 1
    np.save(tmp_path / "k.npy", np.array([object()], dtype=object), allow_pickle=True)  # a hostile pickle
    got = cached(tmp_path, "k", 5, compute, warnings.append)
    assert np.array_equal(got, first) and len(calls) == 2 and "failed their check" in warnings[-1]
    meta = json.loads((tmp_path / "k.json").read_text())
    np.save(tmp_path / "k.npy", np.zeros(5))  # well-formed, but not what the checksum vouches for
    (tmp_path / "k.json").write_text(json.dumps(meta))
    assert np.array_equal(cached(tmp_path, "k", 5, compute, warnings.append), first) and len(calls) == 3


# ------------------------------------------------------------------------------------ sequential
def test_sequential_requests_are_disjoint_and_successive(regs):
    scenario = parse_scenario("sequential:3:random:0.1", regs.scenarios)
    assert scenario.key == "sequential:3:random:0.1" and scenario.requests == 3 and scenario.rule == "random"
    data = data_with(np.zeros(100))
    requests = scenario.draw_requests(data, 0)
    assert [len(r.indices) for r in requests] == [10, 9, 8]  # a tenth of what is left each time
    flat = np.concatenate([r.indices for r in requests])
    assert len(np.unique(flat)) == len(flat)
    first = parse_scenario("random:0.1", regs.scenarios).draw(data, 0).indices
    assert np.array_equal(np.sort(requests[0].indices), np.sort(first))  # request 1 is the inner set itself
    idx = make_splits(np.arange(100) % 2, np.arange(20) % 2, scenario, 0, ["a", "b"])
    assert len(idx.requests) == 3 and np.array_equal(idx.forget, np.sort(flat))


def test_sequential_bad_text(regs):
    for bad, says in [
        ("sequential:1:random:0.1", "from 2 to"),
        ("sequential:3", "a scenario after"),
        ("sequential:2:sequential:2:random:0.1", "do not nest"),
        ("sequential:2:moon:1", "no scenario"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_scenario(bad, regs.scenarios)


def test_a_sequential_run_applies_the_method_request_after_request(host, capsys):
    """Three requests: three retrained references (one per step, on what is kept), a step curve per
    metric whose last point is the final value, and a mean over the requests."""
    request = RunRequest(
        dataset="tiny",
        model="tiny_cnn",
        methods=["finetune"],
        epochs=3,
        seeds=[1],
        device="cpu",
        forget="sequential:3:random:0.1",
    )
    store = Store()
    results = Runner(validate(request, host.registries), store, RecordingReporter()).run()
    final = {r.method: r for r in results}
    assert {r.status for r in results} == {"finished"}
    retrained = store.search({"run_type": "train", "role": "retrained"})
    assert len(retrained) == 3
    for method in ("finetune", "original", "retrain"):  # docs/protocols.md: every row, every metric, time_s too
        row = final[method].metrics
        means = [name for name in row if name.endswith("_mean_requests")]
        assert "acc_forget_mean_requests" in means and "time_s_mean_requests" in means
        for name in means:
            history = store.client.get_metric_history(final[method].run_id, name.removesuffix("_mean_requests"))
            assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3], name
            values = [m.value for m in sorted(history, key=lambda m: m.step)]
            assert row[name.removesuffix("_mean_requests")] == pytest.approx(values[-1], nan_ok=True), name
            assert row[name] == pytest.approx(np.mean(values), nan_ok=True), name
    board_gap(capsys, final, host)
    # a second run finds everything stored: nothing is retrained or recomputed
    again = Runner(validate(request, host.registries), store, RecordingReporter()).run()
    assert {r.status for r in again} == {"skipped"}


def board_gap(capsys, final: dict, host) -> None:
    """The board's Avg Gap is over the last request's values, never the means (docs/protocols.md)."""
    from tests.invoke import invoke
    from unlearnkit.board.leaderboard import metric_info

    code, out, _ = invoke(["leaderboard", "-f", "json"], capsys)
    rows = {r["method"]: r for r in json.loads(out)[0]["rows"]}
    assert code == 0 and "acc_forget_mean_requests" in rows["finetune"]["metrics"]
    ours, gold = final["finetune"].metrics, final["retrain"].metrics
    gap_metrics = [m for m, info in metric_info(host.registries).items() if info.in_avg_gap and m in ours]
    assert gap_metrics and not any(m.endswith("_mean_requests") for m in gap_metrics)
    by_hand = np.mean([abs(ours[m] - gold[m]) for m in gap_metrics])
    assert rows["finetune"]["avg_gap"] == pytest.approx(by_hand)


@pytest.mark.parametrize("scores", ["", '\nscores = ["klom"]\nensemble = 2'])
def test_an_audit_of_successive_requests_is_refused_in_one_line(host, tmp_path, capsys, scores):
    """U-LiRA and the ensemble scores compare models that saw one deletion: a chain is refused
    before anything trains, naming the scenario."""
    from tests.invoke import invoke

    recipe = tmp_path / "seq.toml"
    recipe.write_text(
        'name = "seq"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nscenarios = ["sequential:2:random:0.1"]\n'
        f'methods = ["finetune"]\nseeds = [1]\nepochs = 2\ndevice = "cpu"\n\n[audit]\nshadows = 4{scores}\n'
    )
    code, out, err = invoke(["audit", str(recipe)], capsys)
    assert code != 0
    assert "Scenario 'sequential:2:random:0.1' makes 2 successive deletion requests" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
