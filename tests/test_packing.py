"""Several models per device (``loops/packing.py``): a packed model is the model trained alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Setting
from unlearnkit.api.data import Preprocess, Split
from unlearnkit.api.types import Augment
from unlearnkit.engine.config import parse_models_per_device
from unlearnkit.errors import ConfigError
from unlearnkit.loops.packing import TrainJob, fit_many, stackable
from unlearnkit.loops.training import TrainRecipe, fit

RECIPE = TrainRecipe(name="t", lr=0.05, batch_size=16, epochs=3, schedule="warmup_cosine", warmup_epochs=1)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=n)
    pre = Preprocess.create((0.5,), (0.25,), (8, 8), Augment(crop_padding=1, flip=True), torch.device("cpu"))
    return Split("train", torch.from_numpy(x), torch.from_numpy(y), pre)


def context(seed: int) -> UnlearnContext:
    return UnlearnContext(
        device=torch.device("cpu"),
        seed=seed,
        setting=Setting("t", "tiny", "instance", 3),
        num_classes=3,
        model_factory=small_cnn,
    )


def jobs(sizes: list[int]) -> list[TrainJob]:
    out = []
    for seed, n in enumerate(sizes):
        torch.manual_seed(seed)
        out.append(TrainJob(small_cnn(), split(n, seed), context(seed), f"model {seed}"))
    return out


def alone(job: TrainJob) -> dict[str, torch.Tensor]:
    """The job's model trained by itself at one thread (its starting weights copied first)."""
    model = copy.deepcopy(job.model)
    ctx = context(job.ctx.seed)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(model, job.split, RECIPE, ctx)
    finally:
        torch.set_num_threads(before)
    return model.state_dict()


def test_threads_give_the_models_trained_alone_bit_for_bit_and_the_same_series():
    pack = jobs([40, 40, 33])
    singles = [alone(job) for job in pack]
    single_series = []
    for job in pack:
        ctx = context(job.ctx.seed)
        torch.set_num_threads(1)
        fit(copy.deepcopy(job.model), job.split, RECIPE, ctx)
        single_series.append(ctx.series)
    threads = torch.get_num_threads()
    out = fit_many(pack, RECIPE, per_device=2, strategy="threads")
    assert torch.get_num_threads() == threads  # put back
    assert [p.error for p in out] == [None] * 3 and all(p.strategy == "threads" for p in out)
    for job, want, series in zip(pack, singles, single_series):
        got = job.model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
        assert job.ctx.series == series
        assert not job.model.training


def test_stacked_weights_agree_with_the_models_trained_alone_within_float_tolerance():
    # 37 and 40 images: the same 3 steps an epoch, last batches of 5 and 8 (forwarded one by one)
    pack = jobs([40, 37])
    singles = [alone(job) for job in pack]
    start = [copy.deepcopy(job.model.state_dict()) for job in pack]
    out = fit_many(pack, RECIPE, per_device=2, strategy="stack")
    assert [p.strategy for p in out] == ["stack", "stack"]
    for job, want, before in zip(pack, singles, start):
        got = job.model.state_dict()
        moved = max((want[k].float() - before[k].float()).abs().max().item() for k in want)
        diff = max((got[k].float() - want[k].float()).abs().max().item() for k in want)
        assert moved > 1e-2  # it trained
        assert diff < 1e-4 * max(1.0, moved)
        assert torch.equal(got["1.num_batches_tracked"], want["1.num_batches_tracked"])
        assert [name for name, _, _ in job.ctx.series] == ["train_loss", "train_acc"] * RECIPE.epochs


def test_a_model_with_another_step_count_or_dropout_is_not_stacked_but_still_trained_as_alone():
    pack = jobs([40, 60])
    assert "steps" in stackable(pack, RECIPE)
    singles = [alone(job) for job in pack]
    out = fit_many(pack, RECIPE, per_device=2, strategy="stack")
    assert [p.strategy for p in out] == ["threads", "threads"]
    for job, want in zip(pack, singles):
        assert all(torch.equal(job.model.state_dict()[k], want[k]) for k in want)
    dropped = jobs([40, 40])
    for job in dropped:
        job.model.insert(4, nn.Dropout(0.5))
    assert stackable(dropped, RECIPE) == "the model has dropout"


def test_a_diverging_model_fails_alone():
    pack = jobs([40, 40])
    with torch.no_grad():
        pack[1].model[0].weight.fill_(float("nan"))
    for strategy in ("threads", "stack"):
        out = fit_many(copy.deepcopy(pack), RECIPE, per_device=2, strategy=strategy)
        assert out[0].error is None
        assert "diverged" in str(out[1].error)


