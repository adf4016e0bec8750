"""What a CPU result depends on besides its identity is recorded on every run (torch threads,
deterministic algorithms, default dtype, device, torch version); ``--threads N`` pins the thread
count and only then enters the identity; a broken torch/torchvision pair is one line."""

from __future__ import annotations

import importlib.abc
import json
import sys

import pytest
import torch

from tests.invoke import invoke
from unlearnkit.store.mlflow_store import Store

TINY = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--method", "lotus", "--epochs", "2", "--device", "cpu"]
NUMERICS = ("threads", "deterministic", "default_dtype", "torch_version", "device")


def runs(run_type: str) -> list:
    return sorted(Store().search({"run_type": run_type}), key=lambda r: r.start_time)


def lotus_runs() -> list:
    return [r for r in runs("unlearn") if r.tag("method") == "lotus"]


def artifact(run_id: str, name: str, tmp_path) -> dict:
    return json.loads(Store().download(run_id, name, tmp_path / run_id).read_text())


def test_every_run_records_its_numerics_and_an_unpinned_run_keeps_its_identity(host, capsys, tmp_path):
    code, _, err = invoke([*TINY, "--json"], capsys)
    assert code == 0, err
    for record in [*runs("train"), *runs("unlearn")]:
        assert record.tag("threads") == str(torch.get_num_threads())
        assert record.tag("deterministic") == str(torch.are_deterministic_algorithms_enabled()).lower()
        assert record.tag("default_dtype") == "float32" and record.tag("torch_version") == torch.__version__
        assert record.tag("device") == "cpu"
    (lotus,) = lotus_runs()
    assert "threads" not in artifact(lotus.run_id, "identity.json", tmp_path)  # not pinned: not in the identity
    request = artifact(lotus.run_id, "request.json", tmp_path)
    assert request["threads"] is None and request["numerics"]["threads"] == str(torch.get_num_threads())


def test_one_and_two_threads_give_the_same_numbers_or_record_different_settings(host, capsys, tmp_path):
    before = torch.get_num_threads()
    for threads in ("1", "2"):
        code, _, err = invoke([*TINY, "--threads", threads, "--json"], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == before  # the pin is the run's, not the process's
    one, two = lotus_runs()
    assert (one.tag("threads"), two.tag("threads")) == ("1", "2")  # recorded as used
    assert one.tag("config_hash") != two.tag("config_hash")  # a pinned count is part of the identity
    assert artifact(one.run_id, "identity.json", tmp_path)["threads"] == 1
    originals = [r for r in runs("train") if r.tag("role") == "original"]
    assert sorted(r.tag("threads") for r in originals) == ["1", "2"]  # the references trained at each count too
    same = {k: v for k, v in one.metrics.items() if not k.endswith("time_s")} == {
        k: v for k, v in two.metrics.items() if not k.endswith("time_s")
    }
    assert same or one.tag("threads") != two.tag("threads")


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_thread_count_is_one_line_and_exit_2(host, capsys, value):
    code, _, err = invoke([*TINY, "--threads", value], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert value in lines[0] and "--threads" in lines[0]
    assert runs("unlearn") == [] and runs("train") == []


def test_show_run_shows_the_numerics(host, capsys):
    code, _, err = invoke([*TINY, "--threads", "1", "--json"], capsys)
    assert code == 0, err
    (lotus,) = lotus_runs()
    code, out, _ = invoke(["show", "run", lotus.run_id], capsys)
    assert code == 0
    line = next(ln for ln in out.splitlines() if "numerics:" in ln)
    for key in NUMERICS:
        assert f"{key}={lotus.tag(key)}" in line


class BrokenTorchvision(importlib.abc.MetaPathFinder):
    """torchvision as a CPU torch with a CUDA-built torchvision imports it: its operators are missing."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_a_mismatched_torchvision_is_one_line_naming_both_builds(host, capsys, monkeypatch):
    from unlearnkit.testing import TinyDataset

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [BrokenTorchvision(), *sys.meta_path])
    load = TinyDataset.load

    def load_with_torchvision(self, *args, **kwargs):  # where a real dataset plugin first imports it
        import torchvision  # noqa: F401

        return load(self, *args, **kwargs)

    monkeypatch.setattr(TinyDataset, "load", load_with_torchvision)
    code, _, err = invoke(TINY, capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1, err
    assert f"torch {torch.__version__} and torchvision " in lines[0] and "are different builds" in lines[0]
    assert "torchvision::nms does not exist" in lines[0] and "--index-url https://download.pytorch.org/whl/" in lines[0]
