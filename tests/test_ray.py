"""Sweeps over Ray: the local leaderboard again, fractional GPUs packed, every run exactly once with
two drivers, a killed worker or a killed driver, and a one-machine store refused on a multi-node cluster.

Ray keeps to the loopback interface here (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by Ray at
import) and runs without token authentication; every Ray process a test starts is stopped in teardown.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.servers import Server, free_port
from unlearnkit.errors import StoreError
from unlearnkit.store.mlflow_store import Store

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "fixtures" / "recipes" / "tiny.toml"
ONE_CELL = HERE / "fixtures" / "recipes" / "tiny-one.toml"
PLUGINS = HERE / "fixtures" / "plugins"
SLEEPY = HERE / "fixtures" / "interrupt"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only: a one-machine test cluster
    "RAY_AUTH_MODE": "disabled",  # no token written to ~/.ray
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}
# What the boards of two executors may differ in: wall-clock times and what derives from them, and how
# many images this process forwarded (a Ray task does not reuse the reference models' outputs that an
# earlier run of the same seed computed in the local loop).
NOT_COMPARED = re.compile(r"(time|_s$|^rte$|^eval_images$)")
NOT_TIMED = re.compile(r"(time|_s$|^rte$)")  # two runs in one process: only wall-clock times differ


# --------------------------------------------------------------------------- the store check
def test_one_machine_store_is_refused_on_a_multi_node_cluster(tmp_path):
    from unlearnkit.scale.ray_executor import check_shared_store

    sqlite = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    head = {"NodeID": "a", "Alive": True, "Resources": {"CPU": 2.0}}
    check_shared_store(sqlite, [head])
    check_shared_store(sqlite, [head, {"NodeID": "b", "Alive": False}])  # a dead node is no second machine
    check_shared_store(Store("http://127.0.0.1:5000"), [head, {"NodeID": "b", "Alive": True}])
    with pytest.raises(StoreError) as exc:
        check_shared_store(sqlite, [head, {"NodeID": "b", "Alive": True}, {"NodeID": "c", "alive": True}])
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"The sqlite: store sqlite:///{tmp_path / 'mlflow.db'} lives on this machine's disk")
    assert "3 nodes" in message and "mlflow server --backend-store-uri postgresql://" in message
    assert "--artifacts-destination" in message and "--tracking-uri http://SERVER:5000" in message


def test_resources_per_run(tmp_path, monkeypatch):
    from unlearnkit.engine.config import RunRequest
    from unlearnkit.errors import ConfigError
    from unlearnkit.scale.ray_executor import RayExecutor, portable
    from unlearnkit.scale.sweep_recipes import Cell

    on = {"cpu": Cell(RunRequest(device="cpu"), ""), "auto": Cell(RunRequest(device="auto"), "")}
    default = RayExecutor()
    assert default.gpus_for(on["auto"], cluster_gpus=4) == 1 and default.gpus_for(on["cpu"], cluster_gpus=4) == 0
    assert default.gpus_for(on["auto"], cluster_gpus=0) == 0
    assert RayExecutor(gpus_per_run=0.5).gpus_for(on["cpu"], cluster_gpus=0) == 0.5  # as asked
    assert RayExecutor(gpus_per_run=0.5).task_options(0.5) == {
        "num_cpus": 1.0,
        "num_gpus": 0.5,
        "max_retries": 2,
        "retry_exceptions": False,
    }
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0}}]
    RayExecutor(cpus_per_run=8).check_fits(nodes, 2)
    with pytest.raises(ConfigError, match=r"^No Ray node has 16 CPUs and 1 GPU for one run \(the nodes have: 8 CPUs"):
        RayExecutor(cpus_per_run=16).check_fits(nodes, 1)
    with pytest.raises(ConfigError, match="whole GPUs"):
        RayExecutor(gpus_per_run=1.5)
    monkeypatch.chdir(tmp_path)
    moved = portable(RunRequest(data_dir=Path("data"), weights=Path("w.pt")))
    assert moved.data_dir == tmp_path / "data" and moved.weights == tmp_path / "w.pt" and moved.original is None


def test_executor_flags_are_one_line_errors(capsys):
    from unlearnkit.cli import main

    for argv, expected in (
        (["--gpus-per-run", "0.5"], "Error: --gpus-per-run only apply to --executor ray."),
        (["--executor", "rya"], "Error: Unknown executor 'rya'. Did you mean 'ray'? Valid executors: local, ray."),
        (["--executor", "ray", "--gpus-per-run", "-1"], "Error: Bad --gpus-per-run -1.0: expected 0, a fraction"),
        (["--executor", "ray", "--cpus-per-run", "0"], "Error: Bad --cpus-per-run 0.0: expected a finite number more"),
        # NaN passed every comparison, so Ray started before the request was refused
        (
            ["--executor", "ray", "--cpus-per-run", "nan"],
            "Error: Bad --cpus-per-run nan: expected a finite number more",
        ),
        (
            ["--executor", "ray", "--cpus-per-run", "inf"],
            "Error: Bad --cpus-per-run inf: expected a finite number more",
        ),
        (["--executor", "ray", "--gpus-per-run", "nan"], "Error: Bad --gpus-per-run nan: expected 0, a fraction"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["sweep", str(RECIPE), "--plugins-dir", str(PLUGINS), *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected) and "\n" not in err, err


def test_an_unreachable_cluster_is_one_line_at_once(capsys):
    from unlearnkit.cli import main

    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(RECIPE), "--plugins-dir", str(PLUGINS), "--executor", "ray", "--ray-address", address])
    assert exc.value.code == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: Cannot reach the Ray cluster at {address} (Connection refused).") and "\n" not in err


def test_help_does_not_import_ray():
    code = (
        "import sys; from unlearnkit.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
        "print('ray' in sys.modules, 'unlearnkit.distributed' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False"


# ------------------------------------------------------------------------------ processes
def children() -> dict[int, int]:
    """pid -> parent pid, for every process we can see."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    return out


