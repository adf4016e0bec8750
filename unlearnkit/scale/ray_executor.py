"""Sweeps over a Ray cluster: the reference models first, then every method run as its own Ray task.

Ray schedules, places and retries; the MLflow store is the only shared state. Stage one is one
task per (cell, seed) calling :meth:`Runner.prepare_seed`, so the original and retrained models
are trained once cluster-wide (through the claims of :mod:`unlearnkit.claims`, like two local
sweeps sharing a store); stage two is one task per (cell, method, seed), each depending on its
stage-one task (a Ray object reference, so Ray starts it only once the models are in the store).
Tasks carry plain data (a :class:`Task`: the cell's RunRequest, the method name, the seed, the
tracking URI, the plugin folder) and validate on the worker with the worker's own plugin host,
once per worker and cell. What stage one loaded and measured (a :class:`Prepared`: the data, its
identity, the memorisation check) reaches its method tasks through Ray's object store, stored once
and read in place, instead of being loaded and measured again by every task.

A task whose worker dies (killed, out of memory, node lost) is retried by Ray ``max_retries``
times; a method's own exception is not retried. Either way the store holds one finished run per
config hash at most, and a dead worker's RUNNING claim is failed by the next claimant (PID on the
same host, heartbeat elsewhere), so running the same sweep again resumes.

Connecting takes seconds, and so does each worker's first import of torch, unlearnkit and MLflow:
a command calls :meth:`RayExecutor.start` as soon as its input is valid, and both happen while it opens
its store and plans its runs (:class:`Connection`, and :func:`warm_worker` on every idle worker).

Ray is imported only inside functions: ``unlearnkit --help`` and the local executor never load it.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unlearnkit.api.contracts import RawDataset
from unlearnkit.api.evaluation import OutputCache
from unlearnkit.api.progress import RecordingReporter, Reporter
from unlearnkit.engine.config import Plan, RunRequest, validate
from unlearnkit.engine.memorisation import score_source
from unlearnkit.engine.prepared import Benchmark, resolve_device
from unlearnkit.engine.runner import RunResult, Seed
from unlearnkit.errors import ConfigError, StoreError, UnlearnkitError, counted
from unlearnkit.store.mlflow_store import Store, resolve_tracking_uri

if TYPE_CHECKING:
    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.engine.runner import Runner
    from unlearnkit.scale.sweep import Sweep
    from unlearnkit.scale.sweep_recipes import Cell

MAX_RETRIES = 2  # Ray re-runs a task whose worker died this many times before it counts as failed
PLUGIN_ENV = ("UNLEARNKIT_LOAD_PLUGINS", "UNLEARNKIT_DISABLE_PLUGINS", "UNLEARNKIT_PLUGINS_DIR")
WORKER_MODELS = 8  # reference models a worker keeps in memory between its tasks (state dicts, CPU)
WORKER_PLANS = 8  # validated cells a worker keeps between its tasks
WARM_TASKS = 64  # at most this many workers import ahead of their first task (one per task slot)
RESOURCE_STEPS = 10_000  # Ray's units per CPU or GPU (ray._raylet.RESOURCE_UNIT_SCALING)
NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"  # set: Ray leaves a task's CUDA_VISIBLE_DEVICES alone


# ------------------------------------------------------------------------- the shared store
def check_shared_store(store: Store, nodes: list[dict[str, Any]]) -> None:
    """Refuse a store on one machine's disk when the cluster has several machines (``ray.nodes()``)."""
    alive = [n for n in nodes if n.get("Alive", n.get("alive", False))]
    if len(alive) <= 1 or not (store.local_db is not None or store.uri.startswith("file:")):
        return
    kind = "sqlite:" if store.local_db is not None else "file:"
    raise StoreError(
        f"The {kind} store {store.shown_uri} lives on this machine's disk, but the Ray cluster has {len(alive)} nodes: "
        "start an MLflow server every node can reach (mlflow server --backend-store-uri "
        "postgresql://USER:PASSWORD@DBHOST/mlflow --artifacts-destination s3://BUCKET/unlearnkit --host 0.0.0.0 "
        "--port 5000) and pass --tracking-uri http://SERVER:5000 (see docs/cluster.md)."
    )