@pytest.mark.parametrize("text,want", [("1", 1), ("4", 4), (3, 3), ("auto", None), (None, None)])
def test_models_per_device_parses(text, want):
    assert parse_models_per_device(text) == want


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_a_bad_models_per_device_is_one_line(text):
    with pytest.raises(ConfigError, match="models-per-device .* expected a whole number of 1 or more, or auto"):
        parse_models_per_device(text)


# --- through the engine: an audit and a run -------------------------------------------------------------

PACK_AUDIT = """
name = "pack-audit"
datasets = ["tiny"]
models = ["tiny_cnn"]
scenarios = ["0.2"]
methods = ["finetune"]
seeds = [1]
epochs = 3
device = "cpu"
threads = 1

[options.finetune]
epochs = 1

[audit]
shadows = 4
"""


def stored(uri: str, run_type: str) -> dict[str, object]:
    from unlearnkit.store.mlflow_store import Store

    return {r.tag("config_hash"): r for r in Store(uri).search({"run_type": run_type})}


def test_a_packed_audit_stores_the_same_shadow_models_and_scores_as_one_at_a_time(
    host, tmp_path, capsys, store_dir, monkeypatch
):
    from tests.invoke import invoke
    from unlearnkit.store import claims

    monkeypatch.setattr(claims, "SETTLE_S", 0.0)
    path = tmp_path / "pack-audit.toml"
    path.write_text(PACK_AUDIT)
    uris = {n: f"sqlite:///{store_dir(n) / 'mlflow.db'}" for n in ("alone", "packed")}
    code, _, err = invoke(["audit", str(path), "--tracking-uri", uris["alone"]], capsys)
    assert code == 0, err
    code, out, err = invoke(["audit", str(path), "--tracking-uri", uris["packed"], "--models-per-device", "4"], capsys)
    assert code == 0, err
    assert err.count("Trained 8 reference models threads-packed, 4 per device") == 1  # four shadows a call
    assert "8 shadow models trained" in out
    alone, packed = (stored(uris[n], "train") for n in ("alone", "packed"))
    assert len(alone) == 8 and set(alone) == set(packed)  # the same identities
    for key, rec in packed.items():
        assert rec.tag("models_per_device") == "4" and rec.tag("threads") == "1"
        assert alone[key].tag("models_per_device") == "" and rec.metrics["train_flops"] > 0
        assert (
            rec.metrics["train_images_per_s"] > 0 and rec.metrics["train_images"] == alone[key].metrics["train_images"]
        )
    # one thread per model: the very weights, hence the very logits and scores
    shadows = {n: stored(uris[n], "audit-shadow") for n in uris}
    assert set(shadows["alone"]) == set(shadows["packed"]) and len(shadows["alone"]) == 12
    audits = {n: {r.tag("method"): r.metrics for r in stored(uris[n], "audit").values()} for n in uris}
    assert audits["alone"].keys() == {"original", "retrain", "finetune"}
    for row, metrics in audits["alone"].items():
        assert metrics["ulira_auc"] == audits["packed"][row]["ulira_auc"]
    # again: everything is in the store, nothing is packed or trained
    code, out, err = invoke(["audit", str(path), "--tracking-uri", uris["packed"], "--models-per-device", "4"], capsys)
    assert code == 0 and "Trained" not in err


def test_a_bad_models_per_device_is_refused_before_anything_runs(host, capsys):
    from tests.invoke import invoke

    code, _, err = invoke(["run", "--dataset", "tiny", "--model", "tiny_cnn", "--models-per-device", "none"], capsys)
    assert code == 2 and "Bad --models-per-device 'none': expected a whole number of 1 or more, or auto." in err
    assert "Traceback" not in err


def test_reproduce_list_prices_a_table_at_the_stores_measured_paces_only_when_all_are_measured():
    from unlearnkit.cli.reproduce import measured_cost
    from unlearnkit.scale.estimate import Pace
    from unlearnkit.scale.reproduce import find_table

    table = find_table("unlearnkit-digits")
    methods = [r.method for r in table.spec.rows.values() if r.method not in (None, "original", "retrain")]

    class Paces:
        def __init__(self, missing: str = "") -> None:
            self.missing = missing

        def train(self, role, dataset, model):
            return Pace(10.0, 3, role)

        def run(self, method, dataset, model):
            return Pace(2.0, 0 if method == self.missing else 3, method)

    seconds = table.spec.seeds * (10.0 * 2 + 2.0 * len(methods))
    want = f"{seconds / 3600:.2g} h ({3 * (2 + len(methods))} runs measured)"
    assert measured_cost(table, Paces()) == want  # type: ignore[arg-type]
    assert measured_cost(table, Paces(missing=methods[0])) == "–"  # type: ignore[arg-type]


