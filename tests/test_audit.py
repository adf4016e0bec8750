"""`unlearnkit audit`: the shadow design, balanced leave-one-out scoring, the sanity check, the store (cached
and shared shadows, resumable), the [audit] recipe table and the leaderboard's U-LiRA columns."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.invoke import invoke
from unlearnkit.audit.design import PowerCheck, make_design, nan_reasons, power_check, score_row, shadow_seed
from unlearnkit.audit.shadow_splits import shadow_halves
from unlearnkit.errors import ConfigError
from unlearnkit.scale.sweep_recipes import load_recipe

HERE = Path(__file__).parent
PLUGINS = HERE / "fixtures" / "plugins"
ROOT = HERE.parent

TINY_RECIPE = """
name = "tiny-audit"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["lotus"]
seeds = [1]
epochs = 4
device = "cpu"

[options.lotus]
batch_size = 16
epochs = 2

[audit]
shadows = 4
"""


def simulated(k: int, delta: float, seed: int, n: int = 200):
    """Scaled-logit-like scores: a per-example mean, unit noise, ``delta`` more when the example is IN."""
    rng = np.random.default_rng(seed)
    design = make_design(np.arange(n), np.arange(n, 2 * n), k, seed)
    in_mask, out_mask = design.masks()
    x = rng.normal(0, 2, len(design.pool))[None] + rng.normal(0, 1, in_mask.shape) + delta * in_mask
    logits = np.stack([x, np.zeros_like(x)], axis=-1)  # scaled_logit of (x, 0) with label 0 is x
    return logits, np.zeros(len(design.pool), dtype=np.int64), in_mask, out_mask


# --- the shadow design --------------------------------------------------------------------------------


def test_design_forgets_each_audited_example_in_half_the_shadows_and_never_sees_it_in_the_others():
    forget, retain = np.array([3, 7, 11, 20, 21, 40]), np.array([0, 1, 2, 4, 5, 6, 8, 9, 30, 31, 50, 60])
    design = make_design(forget, retain, 6, seed=5)
    assert design.shadows == 6 and np.array_equal(design.pool, np.sort(forget))
    assert np.array_equal(design.universe, np.sort(np.concatenate([forget, retain])))
    in_mask, out_mask = design.masks()
    assert (in_mask.sum(axis=0) == 3).all() and (out_mask.sum(axis=0) == 3).all()  # K/2 IN, K/2 OUT each
    assert not (in_mask & out_mask).any() and (in_mask | out_mask).all()  # no pool example is "neither"
    for k in range(6):
        trained = design.trained_on(k)
        assert np.array_equal(design.forget(k), np.intersect1d(design.pool, trained))
        assert np.array_equal(np.union1d(design.forget(k), design.retain(k)), trained)
        assert not np.intersect1d(design.retain(k), design.pool).size
    assert sum(len(design.trained_on(k)) for k in range(6)) == 3 * len(design.universe)  # halves on average
    again = make_design(forget, retain, 6, seed=5)
    assert again.fingerprint() == design.fingerprint() != make_design(forget, retain, 6, seed=6).fingerprint()
    assert len({shadow_seed(3407, k) for k in range(64)}) == 64
    with pytest.raises(ValueError, match="at least 4 shadows"):
        make_design(forget, retain, 2, seed=0)


def test_retained_sample_is_trained_on_and_kept_by_half_the_shadows_and_leaves_the_halves_alone():
    forget, retain = np.arange(0, 40, 4), np.setdiff1d(np.arange(60), np.arange(0, 40, 4))
    design = make_design(forget, retain, 6, seed=5)
    assert len(design.retained) == len(design.pool) == 10  # as many as the pool
    assert np.isin(design.retained, retain).all() and len(np.unique(design.retained)) == 10
    in_mask, out_mask = design.retained_masks()
    assert (in_mask.sum(axis=0) == 3).all() and (in_mask ^ out_mask).all()
    for k in range(6):  # IN = in shadow k's retain set (trained on, kept when the method ran), OUT = never seen
        assert np.array_equal(design.retained[in_mask[k]], np.intersect1d(design.retained, design.retain(k)))
        assert not np.intersect1d(design.retained[out_mask[k]], design.trained_on(k)).size
    # The halves, hence every shadow model's training set and store key, do not depend on the sample.
    halves = shadow_halves(len(design.universe), 6, np.random.SeedSequence([5, 0x5AD0]))
    small = make_design(forget, retain, 6, seed=5, retained_sample=3)
    assert np.array_equal(design.halves, halves) and np.array_equal(small.halves, halves)
    assert len(small.retained) == 3 and small.fingerprint() != design.fingerprint()
    assert np.array_equal(make_design(forget, retain, 6, seed=5).retained, design.retained)  # seeded
    assert len(make_design(forget, retain, 6, seed=5, retained_sample=999).retained) == len(retain)  # capped


# --- scoring ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, fixed", [("online", True), ("online", False), ("offline", True)])
@pytest.mark.parametrize("k", [4, 8])
def test_no_signal_scores_chance_and_a_signal_is_detected(mode, fixed, k):
    """Balanced leave-one-out: with IN = OUT the AUC is 0.5 in expectation (unbalanced it would be 0.43 at
    K = 4), and a one-sigma memorisation shift is found."""
    null = [score_row(*simulated(k, 0.0, s), mode=mode, fixed_variance=fixed).auc for s in range(6)]
    assert abs(np.mean(null) - 0.5) < 0.025, null
    signal = [score_row(*simulated(k, 1.0, s), mode=mode, fixed_variance=fixed).auc for s in range(3)]
    assert min(signal) > 0.57, signal


def test_scores_are_pairs_of_target_shadow_and_example_with_reasons_for_nan():
    logits, labels, in_mask, out_mask = simulated(4, 3.0, 0, n=100)
    row = score_row(logits, labels, in_mask, out_mask)
    assert np.isfinite(row.scores[in_mask | out_mask]).all() and np.isnan(row.scores[~(in_mask | out_mask)]).all()
    s = row.summary
    assert s["n_members"] == in_mask.sum() == 200 and s["n_nonmembers"] == 200 and row.examples_member == 100
    assert row.auc > 0.9 and math.isfinite(s["ulira_tpr_at_1fpr"]) and math.isnan(s["ulira_tpr_at_01fpr"])
    assert set(row.notes) == {"ulira_tpr_at_01fpr"} and ">= 1000 scored non-members" in row.notes["ulira_tpr_at_01fpr"]
    empty = {"ulira_auc": math.nan, "n_members": 0, "n_nonmembers": 3}
    assert (
        "nothing to rank"
        in nan_reasons({**empty, "ulira_tpr_at_1fpr": math.nan, "ulira_tpr_at_01fpr": math.nan})["ulira_auc"]
    )


def test_power_check_needs_a_difference_beyond_the_auc_noise():
    strong = score_row(*simulated(8, 2.0, 1))
    null = score_row(*simulated(8, 0.0, 2))
    verdict = power_check(strong, null)
    assert verdict.ok and verdict.difference > verdict.threshold
    assert power_check(strong, null).threshold == verdict.threshold  # seeded bootstrap: deterministic
    # Below the null noise of 200 distinct examples a side taken alone (the pairs add information), not zero.
    high = 3 * math.sqrt(2 * (2 * 200 + 1) / (12 * 200 * 200))
    assert 0.02 < verdict.threshold < high, (verdict.threshold, high)
    small = power_check(score_row(*simulated(8, 2.0, 1, n=50)), score_row(*simulated(8, 0.0, 2, n=50)))
    assert small.threshold > 1.5 * verdict.threshold  # a quarter of the examples: about twice the noise
    passed = [power_check(score_row(*simulated(8, 0.0, s)), null, resamples=100).ok for s in range(3, 8)]
    assert not any(passed)
    weak = PowerCheck(0.56, 0.5, 0.12, False)
    assert "under-powered" in weak.message(8) and "8 shadows" in weak.message(8)


# --- the [audit] recipe table -------------------------------------------------------------------------


def test_audit_table_defaults_unknown_keys_and_flag_precedence(tmp_path, host):
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    path = tmp_path / "a.toml"
    path.write_text(TINY_RECIPE)
    table = load_recipe(path).audit
    assert (table.shadows, table.mode, table.fixed_variance, table.methods, table.seed) == (
        4,
        "online",
        None,
        None,
        None,
    )
    job = Audit(path, host.registries, Store(), shadows=6, mode="offline", methods="finetune")
    s = job.settings
    assert (s.shadows, s.mode, s.variance_fixed, s.seed) == (6, "offline", True, 1)  # seed: the recipe's first
    assert [m.name for m in job.plans[0][1].methods] == ["original", "retrain", "finetune"]
    assert not Audit(path, host.registries, Store(), shadows=64).settings.variance_fixed
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_RECIPE + "shadow = 3\n")
    with pytest.raises(
        ConfigError, match=r"Unknown key 'audit.shadow' .* Valid \[audit\] keys: ensemble, fixed_variance, "
    ):
        load_recipe(bad)
    bad.write_text(TINY_RECIPE.replace("shadows = 4", "shadows = 2"))
    with pytest.raises(ConfigError, match="Bad value for 'audit.shadows'"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="at least 4 shadows"):
        Audit(path, host.registries, Store(), shadows=3)
    with pytest.raises(ConfigError, match="Valid modes: online, offline"):
        Audit(path, host.registries, Store(), mode="both")
    with pytest.raises(ConfigError, match=r"^Bad --methods ',': it names nothing"):
        Audit(path, host.registries, Store(), methods=",")  # an empty shell variable: not the recipe's list


def test_shipped_audit_recipe_parses():
    spec = load_recipe(ROOT / "recipes" / "audit-mnist.toml")
    assert spec.audit.shadows == 8 and spec.data_dir == "../shared/data" and set(spec.methods) == {"lotus", "finetune"}


# --- end to end on tiny data ----------------------------------------------------------------------------


def runs(run_type: str, **tags: str) -> list:
    from unlearnkit.store.mlflow_store import Store

    return Store().search({"run_type": run_type, **tags}, finished_only=False)


def test_tiny_audit_end_to_end_reuses_everything_and_feeds_the_leaderboard(host, tmp_path, capsys, monkeypatch):
    from unlearnkit.audit.job import Audit
    from unlearnkit.audit.runner import SHADOW_ROLES
    from unlearnkit.board import tables
    from unlearnkit.board.leaderboard import leaderboard, metric_info
    from unlearnkit.engine.config import validate
    from unlearnkit.engine.runner import Runner
    from unlearnkit.scale.sweep_recipes import expand
    from unlearnkit.store import claims
    from unlearnkit.store.mlflow_store import Store, tag

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)  # one process here: no rival claim to wait for
    path = tmp_path / "tiny-audit.toml"
    path.write_text(TINY_RECIPE)

    code, out, err = invoke(["audit", str(path)], capsys)
    assert code == 0, err
    assert "8 of 8 shadow models to train (0 in the store), 4 of 4 method runs to do" in err
    for row in ("original", "retrain", "lotus"):
        assert f"│ {row}" in out
    assert "8 shadow models trained, 4 method runs" in out
    trained = {role: runs("train", role=role) for role in SHADOW_ROLES}
    assert [len(v) for v in trained.values()] == [4, 4] and all(
        r.status == "FINISHED" for v in trained.values() for r in v
    )
    assert len(runs("audit-shadow")) == 12 and len(runs("audit")) == 3
    (audit_rec,) = [r for r in runs("audit") if r.tag("method") == "lotus"]
    assert audit_rec.tag("shadows") == "4" and audit_rec.tag("mode") == "online"
    assert audit_rec.tag("ulira_power") in ("ok", "underpowered") and 0 <= audit_rec.metrics["ulira_auc"] <= 1
    assert audit_rec.metrics["n_members"] == 4 * 32 // 2 and "ulira_tpr_at_1fpr" not in audit_rec.metrics  # NaN
    assert ">= 100 scored non-members" in audit_rec.tag("ulira_nan")
    # The signed metrics, the retained audit and the bootstrap intervals, on every row.
    for rec in runs("audit"):
        m = rec.metrics
        for name in ("ulira_auc", "ulira_direction", "ulira_retained_auc"):
            assert m[f"{name}_low"] <= m[name] <= m[f"{name}_high"], (rec.tag("method"), name, m)
        assert 0 <= m["ulira_over_unlearned"] <= 1 and 0 <= m["ulira_retained_auc"] <= 1
        assert rec.params["n_retained"] == "32" and m["ulira_auc_high"] - m["ulira_auc_low"] > 0.02
    assert "direction Δφ [95%]" in out and "retained AUC [95%]" in out
    from unlearnkit.cli.audit import cell

    mark = "‡" if audit_rec.tag("ulira_power") == "underpowered" else ""
    assert f" {cell('ulira_direction', audit_rec.metrics)}{mark} │" in out  # e.g. "+0.12 [0.05, 0.19]": signed
    assert cell("ulira_direction", {"ulira_direction": -0.004, "ulira_direction_low": -0.001}) == "-0.00"
    assert (
        cell("ulira_direction", {"ulira_direction": 0.12, "ulira_direction_low": -0.001, "ulira_direction_high": 0.19})
        == "+0.12 [0.00, 0.19]"
    )

    # The audit's keys for the shadow models are the ones References stored (the same formula).
    (job_runner,) = Audit(path, host.registries, Store()).runners
    job_runner.check()
    for role in SHADOW_ROLES:
        assert {r.tag("config_hash") for r in trained[role]} == {job_runner.model_key(role, k) for k in range(4)}
    # Each row's logits on a shadow: the pool (32), then the retained sample (32), one artifact.
    shadow_rec = runs("audit-shadow", method="lotus")[0]
    logits = job_runner.load_logits(shadow_rec)
    assert logits is not None and logits.shape[0] == 64 and job_runner.forwarded == 64

    # Re-scoring offline: nothing trained, no method re-run, no model forwarded — only 3 new audit rows.
    code, out, err = invoke(["audit", str(path), "--mode", "offline"], capsys)
    assert code == 0, err
    assert "0 of 8 shadow models to train (8 in the store), 0 of 4 method runs to do" in err
    assert "0 shadow models trained, 0 method runs" in out
    assert "offline one-sided (paper)" in out and "two-sided offline test of" in out  # title and caption
    assert sum(len(runs("train", role=role)) for role in SHADOW_ROLES) == 8
    assert len(runs("audit-shadow")) == 12 and len(runs("audit")) == 6
    # The same audit again: every row in the store.
    code, out, err = invoke(["audit", str(path), "--mode", "offline"], capsys)
    assert code == 0 and "3 of 3 rows scored: nothing to compute" in err and out.count("in store") == 3
    assert len(runs("audit")) == 6

    # The leaderboard merges the (most recent, same-K) audit onto the rows of the benchmark `unlearnkit run`
    # would fill: the same benchmark key (a finished unlearn run of it stands in for running it here).
    (cell,) = expand(load_recipe(path))
    bench_key = Runner(validate(cell.request, host.registries), Store()).bench.key
    assert job_runner.bench.key == bench_key and audit_rec.tag("benchmark") == bench_key
    store = Store()
    tags = {k: v for k, v in audit_rec.tags.items() if k.startswith("unlearnkit.")}
    stand_in = store.start_run("lotus-run", {**tags, tag("run_type"): "unlearn", tag("config_hash"): "x"}, {})
    store.log_metrics(stand_in, {"acc_forget": 0.5})
    store.finish(stand_in)
    (board,) = leaderboard(Store(), metric_info(host.registries))
    assert board.audit.startswith("4 shadows, offline one-sided (paper)")
    rows = {r.method: r for r in board.rows}
    assert set(rows) == {"original", "retrain", "lotus"}
    assert rows["lotus"].seeds == [1] and "acc_forget" in rows["lotus"].metrics
    assert all("ulira_auc" in r.metrics for r in rows.values())
    head, _ = tables.board_cells(board, metric_info(host.registries), ["default"], wide=False)
    assert "ulira_auc" in head  # the terminal's default set; every U-LiRA column in files and --wide
    head, _ = tables.board_cells(board, metric_info(host.registries))
    assert {"ulira_auc", "ulira_tpr_at_1fpr", "ulira_tpr_at_01fpr"} <= set(head)
    assert {"ulira_direction", "ulira_over_unlearned", "ulira_retained_auc", "ulira_auc_low"} <= set(head)
    assert (
        rows["lotus"].metrics["ulira_direction"].mean
        == runs("audit", method="lotus", mode="offline")[0].metrics["ulira_direction"]
    )
    code, out, err = invoke(["leaderboard", "--format", "csv"], capsys)
    assert code == 0 and out.count(",ulira_auc,") == 3


def test_leaderboard_marks_an_underpowered_audit_and_ranks_nothing(host):
    from unlearnkit.board import tables
    from unlearnkit.board.leaderboard import build_boards, merge_audits, metric_info
    from unlearnkit.store.mlflow_store import RunRecord, tag

    def rec(run_type, method, role, metrics, start, **extra):
        tags = {
            tag("run_type"): run_type,
            tag("benchmark"): "b1",
            tag("method"): method,
            tag("role"): role,
            tag("seed"): "1",
            tag("dataset"): "tiny",
            tag("model"): "tiny_cnn",
            tag("scenario"): "instance:0.2",
            tag("config_hash"): f"{run_type}-{method}-{start}",
            **{tag(k): v for k, v in extra.items()},
        }
        return RunRecord(f"{method}{start}", "FINISHED", start, tags, {}, metrics)

    info = metric_info(host.registries)
    boards = build_boards(
        [
            rec("unlearn", m, r, {"acc_forget": 1.0}, 1)
            for m, r in (("original", "original"), ("retrain", "retrained"), ("a", ""), ("b", ""))
        ],
        info,
    )
    audits = [
        rec("audit", m, r, {"ulira_auc": v}, 10, shadows="8", mode="online", ulira_power="underpowered")
        for m, r, v in (("original", "original", 0.55), ("retrain", "retrained", 0.5), ("a", "", 0.51), ("b", "", 0.6))
    ]
    audits.append(rec("audit", "a", "", {"ulira_auc": 0.9}, 5, shadows="4", mode="online", ulira_power="ok"))
    (board,) = merge_audits(boards, audits)
    assert board.audit_underpowered and board.audit == "8 shadows, online" and "under-powered ‡" in board.title
    assert board.rows[2].metrics["ulira_auc"].mean in (0.51, 0.6)  # the 8-shadow audit, not the 4-shadow one
    head, cells = tables.board_cells(board, info, ["ulira_auc"], wide=False)
    col = head.index("ulira_auc")
    assert all(row[col][0].endswith("‡") and not row[col][1] for row in cells)  # marked, never "best"
    assert tables.AUDIT_NOTE in tables.to_markdown([board], info)
    from unlearnkit.board.leaderboard import AUDIT_INFO

    lines = list(csv.DictReader(io.StringIO(tables.to_csv([board], info))))  # CSV says it as the table's ‡ does
    assert {r["audit_underpowered"] for r in lines if r["metric"] == "ulira_auc"} == {"True"}
    assert {r["audit_underpowered"] for r in lines if r["metric"] not in AUDIT_INFO} == {""}
    for a in audits:
        a.tags[tag("ulira_power")] = "ok"
    (board,) = merge_audits(build_boards([], info), audits[:4])  # audited but never run: a board of its own
    head, cells = tables.board_cells(board, info, ["ulira_auc"], wide=False)
    assert not board.audit_underpowered and [c[0][0] for c in cells] == ["original", "retrain", "a", "b"]
    assert {c[0] for c in cells if c[head.index("ulira_auc")][1]} == {("a", False)}  # a: 0.51 is closest to 0.5


# --- resumable ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_midway_then_rerun_redoes_nothing_finished(isolated_store, tmp_path):
    from unlearnkit.store.mlflow_store import Store

    path = tmp_path / "tiny-audit.toml"
    path.write_text(TINY_RECIPE.replace("shadows = 4", "shadows = 6"))
    cmd = [sys.executable, "-m", "unlearnkit", "audit", str(path), "--plugins-dir", str(PLUGINS)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finished(run_type: str) -> Counter:
        if not (isolated_store / "store" / "mlflow.db").exists():
            return Counter()
        return Counter(r.tag("config_hash") for r in Store().search({"run_type": run_type}))

    try:
        deadline = time.time() + 180
        while time.time() < deadline and sum(finished("audit-shadow").values()) < 5:
            if proc.poll() is not None:
                pytest.fail(f"audit ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before_shadow, before_train = finished("audit-shadow"), finished("train")
    assert 5 <= sum(before_shadow.values()) < 18 and not finished("audit")
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    after_shadow, after_train = finished("audit-shadow"), finished("train")
    assert len(after_shadow) == 18 and set(after_shadow.values()) == {1} and set(after_train.values()) == {1}
    assert before_shadow.keys() <= after_shadow.keys() and before_train.keys() <= after_train.keys()
    assert len(after_train) == 12 and len(finished("audit")) == 3
    assert f"{12 - len(before_train)} of 12 shadow models to train" in done.stderr


# --- real data ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_digits_audit_original_scores_clearly_above_retrain(host, tmp_path, capsys):
    from unlearnkit.store.mlflow_store import Store

    path = tmp_path / "digits-audit.toml"
    path.write_text(
        """
name = "digits-audit"
datasets = ["digits"]
models = ["cnn"]
scenarios = ["0.3"]
methods = ["finetune"]
seeds = [3407]
subset = 60
train_recipe = "quick"
epochs = 40
device = "cpu"

[audit]
shadows = 6
"""
    )
    code, out, err = invoke(["audit", str(path)], capsys)
    assert code == 0, err
    rows = {r.tag("method"): r for r in Store().search({"run_type": "audit"})}
    original, retrain = rows["original"].metrics, rows["retrain"].metrics
    assert original["ulira_auc"] - retrain["ulira_auc"] > original["ulira_power_threshold"], out
    assert rows["original"].tag("ulira_power") == "ok" and "under-powered" not in err
    assert abs(retrain["ulira_auc"] - 0.5) < 0.1
    # The shadows memorised their halves; digits are easy, so the trace is in the confidence more than the accuracy.
    assert original["acc_in"] > 0.99 and original["acc_in"] >= original["acc_out"], original
