"""``unlearnkit sweep --executor ray`` as people run it: from another folder than the files it names, on
a store another executor filled, with resource shares Ray cannot count or a CUDA device its tasks cannot see.

A Ray worker's working directory is not the driver's (on a cluster it is where ``ray start`` ran), so
the fast tests build the driver's tasks with a stand-in for Ray and run the worker's side in another
folder; the slow one runs the real CLI on a local Ray instance, stopped when the command ends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.scale import ray_executor as rx

HERE = Path(__file__).resolve().parent
PLUGINS = HERE / "fixtures" / "plugins"
ONE_CELL = HERE / "fixtures" / "recipes" / "tiny-one.toml"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
NODE = {"NodeID": "a", "Alive": True, "Resources": {"CPU": 2.0}}


class FakeRay:
    """What :meth:`RayExecutor.submit` and :meth:`RayExecutor.collect` call of Ray: submitted calls are
    recorded, ``failures`` (object reference -> exception) are what ``get`` raises."""

    def __init__(self, failures: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failures = failures or {}

    def remote(self, fn: Any) -> Any:
        ray = self

        class Remote:
            returns = 1

            def options(self, **options: Any) -> Any:
                self.returns = options.get("num_returns", 1)
                return self

            def remote(self, *args: Any) -> Any:
                ray.calls.append((fn.__name__, args))
                ref = f"ref{len(ray.calls)}"
                return (ref, f"{ref}-prepared") if self.returns == 2 else ref

        return Remote()

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 1.0}

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        return list(refs[: max(num_returns, 1)]), list(refs[max(num_returns, 1) :])

    def get(self, ref: Any) -> Any:
        raise self.failures[ref]


@pytest.fixture
def worker_caches(monkeypatch):
    """This process plays a fresh worker: no plugin host, plan or store kept from another test."""
    monkeypatch.setattr(rx, "_hosts", {})
    monkeypatch.setattr(rx, "_hosts_reported", set())
    monkeypatch.setattr(rx, "_plans", rx.BoundedMemo(rx.WORKER_PLANS))
    monkeypatch.setattr(rx, "_stores", {})
    for name in rx.PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)


def a_project(root: Path) -> Path:
    """A user's folder: the plugins, a training recipe and a sweep recipe naming it by a relative path."""
    root.mkdir()
    shutil.copytree(PLUGINS, root / "plugins")
    fast = resources.files("unlearnkit.loops").joinpath("training_recipes", "fast.toml").read_text()
    (root / "train.toml").write_text(fast)
    text = ONE_CELL.read_text().replace('device = "cpu"', 'device = "cpu"\ntrain_recipe = "train.toml"')
    (root / "recipe.toml").write_text(text)
    return root


def driver_and_worker(
    tmp_path: Path, store_dir: Any, monkeypatch: pytest.MonkeyPatch, plugins_dir: Path | None
) -> tuple[Any, Any]:
    """The driver's plan of the project's one cell, run from the project's folder, and the Runner a worker
    builds from the task the driver submitted, in another folder (the worker's working directory)."""
    from unlearnkit.api.progress import SILENT, RecordingReporter
    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.store.mlflow_store import Store

    store = Store(f"sqlite:///{store_dir('store') / 'mlflow.db'}")
    sweep = Sweep(Path("recipe.toml"), PluginHost(plugins_dir).registries, store)
    fake, executor = FakeRay(), rx.RayExecutor(plugins_dir=plugins_dir)
    executor.warm(fake, store.uri)
    executor.submit(fake, sweep, SILENT, [NODE], 0.0)
    (warm, warm_args), (name, (task,)), *_ = fake.calls
    assert (warm, name) == ("warm_worker", "prepare_references")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rx.warm_worker(*warm_args)
    runner = rx.worker_runner(task, RecordingReporter())
    assert len(rx._hosts) == 1  # the host the warm-up loaded is the one its tasks find
    return sweep.plans[0][1], runner


def same_identity_inputs(driver: Any, worker: Any) -> None:
    from unlearnkit.identity import plugin_version

    assert plugin_version(worker.plan.dataset) == plugin_version(driver.dataset)
    assert plugin_version(worker.plan.model) == plugin_version(driver.model)
    assert [plugin_version(m) for m in worker.plan.methods] == [plugin_version(m) for m in driver.methods]
    assert worker.plan.train_recipe == driver.train_recipe


def test_a_worker_in_another_folder_builds_the_runs_the_driver_planned(tmp_path, store_dir, monkeypatch, worker_caches):
    """A relative --plugins-dir and a recipe's relative training recipe: the worker finds both, and its
    plugins carry the driver's provenance, which the run identities hold (else a ray sweep and a local
    one of the same command compute different identities, and each recomputes the other's runs)."""
    monkeypatch.chdir(a_project(tmp_path / "project"))
    driver, worker = driver_and_worker(tmp_path, store_dir, monkeypatch, Path("plugins"))
    same_identity_inputs(driver, worker)
    assert worker.plan.train_recipe.name == "train"


def test_a_relative_plugins_dir_in_the_environment_reaches_a_worker_in_another_folder(
    tmp_path, store_dir, monkeypatch, worker_caches
):
    monkeypatch.chdir(a_project(tmp_path / "project"))
    monkeypatch.setenv("UNLEARNKIT_PLUGINS_DIR", "plugins")
    driver, worker = driver_and_worker(tmp_path, store_dir, monkeypatch, None)
    same_identity_inputs(driver, worker)
    assert os.environ["UNLEARNKIT_PLUGINS_DIR"] == str(tmp_path / "project" / "plugins")  # as the worker set it


