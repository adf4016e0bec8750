"""Shared fixtures: an isolated store and cache per test, the tiny test plugins, real data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The tests' models are tiny: a second thread per process buys nothing and, on a busy 2-core machine,
# makes every convolution many times slower. Subprocesses (CLI, torchrun, Ray workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The modules whose tests drive whole sweeps in subprocesses, longest first. Run first, they spread
# over the parallel workers (pytest -n) instead of leaving one worker busy after the rest are done.
LONG_FIRST = (
    "test_mlflow_server.py",
    "test_ray.py",
    "test_sweep.py",
    "test_ddp.py",
    "test_interruption.py",
    "test_tune.py",
    "test_bundles.py",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core, plus one. Much of the suite's wall time is spent waiting on
    subprocesses (sweeps, servers, torchrun) and polling; the extra worker fills those gaps
    (measured on 2 cores: 126 s with 3 workers against 142 s with 2, 161 s with 4)."""
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module keeps its order


@pytest.fixture(scope="module")
def tiny_bench_one_thread(request):
    """A tiny bench (``unlearnkit.testing.tiny_bench``) per test module, trained and used on one
    thread so its numbers do not depend on the core count; the module may set ``TINY_FORGET``
    (default: the instance bench)."""
    from unlearnkit.loops.threads import pinned_threads
    from unlearnkit.testing import tiny_bench

    with pinned_threads(1):
        yield tiny_bench(forget=getattr(request.module, "TINY_FORGET", "0.2"))


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite database with the schema made and no experiment: creating the schema runs
    MLflow's migrations (about a second), which every test with a store would otherwise repeat."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture
def store_dir(tmp_path, empty_mlflow_db):
    """``store_dir("a")``: a further local store folder under ``tmp_path`` (for tests that compare
    two stores), starting from the template database like the isolated store."""

    def make(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")
        return folder

    return make


@pytest.fixture(autouse=True)
def isolated_store(tmp_path_factory, monkeypatch, empty_mlflow_db):
    """Every test gets its own MLflow store and cache; a user's MLFLOW_TRACKING_URI is ignored.
    The store starts as an empty database (a copy of the template), as a first run would leave it."""
    base = tmp_path_factory.mktemp("store")
    (base / "store").mkdir()
    shutil.copyfile(empty_mlflow_db, base / "store" / "mlflow.db")
    monkeypatch.setenv("UNLEARNKIT_STORE", str(base / "store"))
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(base / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in (
        "UNLEARNKIT_LOAD_PLUGINS",
        "UNLEARNKIT_DISABLE_PLUGINS",
        "UNLEARNKIT_PLUGINS_DIR",
        "UNLEARNKIT_TRACE_HOOKS",
    ):
        monkeypatch.delenv(var, raising=False)
    yield base


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """The ``unlearnkit`` command in this process (no interpreter start-up, no re-import of torch and
    MLflow): ``cli("sweep", ...)`` -> (exit code, stdout, stderr), run from ``tmp_path``. Tests of
    signals and concurrency still start real processes; their re-runs need not."""
    from tests.invoke import invoke
    from unlearnkit.discovery.host import reset_host

    monkeypatch.chdir(tmp_path)
    reset_host()  # the command loads its own plugins (--plugins-dir), as a new process would

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code, out, err = invoke(list(argv), capsys)
        return (code if isinstance(code, int) else int(code is not None)), out, err

    yield run
    reset_host()  # and leaves none behind for the next test in this worker


@pytest.fixture
def host():
    """The process-wide plugin host with the tiny test dataset and model registered; removed afterwards."""
    from unlearnkit.discovery.host import get_host, reset_host
    from unlearnkit.testing import TinyPlugin

    reset_host()
    h = get_host()
    plugin = TinyPlugin()
    h.register(plugin)
    yield h
    h.unregister(plugin)
    reset_host()


@pytest.fixture(scope="session")
def bench():
    """A trained tiny original/retrained pair, shared by method and metric tests."""
    from unlearnkit.testing import tiny_bench

    return tiny_bench()


def shared_data_dir() -> Path | None:
    env = os.environ.get("UNLEARNKIT_SHARED_DATA")
    for cand in filter(None, [env, ROOT.parent / "shared" / "data"]):
        if Path(cand).is_dir():
            return Path(cand)
    return None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found: set UNLEARNKIT_SHARED_DATA or place ../shared/data beside the repo")
    return path


#: what torchrun writes into a rank's environment
TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def torchrun_env(monkeypatch):
    """Set the torchrun variables of one test (the others unset): ``torchrun_env(WORLD_SIZE="2", ...)``."""
    from unlearnkit.parallel.torchrun import TIMEOUT_ENV  # and the collective timeout unlearnkit reads

    for name in (*TORCHRUN_VARS, TIMEOUT_ENV):
        monkeypatch.delenv(name, raising=False)

    def setenv(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return setenv


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The folder every tempfile call uses (a bundle import's, among others): a test checks it is left empty."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
