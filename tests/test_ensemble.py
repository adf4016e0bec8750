"""`unlearnkit audit --scores ... --ensemble N`: members run through the engine, one logits cache per
model, every score from it; a re-run with other scores trains and forwards nothing (docs/audit.md)."""

from __future__ import annotations

import math

import pytest

from tests.invoke import invoke
from unlearnkit.errors import ConfigError

RECIPE = """
name = "tiny-ensemble"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune"]
seeds = [1]
epochs = 4
device = "cpu"

[options.finetune]
epochs = 2
batch_size = 32

[audit]
seed = 1
scores = ["challenge", "klom"]
ensemble = 3
"""


def runs(run_type: str, **tags: str) -> list:
    from unlearnkit.store.mlflow_store import Store

    return Store().search({"run_type": run_type, **tags}, finished_only=False)


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    from unlearnkit.store import claims

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)  # one process here: no rival claim to wait for
    path = tmp_path / "tiny-ensemble.toml"
    path.write_text(RECIPE)
    return path


def test_ensemble_scores_from_one_cache_and_a_rescore_trains_nothing(host, recipe, capsys):
    code, out, err = invoke(["audit", str(recipe), "--estimate"], capsys)
    assert code == 0, err
    assert "3 members -> 9 of 9 reference models to train, 3 of 3 method runs to do" in err
    assert not runs("train") and not runs("ensemble")  # an estimate computes nothing

    code, out, err = invoke(["audit", str(recipe)], capsys)
    assert code == 0, err
    # 3 originals + 3 retrains (the members) + 3 more retrains (the retrain row's own)
    assert len(runs("train", role="original")) == 3 and len(runs("train", role="retrained")) == 6
    assert len(runs("unlearn", method="finetune")) == 3  # the same runs `unlearnkit run --seeds 1,2,3` makes
    assert len(runs("ensemble-logits")) == 12 and "12 models' logits computed" in out
    rows = {r.tag("method"): r for r in runs("ensemble")}
    assert set(rows) == {"original", "retrain", "finetune"}
    for rec in rows.values():
        assert rec.tag("members") == "3" and rec.tag("scores") == "challenge_score,forget_quality,klom"
        for name in ("challenge_score", "forget_quality", "klom"):
            m = rec.metrics
            assert name in m and math.isfinite(m[name]), (rec.tag("method"), name, m)
            assert m[f"{name}_low"] <= m[name] <= m[f"{name}_high"], (rec.tag("method"), name, m)
        assert 0 <= m["forget_quality"] <= 1 and m["klom"] >= 0
    # The retrain row is scored with retrains independent of the references (seeds 4-6): not trivially
    # perfect. (Which row scores better needs more members than 3 tiny models: docs/audit.md's digits table.)
    assert rows["retrain"].metrics["klom"] > 0
    # Its utility ratios compare retrains with retrains on the same test halves: about 1 (a retrain row
    # evaluated on other halves than its labels would sit near chance, a ratio near 0.1).
    # Those extra retrains are evaluated on the members' splits (their test halves are member i's, so the
    # challenge's test-accuracy ratio pairs logits with the right labels): every logits run is a member's.
    from collections import Counter

    assert Counter(r.tag("seed") for r in runs("ensemble-logits")) == {"1": 4, "2": 4, "3": 4}
    assert all(0 < rec.metrics["members_acc_test"] <= 1 for rec in rows.values())

    # Another score set: only scoring; every model, run and logits artifact comes from the store.
    code, out, err = invoke(["audit", str(recipe), "--scores", "klom"], capsys)
    assert code == 0, err
    assert "0 of 9 reference models to train, 0 of 3 method runs to do" in err
    assert "0 models' logits computed" in out
    assert len(runs("train")) == 9 and len(runs("ensemble-logits")) == 12
    assert len(runs("unlearn")) == 9  # 3 finetune runs and the members' original and retrain rows
    assert len(runs("ensemble")) == 6
    klom_rows = [r for r in runs("ensemble") if r.tag("scores") == "klom"]
    for rec in klom_rows:  # the same cached logits: the same number
        assert rec.metrics["klom"] == rows[rec.tag("method")].metrics["klom"]
    # The same again: every row in the store.
    code, out, err = invoke(["audit", str(recipe), "--scores", "klom"], capsys)
    assert code == 0 and out.count("in store") == 3 and len(runs("ensemble")) == 6

    # On the leaderboard beside the runs' own columns, with the bootstrap interval under --ci.
    code, out, err = invoke(["leaderboard", "--format", "csv"], capsys)
    assert code == 0 and ",klom," in out
    code, out, err = invoke(["leaderboard", "--ci", "--columns", "acc_forget,klom", "--wide"], capsys)
    assert code == 0 and "klom" in out and "[" in out


def test_a_corrupt_logits_artifact_is_recomputed_not_trusted(host, recipe, capsys):
    from pathlib import Path

    from unlearnkit.store.mlflow_store import Store

    code, out, err = invoke(["audit", str(recipe), "--scores", "klom", "--ensemble", "2"], capsys)
    assert code == 0, err
    first = {r.tag("method"): r.metrics["klom"] for r in runs("ensemble")}
    victim = runs("ensemble-logits")[0]
    ckpt = Path(victim.artifact_uri.removeprefix("file://")) / "logits" / "model.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-10] + b"corrupted!")  # a tampered or damaged store
    store = Store()
    for rec in runs("ensemble"):
        store.delete_run(rec.run_id)  # force a re-score, which reads every member's logits again
    code, out, err = invoke(["audit", str(recipe), "--scores", "klom", "--ensemble", "2"], capsys)
    assert code == 0, err
    assert "1 model's logits computed" in out and "sha256" in err
    again = {r.tag("method"): r.metrics["klom"] for r in runs("ensemble") if r.status == "FINISHED"}
    assert again == first  # recomputed from the model: the same numbers


def test_bad_ensemble_requests_are_one_line(host, recipe, capsys):
    from unlearnkit.audit.job import Audit
    from unlearnkit.store.mlflow_store import Store

    with pytest.raises(ConfigError, match=r"Unknown score 'klomm'. Valid scores: ulira, challenge, .*klom") as err:
        Audit(recipe, host.registries, Store(), scores="klomm")
    assert str(err.value).split("Valid scores: ")[1].count("klom") == 1  # a family named as its one metric: once
    with pytest.raises(ConfigError, match="at least 2 members"):
        Audit(recipe, host.registries, Store(), ensemble=1)
    random = recipe.parent / "random.toml"
    random.write_text(RECIPE.replace('scenarios = ["0.2"]', 'scenarios = ["random:0.2"]'))
    job = Audit(random, host.registries, Store())
    with pytest.raises(ConfigError, match="draws another forget set for every seed"):
        job.check()
    code, out, err = invoke(["audit", str(recipe), "--scores", "nope"], capsys)
    assert code != 0 and "Unknown score 'nope'" in err and "Traceback" not in err
