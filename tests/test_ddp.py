"""Data-parallel training under torchrun (unlearnkit.ddp): real processes, the gloo backend, no mocks.

The in-process tests check the arithmetic every rank relies on (parts of a global batch, the
augmentation drawn for the whole batch, losses scaled so DDP's average is the global mean). The
torchrun tests start ``torchrun --standalone --nproc-per-node 2`` with the test plugins of
``tests/fixtures/ddp`` and check what the ranks did (each rank's log and probe files) and what the
store holds. Every subprocess has a timeout, and the process group's collectives time out after
60 s (``UNLEARNKIT_DDP_TIMEOUT_S``), so a rank waiting on a collective that never comes fails
instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.data import Preprocess, Split, Stream
from unlearnkit.api.types import Augment
from unlearnkit.loops.training import cross_entropy, soft_cross_entropy
from unlearnkit.parallel.torchrun import SINGLE, Part, World, whole
from unlearnkit.store.mlflow_store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "ddp"
TIMEOUT_S = 300  # a whole torchrun launch (about 30 s on 2 CPU cores)
TINY = ["--plugins-dir", str(FIXTURES), "--dataset", "tiny", "--model", "tiny_cnn", "--forget", "0.1"]


# ------------------------------------------------------------------------------ in process
def test_parts_tile_every_global_batch():
    for size in (1, 2, 3, 5):
        for total in range(0, 12):
            parts = [World(rank, size).part(total) for rank in range(size)]
            assert [p.lo for p in parts[1:]] == [p.hi for p in parts[:-1]]  # contiguous, disjoint
            assert parts[0].lo == 0 and parts[-1].hi == total  # covering
            assert max(p.size for p in parts) - min(p.size for p in parts) <= 1
    assert SINGLE.part(7) == whole(7) and whole(7).whole


def _split(streamed: bool) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 1, 6, 6), dtype=np.uint8)
    pre = Preprocess.create((0.5,), (0.25,), (6, 6), Augment(crop_padding=2, flip=True), torch.device("cpu"))
    y = torch.from_numpy(rng.integers(0, 3, size=37))
    if streamed:
        return Split("s", None, y, pre, stream=Stream(images, np.arange(37), workers=0))
    return Split("s", torch.from_numpy(images), y, pre)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("shuffle,drop_last", [(True, False), (True, True), (False, False)])
def test_the_ranks_parts_are_exactly_the_single_process_batches(streamed, shuffle, drop_last):
    """Same order, same crops and flips (drawn for the global batch), whatever the number of ranks."""
    split = _split(streamed)

    def batches(world: World | None) -> list:
        gen = torch.Generator().manual_seed(5)
        kw = dict(shuffle=shuffle, augment=True, generator=gen, drop_last=drop_last)
        return list(split.sharded_batches(8, world, **kw))

    single = batches(None)
    assert len(single) == (4 if drop_last else 5)
    for size in (2, 3, 5):
        ranks = [batches(World(rank, size)) for rank in range(size)]
        for step, (x, y, pos, part) in enumerate(single):
            assert part.whole and part.total == len(y)
            got = [r[step] for r in ranks]
            assert torch.equal(torch.cat([g[0] for g in got]), x)  # the augmentation too
            assert torch.equal(torch.cat([g[1] for g in got]), y)
            assert torch.equal(torch.cat([g[2] for g in got]), pos)
            assert all(g[3].total == len(y) and g[3].size == len(g[1]) for g in got)


def _grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return [g.clone() for g in torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.parametrize("total,size", [(7, 2), (7, 3), (2, 3)])  # (2, 3): one rank gets no sample
def test_scaled_losses_average_to_the_gradient_of_the_global_mean(total, size):
    """What DDP does (the ranks' gradients averaged) equals the gradient of the global batch mean."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(total, 5), torch.randint(0, 3, (total,))
    target = torch.softmax(torch.randn(total, 3), 1)
    for loss_fn, whole_loss in (
        (lambda z, p, s: cross_entropy(z, y[s], p), F.cross_entropy(model(x), y)),
        (lambda z, p, s: soft_cross_entropy(z, target[s], p), soft_cross_entropy(model(x), target)),
    ):
        expected = _grads(model, whole_loss)
        per_rank = []
        for rank in range(size):
            part = World(rank, size).part(total)
            rows = slice(part.lo, part.hi)
            loss = loss_fn(model(x[rows]), part, rows)
            assert torch.isfinite(loss)
            per_rank.append(_grads(model, loss))
        averaged = [torch.stack(gs).mean(0) for gs in zip(*per_rank)]
        for a, e in zip(averaged, expected):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-7)