def test_stacking_follows_the_recipes_optional_parts_and_a_network_that_initialises_from_data():
    """Nesterov, label smoothing, Lookahead and the speedrun network's whitening, stacked as alone."""
    from unlearnkit_plugins.models.speedrun import SpeedrunNet

    recipe = TrainRecipe(
        name="s",
        lr=0.2,
        momentum=0.85,
        nesterov=True,
        batch_size=16,
        epochs=3,
        schedule="warmup_linear",
        warmup_epochs=1,
        label_smoothing=0.2,
        lookahead_every=2,
        lookahead_decay=0.9,
        lookahead_power=1.0,
    )
    pre = Preprocess.create((0.5,) * 3, (0.25,) * 3, (16, 16), Augment(crop_padding=2, flip=True), torch.device("cpu"))
    rng = np.random.default_rng(0)
    data = Split(
        "train",
        torch.from_numpy(rng.integers(0, 256, size=(40, 3, 16, 16), dtype=np.uint8)),
        torch.from_numpy(rng.integers(0, 3, size=40)),
        pre,
    )
    pack = []
    for seed in range(2):
        torch.manual_seed(seed)
        pack.append(TrainJob(SpeedrunNet(3, 3, width=4), data, context(seed), f"s{seed}"))
    singles = []
    for job in pack:
        model = copy.deepcopy(job.model)
        fit(model, data, recipe, context(job.ctx.seed))
        singles.append(model.state_dict())
    out = fit_many(pack, recipe, per_device=2, strategy="stack")
    assert [p.strategy for p in out] == ["stack", "stack"]
    for job, want in zip(pack, singles):
        got = job.model.state_dict()
        assert bool(got["whiten.fitted"]) and torch.equal(got["whiten.weight"], want["whiten.weight"])
        diff = max((got[k].float() - want[k].float()).abs().max().item() for k in want)
        assert diff < 1e-4, diff


def test_an_estimate_prices_trainings_at_the_packing_asked_for_where_the_store_measured_it():
    from unlearnkit.scale.estimate import Paces
    from unlearnkit.store.mlflow_store import RunRecord, tag

    def record(seconds: float, packed: str = "") -> RunRecord:
        tags = {tag("role"): "original"} | ({tag("models_per_device"): packed} if packed else {})
        return RunRecord("r", "FINISHED", 0, tags=tags, metrics={"train_time_s": seconds})

    class FakeStore:
        def exists(self) -> bool:
            return True

        def search(self, filters: dict[str, str]) -> list[RunRecord]:
            return [record(10.0), record(12.0), record(4.0, "4"), record(5.0, "4"), record(6.0, "4")]

    paces = Paces(FakeStore())  # type: ignore[arg-type]
    alone = paces.train("original", "digits", "cnn")
    assert (alone.seconds, alone.measured, alone.what) == (11.0, 2, "original training on digits/cnn")
    four = paces.train("original", "digits", "cnn", 4)
    assert (four.seconds, four.measured, four.what) == (5.0, 3, "original training on digits/cnn, 4 per device")
    eight = paces.train("original", "digits", "cnn", 8)  # never measured at 8: every training, said so
    assert (eight.seconds, eight.measured) == (6.0, 5) and eight.what.endswith(
        "8 per device (measured at other packings)"
    )
    assert paces.train("original", "digits", "cnn", None).seconds == 5.0  # auto: any pack


def test_a_packed_run_gives_the_rows_of_one_at_a_time_and_a_rerun_packs_nothing(host, capsys, store_dir):
    from tests.invoke import invoke
    from unlearnkit.store.mlflow_store import Store

    uris = {n: f"sqlite:///{store_dir(n) / 'mlflow.db'}" for n in ("alone", "packed")}
    base = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--method", "finetune", "--seeds", "1,2"]
    base += ["--epochs", "3", "--threads", "1", "-o", "epochs=1", "--device", "cpu"]
    code, _, err = invoke([*base, "--tracking-uri", uris["alone"]], capsys)
    assert code == 0, err
    packed = [*base, "--tracking-uri", uris["packed"], "--models-per-device", "4"]
    code, _, err = invoke(packed, capsys)
    assert code == 0 and "Trained 4 reference models threads-packed, 4 per device" in err, err
    rows = {n: {r.tag("config_hash"): r.metrics for r in Store(uris[n]).search({"run_type": "unlearn"})} for n in uris}
    assert len(rows["alone"]) == 6 and rows["alone"].keys() == rows["packed"].keys()
    for key, metrics in rows["alone"].items():
        assert metrics["acc_forget"] == rows["packed"][key]["acc_forget"]
        assert metrics["jsd"] == rows["packed"][key]["jsd"]
    code, _, err = invoke(packed, capsys)
    assert code == 0 and "Trained" not in err and "Reusing" in err
