"""Data larger than the device budget is streamed through DataLoader workers instead of held
resident: the same batches, the same augmentation draws, so the same numbers."""

from __future__ import annotations

import json

import pytest

from tests.invoke import invoke
from tests.test_paper_recipes import fake_imagenet


def run_json(argv, capsys):
    code, out, err = invoke(argv, capsys)
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize(
    "method, workers",
    [("lotus", "0"), pytest.param("finetune", "2", marks=pytest.mark.slow)],  # lotus joins and subsets streams
)
def test_streamed_and_resident_splits_give_identical_metrics(
    host, tmp_path, monkeypatch, capsys, store_dir, method, workers
):
    data = fake_imagenet(tmp_path / "imagenet", train=8, val=6)
    argv = [
        "run", "--dataset", "imagenet", "--data-dir", str(data), "--model", "cnn", "--method", method,
        "--epochs", "2", "--device", "cpu", "--dataset-option", "decode_budget_gb=0", "--json",
        "--dataset-option", "train_per_class=8", "--dataset-option", "crop=32", "-o", "epochs=2",
    ]  # fmt: skip
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("resident")))
    resident, err = run_json(argv, capsys)
    assert "Streaming" not in err
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("streamed")))
    monkeypatch.setenv("UNLEARNKIT_DEVICE_DATA_GB", "0")  # nothing fits: every split streams
    monkeypatch.setenv("UNLEARNKIT_STREAM_WORKERS", workers)  # 0: decoded in this process, same path
    streamed, err = run_json(argv, capsys)
    assert "Streaming the train split" in err and "Streaming the forget split" in err
    drop = {"time_s", "rte", "eval_time_s"}
    assert [{k: v for k, v in r["metrics"].items() if k not in drop} for r in streamed] == [
        {k: v for k, v in r["metrics"].items() if k not in drop} for r in resident
    ]
    # one pass per (model, split) holds on the streaming path too
    assert [r["metrics"]["eval_images"] for r in streamed] == [r["metrics"]["eval_images"] for r in resident]