def descendants(root: int) -> set[int]:
    parents = children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def in_session(sid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[3]) == sid:
                out.add(int(entry))
    return out


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in status(p)}
        if not pids:
            return set()
        time.sleep(0.2)
    return pids


def status(pid: int) -> str:
    try:
        return next(
            (line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:")), ""
        ).lower()
    except OSError:
        return ""


# ----------------------------------------------------------------------- a local Ray instance
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """``ray.init`` in this process with two logical GPUs (no hardware needed to pack fractional ones)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        mp.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path_factory.mktemp("ray-cache")))  # the workers' env
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[dev]')")
        before = descendants(os.getpid())
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        try:
            yield ray
        finally:
            started = descendants(os.getpid()) - before
            ray.shutdown()
            left = wait_gone(started, 30)
            for pid in left:  # ours, by id
                os.kill(pid, signal.SIGKILL)
            assert not left, f"ray.shutdown() left processes behind: {sorted(left)}"


def board_means(boards) -> dict[tuple[str, str, str], float]:
    return {
        (b.scenario, row.method, name): stat.mean
        for b in boards
        for row in b.rows
        for name, stat in row.metrics.items()
        if not NOT_COMPARED.search(name)
    }


def test_ray_sweep_gives_the_local_leaderboard(local_ray, tmp_path, store_dir):
    import torch

    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.scale.ray_executor import RayExecutor
    from unlearnkit.scale.sweep import Sweep

    registries = PluginHost(PLUGINS).registries
    stores = {name: Store(f"sqlite:///{store_dir(name) / 'mlflow.db'}") for name in ("local", "ray")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a one-CPU Ray task: the same float sums in the same order
    try:
        local = Sweep(ONE_CELL, registries, stores["local"]).run()
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(gpus_per_run=0.5, plugins_dir=PLUGINS)
    remote = Sweep(ONE_CELL, registries, stores["ray"]).run(executor=executor)

    assert local.counts == remote.counts == Counter(finished=3)  # original, retrain, lotus
    assert remote.leaderboard_run and remote.boards
    a, b = board_means(local.boards), board_means(remote.boards)
    assert a.keys() == b.keys() and len(a) > 20
    different = {k: (a[k], b[k]) for k in a if a[k] != b[k] and not (math.isnan(a[k]) and math.isnan(b[k]))}
    assert not different
    hashes = {}
    for name, store in stores.items():
        runs = store.search({"run_type": "unlearn"}, finished_only=False)
        assert all(r.status == "FINISHED" for r in runs)
        hashes[name] = Counter(r.tag("config_hash") for r in runs)
        assert len(hashes[name]) == 3 and set(hashes[name].values()) == {1}
    assert hashes["local"] == hashes["ray"]  # the same identities: the same runs
    (board_run,) = stores["ray"].search({"run_type": "leaderboard"})
    assert board_run.params["recipe"] == "tiny-one" and board_run.metrics["runs_finished"] == 3
    # 1 reference task (one per cell and seed) + 3 method runs, each on half a GPU
    assert len(executor.placements) == 4
    assert all(o.resources == {"CPU": 1.0, "GPU": 0.5} for _, o in executor.placements)


def test_method_tasks_reuse_what_stage_one_prepared(local_ray, store_dir, monkeypatch):
    """A method task neither loads the data again nor repeats the memorisation check: it records
    stage one's numbers, and the same run (every metric, eval_images included) as a task that checks again."""
    from dataclasses import replace
    from functools import cached_property

    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.engine.prepared import Benchmark
    from unlearnkit.engine.runner import Runner
    from unlearnkit.scale import ray_executor as rx
    from unlearnkit.scale.sweep import Sweep

    def outcome(reporter, started, result=None, skip=0):  # a task's outcome, in a process that is no Ray worker
        return rx.TaskOutcome(result=result, events=reporter.events[skip:], warnings=reporter.warnings)

    monkeypatch.setattr(rx, "_outcome", outcome)
    registries = PluginHost(PLUGINS).registries
    tasks, stage_one = {}, {}
    for name in ("shared", "checked"):
        store = Store(f"sqlite:///{store_dir(name) / 'mlflow.db'}")
        store.check()
        cell, plan = Sweep(ONE_CELL, registries, store).plans[0]
        request = rx.portable(plan.request)
        tasks[name] = rx.Task(request, cell.label, "", "tiny-one", 1, store.uri, store.experiment_name, str(PLUGINS))
        told, made = rx.prepare_references(tasks[name])  # in this process, as a worker would
        assert told.result is None
        stage_one[name] = local_ray.get(local_ray.put(made))  # through the object store: arrays read in place
    prepared = stage_one["shared"]
    assert prepared.raw is not None and not prepared.raw.x_train.flags.writeable  # the store's copy, not ours
    assert math.isfinite(prepared.memorisation_gap)
    # what the check forwarded: the original on forget, unseen and retain, the retrained on retain
    assert {(role, split) for role, split, _ in prepared.outputs.logits} == {
        ("original", "forget"),
        ("original", "unseen"),
        ("original", "retain"),
        ("retrained", "retain"),
    }

    def load_again(bench: Benchmark) -> None:
        raise AssertionError("a method task loaded the data again")

    raw = cached_property(load_again)
    raw.__set_name__(Benchmark, "raw")
    monkeypatch.setattr(Benchmark, "raw", raw)
    known: list[tuple[float, bool] | None] = []
    check = Runner.check_memorisation

    def spy(self, state, given=None):
        known.append(given)
        check(self, state, given)

    monkeypatch.setattr(Runner, "check_memorisation", spy)
    elsewhere = replace(stage_one["checked"], device="another device")  # stage one ran elsewhere: check again
    shared = rx.run_one_method(replace(tasks["shared"], method="lotus"), prepared).result
    checked = rx.run_one_method(replace(tasks["checked"], method="lotus"), elsewhere).result
    assert known == [(prepared.memorisation_gap, prepared.weak_original), None]
    assert shared is not None and checked is not None and shared.status == checked.status == "finished"
    assert shared.metrics["memorisation_gap"] == prepared.memorisation_gap
    a, b = ({k: v for k, v in r.metrics.items() if not NOT_TIMED.search(k)} for r in (shared, checked))
    assert a.keys() == b.keys() and "eval_images" in a
    assert not {k for k in a if a[k] != b[k] and not (math.isnan(a[k]) and math.isnan(b[k]))}


def test_two_half_gpu_runs_share_one_gpu(local_ray, tmp_path):
    """The executor's task options with --gpus-per-run 0.5: two tasks run at once on the same GPU."""
    from unlearnkit.scale.ray_executor import RayExecutor

    def meet(folder: str) -> dict:
        import os
        import time
        from pathlib import Path

        import ray

        Path(folder, str(os.getpid())).touch()
        deadline = time.time() + 60
        while len(list(Path(folder).iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.05)
        return {
            "met": len(list(Path(folder).iterdir())) == 2,
            "gpus": ray.get_gpu_ids(),
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "resources": ray.get_runtime_context().get_assigned_resources(),
        }

    options = RayExecutor(gpus_per_run=0.5).task_options(0.5)
    probe = local_ray.remote(meet).options(**options)
    first, second = local_ray.get([probe.remote(str(tmp_path)) for _ in range(2)], timeout=120)
    assert first["met"] and second["met"], "two 0.5-GPU tasks were not scheduled at the same time"
    assert first["gpus"] == second["gpus"] and len(first["gpus"]) == 1  # packed onto one GPU
    assert first["visible"] == second["visible"] == str(first["gpus"][0])
    assert first["resources"] == second["resources"] == {"CPU": 1.0, "GPU": 0.5}


# ---------------------------------------------------- a real cluster and a real MLflow server
class Cluster:
    """``ray start --head --block`` on 127.0.0.1 in its own session: stopped, and every process of
    that session killed, in teardown (never ``ray stop``, which would stop other people's Ray too)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.temp = Path(tempfile.mkdtemp(prefix="ulk-ray-", dir="/tmp"))  # short: Ray's socket paths
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--port",
            str(self.port),
            "--num-cpus",
            "2",
            "--num-gpus",
            "0",
            "--include-dashboard=false",
            "--dashboard-port",
            str(free_port()),
            "--disable-usage-stats",
            "--temp-dir",
            str(self.temp),
            "--block",
        ]
        log = open(self.temp / "start.log", "w")  # noqa: SIM115 - lives as long as the cluster
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 120
        while "Ray runtime started" not in (self.temp / "start.log").read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("ray start failed: " + (self.temp / "start.log").read_text()[-3000:])
            time.sleep(0.3)

    def stop(self) -> set[int]:
        if self.proc is None:
            return set()
        members = in_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        left = wait_gone(members | in_session(self.proc.pid), 20)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[dev]')")
    pytest.importorskip("mlflow.server", reason="the MLflow server is not installed (pip install 'unlearnkit[dev]')")
    root = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        **RAY_ENV,
        "UNLEARNKIT_CACHE_DIR": str(root / "cache"),
        "SLEEPY_DIR": str(root / "sleepy"),  # where tests/fixtures/interrupt/sleepy.py leaves its markers
    }
    (root / "sleepy").mkdir()
    node = Cluster(env)
    try:
        node.start()
        yield node
    finally:
        left = node.stop()
        assert not left, f"the Ray cluster left processes behind: {sorted(left)}"


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.kill()


def ray_sweep(cluster: Cluster, server: Server, recipe: Path, plugins: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **RAY_ENV, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": server.uri}
    cmd = [
        *(sys.executable, "-m", "unlearnkit", "sweep", str(recipe), "--plugins-dir", str(plugins)),
        *("--executor", "ray", "--ray-address", cluster.address),
    ]
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def unlearn_runs(uri: str) -> list:
    return Store(uri).search({"run_type": "unlearn"}, finished_only=False)


def finished_per_config(uri: str) -> Counter:
    return Counter(r.tag("config_hash") for r in unlearn_runs(uri) if r.status == "FINISHED")


def summary(stdout: str) -> tuple[int, int, int]:
    found = re.search(r"\((\d+) new, (\d+) already in the store, (\d+) failed\)", stdout)
    assert found, stdout[-2000:]
    new, skipped, failed = map(int, found.groups())
    return new, skipped, failed


@pytest.mark.slow
def test_two_drivers_on_one_cluster_run_everything_once(cluster, server, tmp_path):
    procs = [ray_sweep(cluster, server, RECIPE, PLUGINS, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    counts = finished_per_config(server.uri)
    assert len(counts) == 12 and set(counts.values()) == {1}  # 2 scenarios x 2 seeds x 3 methods, once each
    assert not [r for r in unlearn_runs(server.uri) if r.status == "RUNNING"]
    (a_new, a_skipped, a_failed), (b_new, b_skipped, b_failed) = (summary(out) for out, _ in outs)
    assert a_new + a_skipped == b_new + b_skipped == 12 and a_failed == b_failed == 0
    assert a_new + b_new == 12  # what one driver ran, the other found in the store
    trained = Store(server.uri).search({"run_type": "train"}, finished_only=False)
    assert all(r.status == "FINISHED" for r in trained)
    assert len(trained) == len({r.tag("config_hash") for r in trained}) == 6  # 2 originals + 4 retrained


def sleepy_recipe(tmp_path: Path, name: str) -> Path:
    """A one-run recipe of the fixture method ``sleepy``, which pauses mid-unlearning for a signal."""
    recipe = tmp_path / "sleepy.toml"
    recipe.write_text(
        f'name = "{name}"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nscenarios = ["0.1"]\n'
        'methods = ["sleepy"]\nseeds = [1]\nepochs = 2\ndevice = "cpu"\n'
    )
    return recipe


def wait_until_unlearning(proc: subprocess.Popen, markers: Path, timeout: float = 180) -> None:
    """Until the sleepy run leaves its ``unlearning`` marker; fails if the command ends or it never comes."""
    deadline = time.time() + timeout
    while not (markers / "unlearning").exists():
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail("the sleepy run never started: " + proc.communicate()[1][-3000:])
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_worker_is_retried_never_lost_or_duplicated(cluster, server, tmp_path):
    recipe = sleepy_recipe(tmp_path, "sleepy-ray")
    markers = Path(cluster.env["SLEEPY_DIR"])
    for old in markers.iterdir():
        old.unlink()
    proc = ray_sweep(cluster, server, recipe, SLEEPY, tmp_path)
    try:
        wait_until_unlearning(proc, markers)
        worker = int((markers / "unlearning").read_text())
        assert worker != proc.pid  # a Ray worker, not the driver
        (markers / "resume").touch()  # the retry must not pause again
        os.kill(worker, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert summary(out) == (3, 0, 0)  # original, retrain and sleepy: the killed run was redone
    runs = unlearn_runs(server.uri)
    counts = finished_per_config(server.uri)
    assert len(counts) == 3 and set(counts.values()) == {1}
    sleepy = [r for r in runs if r.tag("method") == "sleepy"]
    assert sorted(r.status for r in sleepy) == ["FAILED", "FINISHED"]  # the killed claim, failed; the retry
    (dead,) = [r for r in sleepy if r.status == "FAILED"]
    assert dead.tag("pid") == str(worker) and "abandoned" in dead.tag("failure")


@pytest.mark.slow
def test_a_killed_driver_resumes_when_run_again(cluster, server, tmp_path):
    proc = ray_sweep(cluster, server, RECIPE, PLUGINS, tmp_path)
    try:
        deadline = time.time() + 180
        while sum(finished_per_config(server.uri).values()) < 2:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the sweep ended before it could be killed: " + proc.communicate()[1][-3000:])
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    claimed = {
        int(r.tag("pid"))
        for r in Store(server.uri).search({}, finished_only=False)
        if r.status == "RUNNING" and r.tag("pid")
    }
    assert not wait_gone(claimed, 60), "Ray kept running the tasks of a killed driver"
    before = sum(finished_per_config(server.uri).values())
    assert 2 <= before < 12
    again = ray_sweep(cluster, server, RECIPE, PLUGINS, tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    new, skipped, failed = summary(out)
    assert failed == 0 and new + skipped == 12 and skipped >= before
    counts = finished_per_config(server.uri)
    assert len(counts) == 12 and set(counts.values()) == {1}
    assert not [r for r in unlearn_runs(server.uri) if r.status == "RUNNING"]


@pytest.mark.slow
def test_sigterm_to_a_driver_that_started_ray_exits_cleanly(tmp_path):
    """SIGTERM (a scheduler's preemption) while a Ray task unlearns: the CLI's handler, not Ray's
    failure handler, takes it; the command ends with 130 and its one line, not an abort (134) after a
    stack trace, the run is not counted, and no Ray process outlives the command."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[dev]')")
    recipe = sleepy_recipe(tmp_path, "sleepy-term")
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"},
        **RAY_ENV,
        "PYTHONUNBUFFERED": "1",
        "SLEEPY_DIR": str(markers),
        "UNLEARNKIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cmd = [
        *(sys.executable, "-m", "unlearnkit", "sweep", str(recipe), "--plugins-dir", str(SLEEPY)),
        *("--executor", "ray", "--tracking-uri", uri),
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_until_unlearning(proc, markers)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = wait_gone(in_session(proc.pid) - {proc.pid}, timeout=30)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "Interrupted: an unfinished run is never counted" in err
    assert "SIGTERM received" not in err  # Ray's failure handler never saw it
    assert not left, f"Ray processes outlived the command: {sorted(left)}"
    sleepy = [r for r in Store(uri).search({"run_type": "unlearn"}, finished_only=False) if r.tag("method") == "sleepy"]
    assert sleepy and all(r.status != "FINISHED" for r in sleepy)


ONE_INSTANCE = """
import os, sys
from pathlib import Path
import ray
from unlearnkit.discovery.host import PluginHost
from unlearnkit.scale.ray_executor import RayExecutor
from unlearnkit.scale.sweep import Sweep
from unlearnkit.store.mlflow_store import Store

recipe, plugins, store_dir = map(Path, sys.argv[1:4])
registries = PluginHost(plugins).registries
executor = RayExecutor(plugins_dir=plugins)
executor.start(f"sqlite:///{store_dir / 'a' / 'mlflow.db'}")
counts, sessions = [], []
for name in ("a", "b"):  # two sweeps, as a table's clean and paper columns are
    report = Sweep(recipe, registries, Store(f"sqlite:///{store_dir / name / 'mlflow.db'}")).run(executor=executor)
    counts.append(report.counts["finished"])
    sessions.append(ray.get_runtime_context().get_job_id())
print("counts", *counts)
print("one job", len(set(sessions)) == 1, ray.is_initialized())
executor.close()
print("after close", ray.is_initialized())
"""


@pytest.mark.slow
def test_one_ray_instance_serves_every_sweep_until_closed(tmp_path):
    """A command's several sweeps share the instance it started (not one start and shutdown each), and
    closing leaves no Ray process behind."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[dev]')")
    env = {**os.environ, **RAY_ENV, "UNLEARNKIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-c", ONE_INSTANCE, str(ONE_CELL), str(PLUGINS), str(tmp_path / "stores")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        left = wait_gone(in_session(proc.pid) - {proc.pid}, timeout=30)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert "counts 3 3" in out and "one job True True" in out and "after close False" in out, out
    assert not left  # no raylet, GCS or worker outlives the command