def _from_main_rank(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: rank 0's value, and a non-JSON one, through World.from_main."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        world = World(rank=rank, size=2)
        got = world.from_main(lambda: {"acc": 0.1 + 0.2, "pair": (1, 2), "rank": rank})
        refused = None
        if rank == 0:  # rank 0 cannot encode it: it fails before the first collective, so rank 1 need not wait
            try:
                world.from_main(lambda: object())
            except TypeError as err:
                refused = type(err).__name__
        Path(out, f"rank{rank}.json").write_text(json.dumps({"got": got, "refused": refused}))
    finally:
        dist.destroy_process_group()


def test_from_main_sends_rank_zeros_value_as_json_to_every_rank(tmp_path):
    """Two real gloo processes: both get rank 0's value, decoded from the same JSON bytes (a float
    to the last bit, a tuple as a list on both); a value JSON cannot carry fails on rank 0 with a
    TypeError before anything is sent, never as a pickle."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_from_main_rank, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    expected = {"acc": 0.1 + 0.2, "pair": [1, 2], "rank": 0}
    assert json.loads((tmp_path / "rank0.json").read_text()) == {"got": expected, "refused": "TypeError"}
    assert json.loads((tmp_path / "rank1.json").read_text()) == {"got": expected, "refused": None}


def test_lotus_noise_is_drawn_for_the_global_batch():
    from unlearnkit_plugins.methods.lotus import lotus_targets

    z, flags = torch.randn(9, 4), (torch.arange(9) % 2).float()
    single = lotus_targets(z, flags, 2.0, torch.Generator().manual_seed(3))
    parts = []
    for rank in range(2):
        part = World(rank, 2).part(9)
        rows = slice(part.lo, part.hi)
        parts.append(lotus_targets(z[rows], flags[rows], 2.0, torch.Generator().manual_seed(3), part=part))
    assert torch.equal(torch.cat(parts), single)


def test_nproc_is_stripped_and_checked_before_anything_runs(capsys):
    from unlearnkit.cli import main
    from unlearnkit.errors import ConfigError
    from unlearnkit.parallel.torchrun import relaunch, without_nproc

    assert without_nproc(["run", "--nproc", "2", "-m", "lotus"]) == (["run", "-m", "lotus"], True)
    assert without_nproc(["run", "--nproc=4"]) == (["run"], True)
    assert without_nproc(["run", "-m", "lotus"]) == (["run", "-m", "lotus"], False)
    with pytest.raises(ConfigError, match="use --device cuda"):
        relaunch(2, ["run"], "cuda:1")
    with pytest.raises(SystemExit) as exit_info:  # called from Python: nothing to re-execute
        main(["run", "--nproc", "2", "--device", "cpu"])
    assert exit_info.value.code == 2 and "torchrun --standalone --nproc-per-node 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------- torchrun
def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DDP_PROBE", "RANK", "WORLD_SIZE", "LOCAL_"))}
    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    env.update(UNLEARNKIT_DDP_TIMEOUT_S="60", OMP_NUM_THREADS="1", DDP_PROBE_DIR=str(probe), **extra)
    return env


def torchrun(tmp_path: Path, args: list[str], **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``torchrun --standalone --nproc-per-node 2 -m unlearnkit run ARGS``; each rank's output in its own log."""
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += ["--redirects", "3", "--log-dir", str(logs), "-m", "unlearnkit", "run", *args]
    proc = subprocess.run(command, env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=TIMEOUT_S)
    rank_logs = []
    for rank in range(2):
        files = sorted(logs.glob(f"*/attempt_0/{rank}/*.log"))
        rank_logs.append("".join(f.read_text() for f in files))
    return proc, rank_logs


def probe(tmp_path: Path, method: str, rank: int) -> dict:
    return torch.load(tmp_path / "probe" / f"{method}-rank{rank}.pt", weights_only=False)


def test_two_ranks_train_alike_agree_to_stop_and_only_rank_zero_writes(tmp_path):
    """One launch: a probe method records each rank's parts and weights; a second one logs a NaN
    loss on rank 1 only; fine-tuning trains data-parallel; SSD (not distributed) runs on rank 0."""
    methods = "ddp_probe,ddp_nan,finetune,ssd"
    proc, (log0, log1) = torchrun(
        tmp_path, [*TINY, "-m", methods, "--epochs", "3", "--seeds", "1", "--device", "cpu"], DDP_PROBE_NAN_RANK="1"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr + log0 + log1  # ddp_nan failed, nothing else

    # shards: each step's parts, rank 0's then rank 1's, are the single process's batch of one seeded order
    ranks = [probe(tmp_path, "ddp_probe", r) for r in range(2)]
    gen = torch.Generator().manual_seed(1 * 1_000_003)  # ctx.generator() of seed 1; no augmentation draws
    n = 144
    for epoch in range(2):
        order = torch.randperm(n, generator=gen).tolist()
        steps = range(epoch * 6, (epoch + 1) * 6)
        seen = [p for s in steps for r in ranks for p in r["positions"][s]]
        assert seen == order  # disjoint, covering, in the single process's order
        sizes = [(len(ranks[0]["positions"][s]), len(ranks[1]["positions"][s])) for s in steps]
        assert sizes == [(13, 12)] * 5 + [(10, 9)]
    # both ranks end with identical weights (BatchNorm buffers included)
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a NaN on rank 1 stopped both ranks after the same epoch, with one error (rank 0's), no finished run
    nan = [probe(tmp_path, "ddp_nan", r) for r in range(2)]
    assert [r["epochs"] for r in nan] == [1, 1]
    assert "ddp_nan (seed 1) failed: ddp_nan (epoch 1) diverged" in log0
    assert "diverged" not in log1 and "Error" not in log1 and "Warning" not in log1, log1
    store = Store()
    assert store.search({"method": "ddp_nan"}) == []
    (failed,) = store.search({"method": "ddp_nan"}, finished_only=False)
    assert failed.status == "FAILED"

    # rank 0 alone wrote the store; the distributed runs carry the world size
    assert failed.tag("pid") == str(ranks[0]["pid"])  # (finished runs drop their liveness tags)
    assert [r["mlflow"] for r in ranks] == [True, False]  # rank 1 never even imported a store client
    runs = store.search(finished_only=False)
    world = {r.tag("method") or f"{r.tag('role')} model": r.tag("world_size") for r in runs if r.status == "FINISHED"}
    assert world["original model"] == world["retrained model"] == world["ddp_probe"] == world["finetune"] == "2"
    assert world["ssd"] == world["original"] == world["retrain"] == ""  # on rank 0 alone
    assert "ssd does not declare distributed support: it runs on rank 0 alone while the other rank waits" in log0
    assert "BatchNorm on CPU" in log0 and log0.count("BatchNorm on CPU") == 1
    assert log1.strip() == "", log1  # the other ranks print nothing


@pytest.mark.slow
def test_a_nan_in_reference_training_stops_every_rank(tmp_path):
    """The model is NaN on rank 1 only: the epoch's divergence flag is summed over the ranks, so
    both stop at the end of the first epoch; the store holds no finished run."""
    args = [*TINY, "--model", "nan_cnn", "-m", "finetune", "--epochs", "2", "--device", "cpu", "--no-retrain"]
    proc, (log0, log1) = torchrun(tmp_path, args, DDP_PROBE_NAN_RANK="1")
    assert proc.returncode != 0
    assert log0.count("train the original model (seed 3407) (epoch 1) diverged") == 1, log0
    assert "diverged" not in log1
    runs = Store().search(finished_only=False)
    assert [r.status for r in runs] == ["FAILED"] and runs[0].tag("role") == "original"


# ---------------------------------------------------------------------------------- slow
# A ViT that learns the digits in seconds (patch 4: 2x2 tokens; 75 % training accuracy); every
# global batch has 27 images (odd: the ranks' parts differ in size); every method moves the weights.
VIT = ["--dataset", "digits", "--model", "vit", "--subset", "40", "--seeds", "0", "--device", "cpu"]
VIT += [f"--model-option={o}" for o in ("embed_dim=48", "depth=1", "heads=2", "patch_size=4")]
# SGD: Adam amplifies the ranks' rounding differences of near-zero gradients (after 600 steps
# from scratch its weights differ by 0.05), SGD keeps them at 1e-6 for as long
VIT_RECIPE = 'optimizer = "sgd"\nlr = 0.03\nweight_decay = 0.0\nbatch_size = 27\nepochs = 50\nschedule = "constant"\n'
METHOD_OPTIONS = {"lotus": {"lr": 1e-3, "alpha": 8}, "finetune": {"lr": 0.02}, "random_label": {"lr": 0.02}}
METHOD_OPTIONS["neggrad_plus"] = {"lr": 0.02, "beta": 0.9}
# the field's baseline set: every data-parallel one that is defined for instance forgetting
METHOD_OPTIONS |= {name: {"lr": 0.02} for name in ("ga", "l1_sparse", "cf_k", "eu_k")}
METHOD_OPTIONS["sfron"] = {"lr": 0.02, "optimizer": "sgd", "steps": 8}
METHOD_OPTIONS["amnesiac"] = {"lr": 1e-4}  # Adam, its only optimiser: compared within Adam's step bound below
DISTRIBUTED = list(METHOD_OPTIONS)
# Adam's steps: epochs x batches of 27 over at most the 400 training images of the subset
ADAM_STEPS = {"amnesiac": 2 * -(-400 // 27)}


def unlearnkit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "unlearnkit", "run", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def weights(store: Store) -> dict[str, dict[str, torch.Tensor]]:
    """Every trained and unlearned model of a store, by role or method."""
    out = {}
    for record in store.search():
        if record.tag("run_type") == "train":
            out[record.tag("role")] = store.load_checkpoint(record)
        elif record.tag("model_sha256"):
            out[record.tag("method")] = store.load_checkpoint(record, name="model")
    return out


def results(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {r["method"]: r for r in json.loads(proc.stdout)}


@pytest.mark.slow
def test_two_ranks_equal_a_single_process_run(tmp_path):
    """``unlearnkit run --nproc 2`` versus one process with the same global batches, on a ViT
    (LayerNorm only: with BatchNorm on the CPU each rank normalises its own part, and the claim
    would not hold): weights and metrics equal up to float reduction order. A second ``--nproc 2``
    run finds everything in the store: rank 0 reuses, the other rank gets the weights by broadcast."""
    recipe = tmp_path / "vit.toml"
    recipe.write_text(f"[default]\n{VIT_RECIPE}")
    args = [*VIT, "--train-recipe", str(recipe), "-m", ",".join(DISTRIBUTED), "--json"]
    for method, options in METHOD_OPTIONS.items():
        budget = {"batch_size": 27} if method == "sfron" else {"epochs": 2, "batch_size": 27}
        for key, value in {**budget, **options}.items():
            args += ["-o", f"{method}.{key}={value}"]
    env = {name: _env(tmp_path, UNLEARNKIT_STORE=str(tmp_path / name)) for name in ("ranks", "single")}
    ranks = results(unlearnkit([*args, "--nproc", "2"], env["ranks"]))
    single = results(unlearnkit(args, env["single"]))
    assert set(ranks) == set(single) == {"original", "retrain", *DISTRIBUTED}
    assert {r["status"] for r in [*ranks.values(), *single.values()]} == {"finished"}
    for method, res in ranks.items():
        for name, value in single[method]["metrics"].items():
            if not name.endswith("time_s") and name not in ("rte",):
                assert res["metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-3), (method, name)

    stores = {name: Store(f"sqlite:///{tmp_path / name / 'mlflow.db'}") for name in ("ranks", "single")}
    got, expected = weights(stores["ranks"]), weights(stores["single"])
    assert set(got) == set(expected) == {"original", "retrained", *DISTRIBUTED}
    for model in got:
        # AdamW turns a gradient that is pure rounding noise (the attention key bias: analytically 0)
        # into a full step of either sign, so LoTUS's weights may differ by up to 2 lr per step (6
        # steps an epoch: D_f and 30 % of D_r, 40 + 108 images in batches of 27)
        if model == "lotus":
            atol = 2 * METHOD_OPTIONS["lotus"]["lr"] * 6 * ranks["lotus"]["metrics"]["lotus_epochs"]
        elif model in ADAM_STEPS:
            atol = 2 * METHOD_OPTIONS[model]["lr"] * ADAM_STEPS[model]
        else:
            atol = 5e-4
        for key, value in got[model].items():
            torch.testing.assert_close(value, expected[model][key], rtol=1e-3, atol=atol, msg=f"{model}: {key}")
    train = stores["ranks"].search({"run_type": "train"})
    assert {r.tag("world_size") for r in train} == {"2"}

    again = unlearnkit([*args, "--nproc", "2"], env["ranks"])
    assert {r["status"] for r in results(again).values()} == {"skipped"}
    assert "Reusing the original model" in again.stderr
    assert len(stores["ranks"].search({"run_type": "train"})) == 2


# ------------------------------------------------------------------------ the key-value channel
class _MarksWhenUnpickled:
    """A pickle whose loading would create a file: the proof that nothing unpickles the store."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def rank_one(monkeypatch):
    """This process as rank 1 of 2, its key-value store a real c10d HashStore (no process group)."""
    from torch.distributed import HashStore

    from unlearnkit.parallel import torchrun

    kv = HashStore()
    monkeypatch.setattr(torchrun, "_world", World(rank=1, size=2))
    monkeypatch.setattr(torchrun, "_seq", 0)
    monkeypatch.setattr(torchrun, "_kv", lambda: kv)
    return kv


def test_a_pickle_planted_in_the_key_value_store_is_refused_never_loaded(rank_one, tmp_path):
    import pickle

    from unlearnkit.errors import AgreementError
    from unlearnkit.parallel.torchrun import agree

    marker = tmp_path / "payload-ran"
    rank_one.set("unlearnkit/agree/1", pickle.dumps(("claim x", _MarksWhenUnpickled(marker))))
    with pytest.raises(AgreementError, match="refused the message 'unlearnkit/agree/1'"):
        agree("claim x")
    assert not marker.exists()


def test_rank_zero_messages_are_json_and_rebuild_only_registered_dataclasses(rank_one):
    from unlearnkit.engine.runner import RunResult
    from unlearnkit.errors import AgreementError
    from unlearnkit.parallel.torchrun import agree, encode_message
    from unlearnkit.store.claims import Claim
    from unlearnkit.store.mlflow_store import RunRecord

    record = RunRecord("r1", "FINISHED", 5, {"t": "v"}, {"p": "1"}, {"acc": float("nan"), "b": 0.5}, "file:///a")
    sent = ["ok", Claim(finished=record)]
    results = [RunResult("lotus", 1, "finished", {"acc_forget": 0.25}, "r2")]
    rank_one.set("unlearnkit/agree/1", encode_message("claim k", sent))
    rank_one.set("unlearnkit/agree/2", encode_message("results", results))
    got = agree("claim k")
    assert got[0] == "ok" and got[1].finished.run_id == "r1" and got[1].finished.metrics["b"] == 0.5
    assert got[1].finished.metrics["acc"] != got[1].finished.metrics["acc"]  # NaN survives
    assert agree("results") == results
    json.loads(encode_message("results", results))  # what travels is plain JSON
    rank_one.set("unlearnkit/agree/3", b'{"topic": "t", "value": {"__agreed_type__": "Popen", "args": ["sh"]}}')
    with pytest.raises(AgreementError):
        agree("t")


def test_values_that_are_not_json_are_refused_on_rank_zero():
    from unlearnkit.parallel.torchrun import encode_message

    with pytest.raises(TypeError, match="agree cannot send a Tensor"):
        encode_message("t", torch.zeros(1))
    with pytest.raises(TypeError, match="register it with torchrun.agreeable"):
        encode_message("t", Part(0, 1, 1))


@pytest.mark.slow
def test_ranks_started_with_different_requests_are_refused_before_anything_is_written(tmp_path):
    """Rank 1 asks for seed 2, rank 0 for seed 1: before, rank 0 trained and stored reference models
    until the ranks' claims went out of step (tracebacks, a FAILED run). Now both stop at the check,
    before the store is opened, and rank 0 says why in one line."""
    script = tmp_path / "launch.py"
    script.write_text(
        "import os, sys\nfrom unlearnkit.cli import main\n"
        "main(sys.argv[1:] + (['--seeds', '2'] if os.environ['RANK'] == '1' else []))\n"
    )
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += ["--redirects", "3", "--log-dir", str(logs), str(script), "run", *TINY]
    command += ["-m", "finetune", "--epochs", "1", "--seeds", "1", "--device", "cpu"]
    proc = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT_S)
    rank_logs = ["".join(f.read_text() for f in sorted(logs.glob(f"*/attempt_0/{r}/*.log"))) for r in range(2)]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    log0, log1 = rank_logs
    assert "Error: The ranks were started with different requests: rank 1's is not rank 0's." in log0, proc.stderr
    assert "Traceback" not in log0 + log1 and log1.strip() == "", log0 + log1  # the other ranks print nothing
    assert Store().search(finished_only=False) == []