# ------------------------------------------------------------------------------ what moves
@dataclass(frozen=True)
class Task:
    """What a Ray task receives: plain data only (nothing of the driver's plugins or store)."""

    request: RunRequest
    label: str  # the cell, for messages
    grid_point: str
    sweep: str
    seed: int
    tracking_uri: str
    experiment: str
    plugins_dir: str | None = None
    plugin_env: tuple[tuple[str, str], ...] = ()  # the driver's UNLEARNKIT_*PLUGINS* switches
    method: str | None = None  # None: the reference models of (cell, seed)
    plugin_names: tuple[tuple[str, str], ...] = ()  # (absolute folder, the driver's name for it): see plugin_names

    @property
    def title(self) -> str:
        what = f"{self.method} (seed {self.seed})" if self.method else f"reference models (seed {self.seed})"
        return f"{what} of {self.label}"


@dataclass
class TaskOutcome:
    """What a task sends back: its result, what it reported, and where it ran."""

    result: RunResult | None = None
    events: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    host: str = ""
    node_id: str = ""
    pid: int = 0
    gpu_ids: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0


def device_kind(device: torch.device) -> str:
    """What two tasks must share to compute the same logits: the device type and, on a GPU, its model."""
    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


@dataclass
class Prepared:
    """What stage one of a (cell, seed) built that its method tasks would otherwise build again: the
    loaded data with its identity (the data fingerprint) and the memorisation check, with the
    original's outputs that check forwarded (every method's evaluation reuses them). Stage one's
    second return value: Ray keeps it once in the object store and a task on the same node reads its
    arrays in place. Core types only: a class from ``--plugins-dir`` cannot be pickled (the Plan
    holds such classes, so each worker validates the plain request itself)."""

    raw: RawDataset | None  # None: images decoded on demand (a plugin's ImageArray): each task loads them
    model_identity: dict[str, Any]
    memorisation_gap: float
    weak_original: bool
    # what the check forwarded (the original on forget, unseen and retain, the retrained on retain), on the CPU
    outputs: OutputCache
    device: str  # where they were computed (:func:`device_kind`)
    weak_reason: str = ""  # the reference-quality rules the original failed (Seed.weak_reason)

    @classmethod
    def of(cls, bench: Benchmark, state: Seed) -> Prepared:
        raw = bench.raw
        arrays = all(x is None or isinstance(x, np.ndarray) for x in (raw.x_train, raw.x_test, raw.x_unseen))
        outputs = OutputCache({k: v.cpu() for k, v in state.shared.logits.items()}, dict(state.shared.images))
        return cls(
            raw if arrays else None,
            bench.model_identity,
            state.memorisation_gap,
            state.weak_original,
            outputs,
            device_kind(bench.device),
            state.weak_reason,
        )

    def attach(self, bench: Benchmark) -> None:
        """Give a fresh benchmark of the same cell what stage one loaded (its cached properties)."""
        if self.raw is not None:
            bench.raw = self.raw
        bench.model_identity = self.model_identity

    def memorisation(self, device: torch.device) -> tuple[float, bool] | None:
        """Stage one's check, where this task would compute the same numbers (else None: check again)."""
        return (self.memorisation_gap, self.weak_original) if device_kind(device) == self.device else None

    def reuse_outputs(self, state: Seed, device: torch.device) -> None:
        """The original's outputs the check forwarded, as the check would have left them on this task."""
        state.shared = OutputCache({k: v.to(device) for k, v in self.outputs.logits.items()}, dict(self.outputs.images))


