"""Unlearning a model trained elsewhere: --original/--retrained files, --no-retrain, the notebook
API, and input files identified by their content (a replaced file is never served old results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.invoke import invoke
from unlearnkit.api.types import ImageSpec
from unlearnkit.testing import TinyModel

TINY = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--epochs", "3", "--device", "cpu", "--json"]


def runs(run_type: str, role: str | None = None):
    from unlearnkit.store.mlflow_store import Store

    return Store().search({"run_type": run_type, **({"role": role} if role else {})}, finished_only=False)


def saved_model(path: Path, seed: int = 0, classes: int = 4) -> Path:
    torch.manual_seed(seed)
    torch.save(TinyModel().build(ImageSpec(1, 8, 8, classes)).state_dict(), path)
    return path


def test_original_from_a_file_is_unlearned_and_the_gold_standard_still_trained(host, capsys, tmp_path):
    mine = saved_model(tmp_path / "mine.pt")
    code, out, err = invoke([*TINY, "--original", str(mine)], capsys)
    assert code == 0, err
    assert runs("train", "original") == []  # not trained: the file is the original
    assert len(runs("train", "retrained")) == 1
    (lotus,) = [r for r in runs("unlearn") if r.tag("method") == "lotus"]
    assert lotus.tag("original_run") == ""  # it came from a file, not from a training run
    assert "Using original model from" in err


def test_no_retrain_drops_the_gold_standard_and_what_needs_it(host, capsys, tmp_path):
    code, out, err = invoke([*TINY, "--original", str(saved_model(tmp_path / "m.pt")), "--no-retrain"], capsys)
    assert code == 0, err
    assert runs("train") == []
    unlearn = runs("unlearn")
    assert sorted(r.tag("method") for r in unlearn) == ["lotus", "original"]
    lotus = next(r for r in unlearn if r.tag("method") == "lotus")
    assert "rf_jsd" in lotus.metrics and "jsd" not in lotus.metrics and "rte" not in lotus.metrics


@pytest.mark.parametrize("flag", ["--original", "--retrained"])
def test_a_file_that_does_not_fit_is_one_line_naming_the_key_and_both_shapes(host, capsys, tmp_path, flag):
    wrong = saved_model(tmp_path / "wrong.pt", classes=7)  # another head: 7 classes, the data has 4
    code, _, err = invoke([*TINY, flag, str(wrong)], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "does not fit model 'tiny_cnn'" in lines[0]
    assert "is (7, 128) in the file but (4, 128) in the model" in lines[0]
    assert runs("unlearn") == [] and runs("train") == []  # checked before anything ran


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda v: torch.full_like(v, float("nan")), "has non-finite values (NaN or infinity) in '"),
        (lambda v: torch.full_like(v, float("inf")), "has non-finite values (NaN or infinity) in '"),
        (lambda v: torch.empty_like(v, device="meta"), "as a meta tensor, without data"),
        (lambda v: v.to(torch.complex64), "as a complex tensor (torch.complex64)"),
    ],
)
def test_a_file_of_unusable_weights_is_one_line_and_runs_nothing(host, capsys, tmp_path, damage, says):
    """A diverged or hollow checkpoint (NaN, infinity, meta tensors, complex values cast to real) would
    poison every number computed from it: refused before anything runs."""
    state = torch.load(saved_model(tmp_path / "good.pt"), weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = damage(state[first])
    torch.save(state, tmp_path / "bad.pt")
    code, _, err = invoke([*TINY, "--original", str(tmp_path / "bad.pt")], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0] and lines[0].endswith("it holds no usable weights.")
    assert runs("unlearn") == [] and runs("train") == []


def test_replacing_a_weights_file_changes_the_identity(host, capsys, tmp_path):
    weights = saved_model(tmp_path / "w.pt", seed=1)
    code, first, err = invoke([*TINY, "--weights", str(weights)], capsys)
    assert code == 0, err
    saved_model(weights, seed=2)  # same path, other contents
    code, second, err = invoke([*TINY, "--weights", str(weights)], capsys)
    assert code == 0, err
    import json

    assert {r["status"] for r in json.loads(second)} == {"finished"}  # nothing served from the old file
    assert len(runs("train", "original")) == 2


def test_the_notebook_api_unlearns_a_copy_and_evaluates_it(bench):
    import copy

    import unlearnkit as uk

    model = copy.deepcopy(bench.original)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    splits = {n: (s.x, s.y) for n, s in bench.splits.items()}
    result = uk.unlearn(
        model,
        forget=splits["forget"],
        retain=splits["retain"],
        unseen=splits["unseen"],
        test=splits["test"],
        method="lotus",
        options={"alpha": 8.0, "lr": 1e-3, "batch_size": 16},
        mean=(0.5,),
        std=(0.3,),
        seed=0,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    assert {"acc_forget", "acc_test", "mia", "rf_jsd"} <= set(result.metrics) and "jsd" not in result.metrics
    assert result.info["lotus_epochs"] >= 1 and result.time_s > 0
    with pytest.raises(uk.ConfigError, match="reads the unseen split"):
        uk.unlearn(model, forget=splits["forget"], retain=splits["retain"], method="lotus")


def test_a_brought_retrained_model_is_done_without_a_made_up_time(host, capsys, tmp_path):
    # its training time is not known: the row said "retrain (seed 0): done in nan s"
    code, out, err = invoke([*TINY, "--retrained", str(saved_model(tmp_path / "r.pt"))], capsys)
    assert code == 0, err
    assert "nan s" not in err and "retrain (seed" in err and "done (no time: a brought or imported model)" in err
    # and --json is JSON a strict reader takes: the unknown time is null, not Python's NaN
    rows = json.loads(out, parse_constant=lambda word: pytest.fail(f"{word} in --json output"))
    retrain = next(r for r in rows if r["method"] == "retrain")
    assert retrain["metrics"]["time_s"] is None


class RunsCode:
    """What a hostile checkpoint pickles: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"echo pwned > {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line_and_runs_nothing(host, capsys, tmp_path):
    """Before: torch's warning about the pickle leaked onto the terminal, and the error was torch's
    text cut mid-sentence ("Re-running `torch.")."""
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(2), "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    code, _, err = invoke([*TINY, "--original", str(tmp_path / "evil.pt")], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    assert "holds objects other than tensors (refused: loading them could run code: " in lines[0]
    assert "GLOBAL posix.system" in lines[0] or "GLOBAL os.system" in lines[0], lines[0]
    assert not marker.exists() and runs("unlearn") == [] and runs("train") == []
