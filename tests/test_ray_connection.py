"""The Ray connection's lifetime, on a stand-in for Ray: connecting happens in a thread of its own
while the command goes on, that thread is the one that shuts down what it started (Linux ends a
thread's child processes with the thread), a failure to connect reaches the command's own thread,
and a Ray the caller initialised is used as it is and never shut down. The real instance is
exercised by tests/test_ray.py."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.scale import ray_executor as rx

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "fixtures" / "recipes" / "tiny-one.toml"
PLUGINS = HERE / "fixtures" / "plugins"


class FakeRay:
    """What :class:`Connection` calls of Ray, recording the thread of each call."""

    def __init__(self, *, initialized: bool = False, fail: str = "", init_gate: threading.Event | None = None):
        self.initialized = initialized
        self.fail = fail
        self.init_gate = init_gate  # init blocks until it is set (a slow ``ray.init``)
        self.calls: list[tuple[str, str]] = []
        self.submitted: list[tuple[Any, ...]] = []

    def _log(self, what: str) -> None:
        self.calls.append((what, threading.current_thread().name))

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self._log("init")
        if self.init_gate is not None:
            self.init_gate.wait(10)
        if self.fail:
            raise ConnectionError(self.fail)
        self.initialized = True

    def shutdown(self) -> None:
        self._log("shutdown")
        self.initialized = False

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 4.0}

    def remote(self, fn: Any) -> Any:
        ray = self

        class Remote:
            def options(self, **options: Any) -> Remote:
                self.cpus = options["num_cpus"]
                return self

            def remote(self, *args: Any) -> str:
                ray.submitted.append((fn.__name__, self.cpus, *args))
                return f"ref{len(ray.submitted)}"

        return Remote()


@pytest.fixture(autouse=True)
def sigterm_kept():
    """A connection started from the main thread sets a SIGTERM handler: this process gets its own back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def fake(monkeypatch):
    def install(ray: FakeRay) -> FakeRay:
        monkeypatch.setattr(rx, "import_ray", lambda local=False: ray)
        monkeypatch.setattr(rx, "gcs_unreachable", lambda address, timeout=5.0: "")
        return ray

    return install


def test_ray_is_started_and_shut_down_by_one_thread_that_is_not_the_commands(fake, tmp_path):
    gate = threading.Event()
    ray = fake(FakeRay(init_gate=gate))
    executor = rx.RayExecutor(cpus_per_run=2, plugins_dir=PLUGINS)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connection = executor.start(uri)
    assert executor.start() is connection  # started once, however often asked
    assert not connection._ready.is_set()  # ray.init still running: start() did not wait for it
    gate.set()
    assert connection.wait() is ray and connection.started_here
    # one warm-up task per slot of 2 CPUs, sized like a run, given the plugins and the store
    assert [s[:2] for s in ray.submitted] == [("warm_worker", 2)] * 2
    assert ray.submitted[0][2:] == (str(PLUGINS.resolve()), tuple((n, "") for n in rx.PLUGIN_ENV), uri)
    assert connection.warming == ["ref1", "ref2"]
    executor.close()
    assert executor.connection is None and not ray.initialized
    (init, owner), (shutdown, closer) = ray.calls
    assert (init, shutdown) == ("init", "shutdown")
    assert owner == closer == "unlearnkit-ray" != threading.current_thread().name


def test_closing_while_ray_still_starts_shuts_it_down_once_started(fake):
    gate = threading.Event()
    ray = fake(FakeRay(init_gate=gate))
    executor = rx.RayExecutor()
    executor.start()
    closer = threading.Thread(target=executor.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert [what for what, _ in ray.calls] == ["init", "shutdown"]


def test_a_failure_to_connect_is_raised_in_the_commands_thread(fake):
    fake(FakeRay(fail="GCS refused"))
    executor = rx.RayExecutor(address="10.0.0.1:6379")
    connection = executor.start()
    with pytest.raises(ConfigError, match=r"^Cannot connect to the Ray cluster at 10\.0\.0\.1:6379 \(GCS refused\)"):
        connection.wait()
    executor.close()  # nothing was started: nothing to shut down, and no thread left waiting
    assert connection._thread is not None and not connection._thread.is_alive()


def test_a_ray_the_caller_initialised_is_used_as_it_is(fake):
    ray = fake(FakeRay(initialized=True))
    executor = rx.RayExecutor()
    connection = executor.start()
    assert connection.wait() is ray and not connection.started_here
    executor.close()
    assert ray.initialized and ray.calls == [] and ray.submitted == []  # no init, no warm-up, no shutdown
    assert connection._thread is None


def test_sigterm_still_exits_python_and_rays_notice_is_dropped(fake, monkeypatch):
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "getsignal", lambda sig: handlers.get(sig, signal.SIG_DFL))
    monkeypatch.setattr(signal, "signal", lambda sig, handler: handlers.__setitem__(sig, handler))
    worker_log = logging.getLogger("ray._private.worker")
    monkeypatch.setattr(worker_log, "filters", [])
    fake(FakeRay())
    executor = rx.RayExecutor()
    executor.start().wait()
    with pytest.raises(SystemExit) as exited:  # what Ray's own handler does in the main thread
        handlers[signal.SIGTERM](signal.SIGTERM, None)
    assert exited.value.code == signal.SIGTERM
    seen: list[str] = []
    catcher = logging.Handler()
    catcher.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    monkeypatch.setattr(worker_log, "handlers", [catcher])  # a real Ray run before may stop propagation
    monkeypatch.setattr(worker_log, "level", logging.WARNING)
    worker_log.warning("SIGTERM handler is not set because current thread is not the main thread.")
    worker_log.warning("another notice")
    assert seen == ["another notice"]
    executor.close()
    handlers[signal.SIGTERM] = marker = object()
    rx.exit_on_sigterm()  # a handler someone else set is kept
    assert handlers[signal.SIGTERM] is marker