def portable(request: RunRequest) -> RunRequest:
    """A copy with its file paths absolute: a worker's working directory is not the driver's. A training
    recipe file too (a built-in's name stays): its identity is its contents and its file's stem, not its path."""
    from unlearnkit.loops.training import builtin_recipes

    paths = ("data_dir", "weights", "original", "retrained")
    absolute: dict[str, Any] = {n: Path(v).resolve() for n in paths if (v := getattr(request, n)) is not None}
    recipe = request.train_recipe
    if recipe and recipe not in builtin_recipes() and Path(recipe).suffix == ".toml":
        absolute["train_recipe"] = str(Path(recipe).resolve())
    return replace(copy.deepcopy(request), **absolute)  # a RunRequest is frozen


# ------------------------------------------------------------------------- on the worker
class BoundedMemo(dict[Any, Any]):
    """A :data:`ModelMemo` that forgets its oldest models beyond ``limit`` (a worker lives long)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.limit:
            del self[next(iter(self))]


_hosts: dict[tuple[Any, ...], PluginHost] = {}
_hosts_reported: set[tuple[Any, ...]] = set()  # hosts whose failed plugins a task has warned of
_stores: dict[tuple[str, str], Store] = {}
_memo = BoundedMemo(WORKER_MODELS)
_plans = BoundedMemo(WORKER_PLANS)


def plugin_switches() -> tuple[tuple[str, str], ...]:
    """The driver's plugin switches (:data:`PLUGIN_ENV`, empty when unset), for its workers to set alike;
    a relative plugin folder made absolute, as a worker's working directory is not the driver's."""
    switches = {name: os.environ.get(name, "") for name in PLUGIN_ENV}
    if switches["UNLEARNKIT_PLUGINS_DIR"]:
        switches["UNLEARNKIT_PLUGINS_DIR"] = str(Path(switches["UNLEARNKIT_PLUGINS_DIR"]).resolve())
    return tuple(switches.items())


def plugin_names(plugins_dir: Path | None) -> tuple[tuple[str, str], ...]:
    """(absolute folder, the driver's name for it) of ``--plugins-dir`` and ``UNLEARNKIT_PLUGINS_DIR``, where
    the two differ. A folder's plugins are registered as the package ``local:FOLDER``, which every run
    identity holds, with FOLDER as the driver spelt it: a worker loads the absolute folder and records it
    under the driver's name, so a run has one identity under either executor."""
    env = os.environ.get("UNLEARNKIT_PLUGINS_DIR")
    folders = [f for f in (plugins_dir, Path(env) if env else None) if f is not None]
    return tuple((str(f.resolve()), str(f)) for f in folders if str(f.resolve()) != str(f))


def worker_host(
    plugins_dir: str | None, plugin_env: tuple[tuple[str, str], ...], names: tuple[tuple[str, str], ...] = ()
) -> tuple[Any, ...]:
    """The key of this worker's plugin host for the driver's plugin folder, switches and folder names
    (:func:`plugin_names`), loaded once."""
    from unlearnkit.discovery.host import PluginHost

    for name, value in plugin_env:
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    key = (plugins_dir, plugin_env, names) if names else (plugins_dir, plugin_env)
    if key not in _hosts:
        _hosts[key] = PluginHost(Path(plugins_dir) if plugins_dir else None, folder_names=dict(names))
    return key


def warm_worker(
    plugins_dir: str | None,
    plugin_env: tuple[tuple[str, str], ...],
    tracking_uri: str,
    names: tuple[tuple[str, str], ...] = (),
) -> int:
    """What a worker's first task would do before its own work, done while the driver opens its store:
    import torch, unlearnkit (this module) and MLflow's client, load the plugins, and make one optimiser
    (torch imports its compiler stack, a second or more, at the first). Never raises: the first task
    meets whatever failed here again, and says it."""
    try:
        worker_host(plugins_dir, plugin_env, names)
        Store(tracking_uri).import_client()
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    except Exception:  # noqa: BLE001, S110 - a head start only; the task reports the failure
        pass
    return os.getpid()


def worker_runner(task: Task, reporter: Reporter, prepared: Prepared | None = None) -> Runner:
    """The task's Runner, built on the worker from plain data (plugins, store, memo and plans per
    process); with stage one's ``prepared``, on its data rather than the data loaded again."""
    from unlearnkit.engine.runner import Runner

    key = worker_host(task.plugins_dir, task.plugin_env, task.plugin_names)
    if key not in _hosts_reported:
        _hosts_reported.add(key)
        for message in _hosts[key].report.failed:
            reporter.warn(f"on {socket.gethostname()}: {message}")
    plan_key = (key, repr(task.request))
    if plan_key not in _plans:  # a Plan is immutable: every task of the cell on this worker shares it
        _plans[plan_key] = validate(copy.deepcopy(task.request), _hosts[key].registries)
    plan: Plan = _plans[plan_key]
    store_key = (task.tracking_uri, task.experiment)
    if store_key not in _stores:
        _stores[store_key] = Store(task.tracking_uri, task.experiment)
    bench = None
    if prepared is not None:
        bench = Benchmark(plan, reporter, resolve_device(plan.request.device), scores=score_source)
        prepared.attach(bench)
    return Runner(
        plan, _stores[store_key], reporter, grid_point=task.grid_point, sweep=task.sweep, memo=_memo, bench=bench
    )


def _outcome(
    reporter: RecordingReporter, started: float, result: RunResult | None = None, skip: int = 0
) -> TaskOutcome:
    import ray

    ctx = ray.get_runtime_context()
    return TaskOutcome(
        result=result,
        events=reporter.events[skip:],
        warnings=reporter.warnings,
        host=socket.gethostname(),
        node_id=ctx.get_node_id(),
        pid=os.getpid(),
        gpu_ids=[str(g) for g in ray.get_gpu_ids()],
        resources=dict(ctx.get_assigned_resources()),
        started=started,
        ended=time.time(),
    )


def prepare_references(task: Task) -> tuple[TaskOutcome, Prepared]:
    """Stage one: the original and retrained models of (cell, seed), trained or found in the store;
    and what its method tasks reuse (two return values: the driver reads only the outcome)."""
    started = time.time()
    reporter = RecordingReporter()
    runner = worker_runner(task, reporter)
    runner.check()
    runner.pack_references([task.seed])  # --models-per-device: the seed's two models trained together
    state = runner.prepare_seed(task.seed)
    return _outcome(reporter, started), Prepared.of(runner.bench, state)


def run_one_method(task: Task, prepared: Prepared | None = None) -> TaskOutcome:
    """Stage two: one method on one seed. ``prepared`` is stage one's second return value: as a Ray
    object reference it makes Ray start this task only after the models are in the store."""
    started = time.time()
    reporter = RecordingReporter()
    runner = worker_runner(task, reporter, prepared)
    entry = next((e for e in runner.plan.methods if e.name == task.method), None)
    if entry is None:
        raise ConfigError(f"Method '{task.method}' is not in the plan of {task.label} on {socket.gethostname()}.")
    device = runner.bench.device
    known = prepared.memorisation(device) if prepared is not None else None
    state = runner.prepare_seed(task.seed, known)  # models from the worker's memo or the store: no training
    if prepared is not None and known is not None:
        prepared.reuse_outputs(state, device)
        state.weak_reason = prepared.weak_reason  # with the (gap, weak) it judged
    quiet = len(reporter.events)  # "reusing the original model" once per task is noise
    result = runner.run_method(entry, state)
    return _outcome(reporter, started, result, skip=quiet)


# ------------------------------------------------------------------------------ the driver
#: Read by Ray once, at import: whether a process's core worker installs Abseil's failure signal handler,
#: which takes SIGTERM too (printing a stack trace) and makes a driver that then exits abort (exit 134).
NO_FAILURE_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def import_ray(local: bool = False) -> Any:
    """Ray, or a one-line error saying how to install it. ``local``: this process will start its own
    instance, which then keeps to the loopback interface (read by Ray at import) and sends no usage stats.

    The driver imports Ray without its failure signal handler, so that SIGTERM reaches the CLI's own
    (the unfinished run is marked, exit 130); a value the user set is kept. The variable is set for
    the import alone: the Ray processes started later inherit the environment without it and keep
    Ray's handler (a crashing worker still prints its C++ stack)."""
    fresh = "ray" not in sys.modules
    if local and fresh:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    set_here = fresh and NO_FAILURE_HANDLER not in os.environ
    if set_here:
        os.environ[NO_FAILURE_HANDLER] = "1"
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'unlearnkit[ray]' (on every node).") from None
    finally:
        if set_here:
            os.environ.pop(NO_FAILURE_HANDLER, None)
    return ray


def failure_message(err: BaseException) -> str:
    """One line for a task that did not return: the method's own error, or why its worker died."""
    import ray.exceptions as rex

    if isinstance(err, rex.RayTaskError):
        cause = err.cause
        if isinstance(cause, UnlearnkitError):
            return str(cause)
        if cause is not None:
            return f"{type(cause).__name__}: {cause}"
    if isinstance(err, rex.TaskCancelledError):
        return "cancelled"
    if isinstance(err, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError, rex.LocalRayletDiedError)):
        return f"its Ray worker died ({type(err).__name__}) and Ray's retries ran out"
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def gcs_unreachable(address: str, timeout: float = 5.0) -> str:
    """Why a ``HOST:PORT`` cluster address does not answer (empty when it does, or is ``auto``/``local``/``ray://``)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return ""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return ""
    except OSError as err:
        return err.strerror or type(err).__name__


def exit_on_sigterm() -> None:
    """What ``ray.init`` does in the main thread, done there for the thread that calls it: SIGTERM
    exits Python (its atexit hooks shut Ray down) instead of killing the driver outright. A handler
    someone else set is kept."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))