def test_a_share_finer_than_ray_counts_is_one_line_before_ray_starts(capsys):
    from unlearnkit.cli import main

    for flag, given in (("cpus_per_run", 0.00001), ("gpus_per_run", 0.00005)):
        with pytest.raises(ConfigError, match=r"at least 0\.0001"):
            rx.RayExecutor(**{flag: given})
        rx.RayExecutor(**{flag: 0.0001})  # the finest share Ray takes
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(ONE_CELL), "--plugins-dir", str(PLUGINS), "--executor", "ray", "--cpus-per-run", "1e-5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: Bad --cpus-per-run 1e-05: Ray counts CPUs in steps of 0.0001") and "\n" not in err


def test_a_reference_task_that_failed_is_one_sentence(tmp_path):
    import ray.exceptions as rex

    from unlearnkit.api.progress import RecordingReporter
    from unlearnkit.engine.config import RunRequest
    from unlearnkit.engine.runner import RunResult

    task = rx.Task(RunRequest(), "tiny/tiny_cnn/0.1", "", "tiny", 1, "sqlite:///x", "unlearnkit")
    cause = ConfigError("Unknown training recipe 'train.toml'. Valid recipes: fast, or a .toml file.")
    fake = FakeRay(
        {"ref1": rex.RayTaskError("prepare_references", "", cause), "ref2": rex.RayTaskError("m", "", cause)}
    )
    pending = {"ref1": rx.Pending(task), "ref2": rx.Pending(replace(task, method="lotus"), "ref1")}
    reporter, results = RecordingReporter(), []
    rx.RayExecutor().collect(fake, pending, reporter, results.append)
    assert reporter.warnings == [
        "reference models (seed 1) of tiny/tiny_cnn/0.1 failed: Unknown training recipe 'train.toml'. Valid "
        "recipes: fast, or a .toml file; its runs count as failed."
    ]
    assert results == [RunResult("lotus", 1, "failed", failure=str(cause))]


# ------------------------------------------------------------------------- a real Ray instance
def sweep_cli(cwd: Path, uri: str, *more: str) -> tuple[int, str, str]:
    env = {**os.environ, **RAY_ENV, "UNLEARNKIT_CACHE_DIR": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("UNLEARNKIT_PLUGINS_DIR", None)
    cmd = [sys.executable, "-m", "unlearnkit", "sweep", "recipe.toml", "--plugins-dir", "plugins"]
    proc = subprocess.run(
        [*cmd, "--tracking-uri", uri, *more], cwd=cwd, env=env, capture_output=True, text=True, timeout=400
    )
    return proc.returncode, proc.stdout, proc.stderr


def summary(out: str) -> tuple[int, int, int]:
    found = re.search(r"\((\d+) new, (\d+) already in the store, (\d+) failed\)", out)
    assert found, out[-2000:]
    new, skipped, failed = map(int, found.groups())
    return new, skipped, failed


@pytest.mark.slow
def test_a_ray_sweep_with_relative_paths_is_found_by_a_local_one(tmp_path):
    """The same command from the project's folder, relative paths and all, first with Ray, then here:
    the local sweep finds every run in the store and shows the same board."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[dev]')")
    project = a_project(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    code, ray_out, err = sweep_cli(project, uri, "--executor", "ray")
    assert code == 0, err[-3000:]
    assert summary(ray_out) == (3, 0, 0)
    code, local_out, err = sweep_cli(project, uri)
    assert code == 0, err[-3000:]
    assert summary(local_out) == (0, 3, 0)  # nothing recomputed
    boards = [[line for line in out.splitlines() if line.startswith("|")] for out in (ray_out, local_out)]
    assert boards[0] and boards[0] == boards[1]


@pytest.mark.parametrize(
    ("device", "gpus_per_run", "cluster_gpus", "refused"),
    [
        ("cuda", None, 0.0, "its Ray tasks get no GPU (the cluster has none, or --gpus-per-run 0)"),
        ("cuda:0", 0.0, 2.0, "its Ray tasks get no GPU"),
        ("cuda:1", 0.5, 2.0, "a Ray task sees only the 1 GPU it is given, from cuda:0"),
        ("cuda:1", 2.0, 2.0, ""),
        ("cuda", None, 2.0, ""),
        ("cpu", None, 0.0, ""),
        ("auto", None, 0.0, ""),
    ],
)
def test_a_cuda_device_its_tasks_cannot_see_is_refused_before_any_task(
    device, gpus_per_run, cluster_gpus, refused, store_dir, monkeypatch
):
    """Ray hides every GPU from a task given none and numbers a task's GPUs from cuda:0: such a cell
    would fail every run, one warning each, where the local executor refuses it in one line."""
    from unlearnkit.api.progress import SILENT
    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.store.mlflow_store import Store

    monkeypatch.delenv(rx.NOSET_CUDA, raising=False)
    store = Store(f"sqlite:///{store_dir('store') / 'mlflow.db'}")
    sweep = Sweep(ONE_CELL, PluginHost(PLUGINS).registries, store, device=device)
    node = {**NODE, "Resources": {"CPU": 2.0, "GPU": cluster_gpus}}
    fake = FakeRay()
    submit = rx.RayExecutor(gpus_per_run=gpus_per_run).submit
    if not refused:
        assert len(submit(fake, sweep, SILENT, [node], cluster_gpus)) == 4  # stage one and three method runs
        return
    with pytest.raises(ConfigError) as exc:
        submit(fake, sweep, SILENT, [node], cluster_gpus)
    assert refused in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"Cell tiny/tiny_cnn/0.1 runs on device '{device}', but ")
    assert not fake.calls  # nothing submitted