def test_a_warm_worker_loads_the_plugins_its_tasks_use_and_never_raises(tmp_path, monkeypatch):
    from unlearnkit.api.progress import RecordingReporter
    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.store.mlflow_store import Store

    broken = tmp_path / "plugins"
    shutil.copytree(PLUGINS, broken)
    (broken / "zz_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    monkeypatch.setattr(rx, "_hosts", {})
    monkeypatch.setattr(rx, "_hosts_reported", set())
    monkeypatch.setattr(rx, "_stores", {})
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert isinstance(rx.warm_worker(str(broken), (), uri), int)
    assert list(rx._hosts) == [(str(broken), ())]  # the host its tasks will find
    assert rx.warm_worker(str(tmp_path / "missing"), (), "bogus://nowhere") > 0  # a head start never raises

    store = Store(uri)
    job = Sweep(RECIPE, PluginHost(broken).registries, store)
    cell, plan = job.plans[0]
    task = rx.Task(rx.portable(plan.request), cell.label, cell.grid_point, job.name, 1, uri, "unlearnkit", str(broken))
    first, second = RecordingReporter(), RecordingReporter()
    rx.worker_runner(task, first)
    rx.worker_runner(task, second)
    # the warm-up loaded the broken plugin's host; the first task still says so, once per worker
    assert any("zz_broken" in w for w in first.warnings) and not second.warnings


@pytest.mark.parametrize(
    "recipe_text", ['name = "bad"\n', 'name = "bad"\ndatasets = ["no-such-dataset"]\nmodels = ["resnet18"]\n']
)
def test_a_bad_recipe_is_refused_before_ray_starts(recipe_text, fake, tmp_path, monkeypatch, capsys):
    from tests.invoke import invoke

    ray = fake(FakeRay())
    bad = tmp_path / "bad.toml"
    bad.write_text(recipe_text)
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    argv = ["sweep", str(bad), "--executor", "ray", "--tracking-uri", store]
    code, out, err = invoke(argv, capsys)
    assert code != 0
    assert "Error:" in err and len(err.strip().splitlines()) == 1, err
    assert ray.calls == []  # no instance started (and then shut down) for input that was never going to run


STAND_IN = """
import os
SEEN = os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER")
"""


@pytest.mark.parametrize("given", [None, "0"])
def test_the_driver_imports_ray_without_its_failure_handler_for_the_import_alone(given, tmp_path, monkeypatch):
    """Ray's handler would take SIGTERM from the CLI's (see tests/test_ray.py); the variable lasts the
    import only, so the Ray processes started later keep it; a value the user set is left alone."""
    (tmp_path / "ray.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    # setitem, then del: after the test the real Ray is put back, or the stand-in removed when no Ray
    # was imported before (delitem left the stand-in behind, and a later `import ray.exceptions` failed)
    monkeypatch.setitem(sys.modules, "ray", None)
    del sys.modules["ray"]
    if given is None:
        monkeypatch.delenv(rx.NO_FAILURE_HANDLER, raising=False)
    else:
        monkeypatch.setenv(rx.NO_FAILURE_HANDLER, given)
    ray = rx.import_ray()
    assert ray.__file__ == str(tmp_path / "ray.py")
    assert ray.SEEN == ("1" if given is None else given)
    assert os.environ.get(rx.NO_FAILURE_HANDLER) == given