class _NotMainThreadNotice(logging.Filter):
    """Drops Ray's notice that ``ray.init`` outside the main thread sets no SIGTERM handler: we set it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


class Connection:
    """Ray connected, or a local instance started, by a thread of its own that lives until :meth:`close`.

    ``ray.init`` takes seconds (a local instance starts its GCS and raylet), and so do each worker's
    first imports: begun once the command's input is valid, both happen while it opens its store and
    plans its runs. The thread lives on because Linux ends the processes a thread started when that thread
    ends (Ray ties its head to its parent with ``PR_SET_PDEATHSIG``); it also shuts down what it started.
    """

    def __init__(self, executor: RayExecutor, tracking_uri: str | None = None) -> None:
        self.executor = executor
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.ray: Any = import_ray(local=executor.target() == "local")  # here: a missing Ray is one line now
        self.started_here = False
        self.error: BaseException | None = None
        self.warming: list[Any] = []  # the warm-up tasks (never awaited: the first tasks queue behind them)
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        if self.ray.is_initialized():  # the caller's Ray: used as it is, never shut down here
            self._ready.set()
            return
        exit_on_sigterm()
        notices = logging.getLogger("ray._private.worker")
        if not any(isinstance(f, _NotMainThreadNotice) for f in notices.filters):
            notices.addFilter(_NotMainThreadNotice())
        self._thread = threading.Thread(target=self._own, name="unlearnkit-ray", daemon=True)
        self._thread.start()

    def _own(self) -> None:
        try:
            self.started_here = self.executor.connect(self.ray)
        except BaseException as err:  # noqa: BLE001 - raised in the driver's thread by wait()
            self.error = err
            self._ready.set()
            return
        try:
            if self.started_here:  # not a Ray someone initialised meanwhile, whose workers may be busy
                self.warming = self.executor.warm(self.ray, self.tracking_uri)
        except Exception:  # noqa: BLE001, S110 - a head start only: the tasks themselves say what fails
            pass
        finally:
            self._ready.set()
        self._closing.wait()
        if self.started_here:
            self.ray.shutdown()

    def wait(self) -> Any:
        """Ray, once connected; what stopped it from connecting is raised here."""
        self._ready.wait()
        if self.error is not None:
            raise self.error
        return self.ray

    def close(self) -> None:
        """Shut down what this connection started (after it has started), and wait for that."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()


def check_share(flag: str, share: float, unit: str, otherwise: str) -> None:
    """Refuse a share of a CPU or GPU finer than Ray counts (Ray's own test: nonzero, yet under one of its
    units), before Ray starts: Ray itself refuses it only in the tasks' options, with a traceback."""
    if share and int(share * RESOURCE_STEPS) == 0:
        step = f"{1 / RESOURCE_STEPS:g}"
        raise ConfigError(
            f"Bad {flag} {share}: Ray counts {unit} in steps of {step}; expected at least {step}, {otherwise}."
        )


@dataclass
class Pending:
    task: Task
    after: Any = None  # the stage-one ObjectRef a method task depends on (None: it is stage one)


class RayExecutor:
    """Runs a sweep's grid as Ray tasks; connects to ``address`` (or ``RAY_ADDRESS``), or starts a
    local Ray instance, unless Ray is already initialised in this process (then uses that one). One
    connection serves every sweep the executor runs (a table's several) until :meth:`close`, or the
    end of the process."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        gpus_per_run: float | None = None,
        cpus_per_run: float = 1.0,
        plugins_dir: Path | None = None,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        if gpus_per_run is not None and not (
            math.isfinite(gpus_per_run) and gpus_per_run >= 0 and (gpus_per_run <= 1 or gpus_per_run.is_integer())
        ):  # NaN passed every comparison: Ray was started before the run's request was refused
            raise ConfigError(
                f"Bad --gpus-per-run {gpus_per_run}: expected 0, a fraction of one GPU (e.g. 0.5) or whole GPUs."
            )
        if not (math.isfinite(cpus_per_run) and cpus_per_run > 0):
            raise ConfigError(f"Bad --cpus-per-run {cpus_per_run}: expected a finite number more than 0, e.g. 1 or 4.")
        check_share("--cpus-per-run", cpus_per_run, "CPUs", "e.g. 1 or 4")
        check_share("--gpus-per-run", gpus_per_run or 0.0, "GPUs", "or 0")
        self.address = address
        self.gpus_per_run = gpus_per_run
        self.cpus_per_run = cpus_per_run
        self.plugins_given = Path(plugins_dir) if plugins_dir is not None else None  # as named: see plugin_names
        self.plugins_dir = self.plugins_given.resolve() if self.plugins_given is not None else None
        self.max_retries = max_retries
        self.placements: list[tuple[Task, TaskOutcome]] = []  # where every returned task ran (tests, benchmarks)
        self.connection: Connection | None = None

    # ---------------------------------------------------------------------------- cluster
    def target(self) -> str:
        """``--ray-address``, else ``RAY_ADDRESS``, else ``local`` (a new Ray instance on this machine)."""
        return self.address or os.environ.get("RAY_ADDRESS") or "local"

    def connect(self, ray: Any) -> bool:
        """Connect (or start a local instance); True when this call did, so it also shuts down."""
        if ray.is_initialized():
            return False
        address = self.target()
        unreachable = gcs_unreachable(address)
        if unreachable:  # ray.init would retry for minutes
            raise ConfigError(
                f"Cannot reach the Ray cluster at {address} ({unreachable}). Start it with `ray start --head`, or fix "
                "--ray-address/RAY_ADDRESS (auto: the cluster started on this machine)."
            )
        kwargs: dict[str, Any] = {"address": address, "log_to_driver": False, "logging_level": logging.WARNING}
        if address == "local":
            kwargs["include_dashboard"] = False
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"Cannot connect to the Ray cluster at {address} ({reason}). Start it with `ray start --head`, or fix "
                "--ray-address/RAY_ADDRESS (auto: the cluster started on this machine); a cluster with token "
                "authentication also needs RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)."
            ) from None
        return True

    def task_options(self, gpus: float) -> dict[str, Any]:
        """The resources and retry policy of every task (both stages)."""
        return {
            "num_cpus": self.cpus_per_run,
            "num_gpus": gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,  # only system failures (a dead worker or node) are retried
        }

    def gpus_for(self, cell: Cell, cluster_gpus: float) -> float:
        """``--gpus-per-run`` as given; by default one GPU per task on a cluster with GPUs, unless the
        cell runs on the CPU."""
        if self.gpus_per_run is not None:
            return self.gpus_per_run
        return 1.0 if cluster_gpus > 0 and cell.request.device != "cpu" else 0.0

    def check_fits(self, nodes: list[dict[str, Any]], gpus: float) -> None:
        """A task that fits on no node would wait forever: say so now."""
        alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", False))]
        if not any(r.get("CPU", 0) >= self.cpus_per_run and r.get("GPU", 0) >= gpus for r in alive):
            have = "; ".join(f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for r in alive) or "none"
            raise ConfigError(
                f"No Ray node has {counted(self.cpus_per_run, 'CPU')} and {counted(gpus, 'GPU')} for one run (the nodes have: {have}): "
                "lower --cpus-per-run/--gpus-per-run or add a node."
            )

    def check_device(self, cell: Cell, gpus: float) -> None:
        """A cell on a CUDA device its tasks cannot see would fail every run: say so now. Ray shows a task
        only the GPUs it was given, numbered from cuda:0, and none to a task given 0 (unless told not to)."""
        try:
            device = torch.device(cell.request.device)
        except (RuntimeError, ValueError):
            return  # auto, or a name the task's own check refuses in its own words
        visible = max(1, int(gpus)) if gpus > 0 else 0
        if device.type != "cuda" or (device.index or 0) < visible or os.environ.get(NOSET_CUDA):
            return
        if visible == 0:
            raise ConfigError(
                f"Cell {cell.label} runs on device '{cell.request.device}', but its Ray tasks get no GPU (the "
                "cluster has none, or --gpus-per-run 0), so Ray hides every GPU from them: use --device cpu or "
                "auto, or --gpus-per-run 1 on a cluster with GPUs."
            )
        raise ConfigError(
            f"Cell {cell.label} runs on device '{cell.request.device}', but a Ray task sees only the "
            f"{counted(visible, 'GPU')} it is given, from cuda:0: use --device cuda (or auto)."
        )

    def warm(self, ray: Any, tracking_uri: str) -> list[Any]:
        """One :func:`warm_worker` task per task slot (at most :data:`WARM_TASKS`), sized like a run so
        that they land where runs will; their results are never read."""
        slots = int(ray.cluster_resources().get("CPU", 0) // self.cpus_per_run)
        plugin_env, names = plugin_switches(), plugin_names(self.plugins_given)
        plugins = str(self.plugins_dir) if self.plugins_dir else None
        warm = ray.remote(warm_worker).options(name="warm-up", num_cpus=self.cpus_per_run, max_retries=0)
        args = (plugins, plugin_env, tracking_uri, *([names] if names else []))
        return [warm.remote(*args) for _ in range(min(max(slots, 1), WARM_TASKS))]

    # ---------------------------------------------------------------------------- lifetime
    def start(self, tracking_uri: str | None = None) -> Connection:
        """Begin connecting (or starting a local instance) in the background, if not yet begun: a command
        calls it once its input is valid, and :meth:`close` when it ends; :meth:`execute` calls it too. With the store's
        ``tracking_uri`` the warm workers also import its client."""
        if self.connection is None:
            self.connection = Connection(self, tracking_uri)
        return self.connection

    def close(self) -> None:
        """Shut down the Ray instance this executor started (disconnect from a cluster); Ray is left
        running when it was initialised before. The executor can start again."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- run
    def execute(self, sweep: Sweep, reporter: Reporter, on_result: Callable[[RunResult], None]) -> None:
        """Every run of ``sweep`` as Ray tasks; the connection stays open for the command's next sweep."""
        ray = self.start(sweep.store.uri).wait()
        nodes = ray.nodes()
        check_shared_store(sweep.store, nodes)
        resources = ray.cluster_resources()
        alive = sum(1 for n in nodes if n.get("Alive", n.get("alive", False)))
        reporter.event(
            f"Ray cluster: {alive} node{'s' if alive != 1 else ''}, {resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs; {counted(self.cpus_per_run, 'CPU')} per run"
        )
        pending = self.submit(ray, sweep, reporter, nodes, float(resources.get("GPU", 0)))
        self.collect(ray, pending, reporter, on_result)

    def submit(
        self, ray: Any, sweep: Sweep, reporter: Reporter, nodes: list[dict[str, Any]], cluster_gpus: float
    ) -> dict[Any, Pending]:
        """Every task, stage two depending on stage one through its object reference."""
        references = ray.remote(prepare_references)
        method = ray.remote(run_one_method)
        plugin_env, names = plugin_switches(), plugin_names(self.plugins_given)
        gpus_of = [self.gpus_for(cell, cluster_gpus) for cell, _ in sweep.plans]
        for gpus in sorted(set(gpus_of)):  # all checked before any task starts
            self.check_fits(nodes, gpus)
        for (cell, _), gpus in zip(sweep.plans, gpus_of):
            self.check_device(cell, gpus)
        pending: dict[Any, Pending] = {}
        for (cell, plan), gpus in zip(sweep.plans, gpus_of):
            options = self.task_options(gpus)
            reporter.event(
                f"Cell {cell.label}: {counted(len(plan.methods), 'method')} × {counted(len(plan.seeds), 'seed')} ({gpus:g} GPUs per run)"
            )
            request = portable(plan.request)
            for seed in plan.seeds:
                base = Task(
                    request,
                    cell.label,
                    cell.grid_point,
                    sweep.name,
                    seed,
                    sweep.store.uri,
                    sweep.store.experiment_name,
                    str(self.plugins_dir) if self.plugins_dir else None,
                    plugin_env,
                    plugin_names=names,
                )
                stage_one = references.options(name=f"references {cell.label} s{seed}", num_returns=2, **options)
                ref, prepared = stage_one.remote(base)
                pending[ref] = Pending(base)
                for entry in plan.methods:  # each gets `prepared` by reference: stored once, read in place
                    task = replace(base, method=entry.name)
                    run = method.options(name=f"{entry.name} {cell.label} s{seed}", **options).remote(task, prepared)
                    pending[run] = Pending(task, ref)
        return pending

    def collect(
        self, ray: Any, pending: dict[Any, Pending], reporter: Reporter, on_result: Callable[[RunResult], None]
    ) -> None:
        """Results as they arrive; a task that raised or whose worker died counts as a failed run."""
        import ray.exceptions as rex

        stage_one = sum(1 for p in pending.values() if p.after is None)
        advance_references = reporter.counter("reference models", stage_one)
        failed_references: set[Any] = set()
        said: set[str] = set()

        def say(messages: list[str], label: str, warn: bool) -> None:
            for message in messages:
                text = f"[{label}] {message}"
                if warn and text not in said:
                    said.add(text)
                    reporter.warn(text)
                elif not warn:
                    reporter.event(text)

        # Ctrl-C or a killed driver: no ray.cancel (it races with completing tasks in Ray's core); the
        # tasks end with this Ray job, and the next claimant fails their claims (dead PID or heartbeat).
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if done:  # drain whatever else is ready too
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in done:
                item = pending.pop(ref)
                task = item.task
                try:
                    outcome: TaskOutcome = ray.get(ref)
                except rex.RayError as err:
                    message = failure_message(err)
                    if item.after is None:
                        failed_references.add(ref)
                        reporter.warn(f"{task.title} failed: {message.removesuffix('.')}; its runs count as failed.")
                        advance_references()
                    else:
                        if item.after not in failed_references:
                            reporter.warn(f"{task.title} failed: {message}")
                        on_result(RunResult(task.method or "", task.seed, "failed", failure=message))
                    continue
                self.placements.append((task, outcome))
                say(outcome.warnings, task.label, warn=True)
                say(outcome.events, task.label, warn=False)
                if outcome.result is None:
                    advance_references()
                else:
                    on_result(outcome.result)


__all__ = [
    "MAX_RETRIES",
    "Connection",
    "Prepared",
    "RayExecutor",
    "Task",
    "TaskOutcome",
    "check_shared_store",
    "prepare_references",
    "run_one_method",
]
