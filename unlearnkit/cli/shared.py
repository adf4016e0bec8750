"""What several commands declare and do alike, written once so their flags, help and messages cannot drift.

The options are typed ``Annotated`` aliases (``tracking_uri: TrackingUri = None``): each command keeps
its own parameter name, and so its flag, and its own default. Nothing here is a command: the module is
imported by the commands, and ``unlearnkit --help`` pays only for typer.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from unlearnkit.cli import console as con
from unlearnkit.errors import ConfigError, UnknownNameError, did_you_mean, shorten, translated

if TYPE_CHECKING:
    from rich.text import Text

    from unlearnkit.discovery.host import PluginHost
    from unlearnkit.scale.ray_executor import RayExecutor
    from unlearnkit.store.mlflow_store import Store


# ---------------------------------------------------------------------------------- options
def home(value: Path | None) -> Path | None:
    """A path option with a leading ``~`` made the home folder, as the shell does for a bare word: ``--plot=~/a.png``
    reaches the command as typed, and was a folder named ``~`` in the working one (``--data-dir=~/d`` too, on a Ray
    worker; the datasets expand it only where they read it)."""
    return None if value is None else value.expanduser()


def home_text(value: str | None) -> str | None:
    """:func:`home` for an option that takes a name or a path (``--train-recipe fast|FILE.toml``)."""
    return None if value is None else os.path.expanduser(value)


TrackingUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")]
Experiment = Annotated[str, typer.Option(help="MLflow experiment name.")]
PluginsDir = Annotated[
    Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.", callback=home)
]
#: The options by which a recipe command (sweep, tune, audit, reproduce) overrides its recipe.
RecipeSeeds = Annotated[str | None, typer.Option("--seeds", help="Override the recipe's seeds.")]
RecipeEpochs = Annotated[int | None, typer.Option(help="Override the training epochs.")]
RecipeSubset = Annotated[str | None, typer.Option(help="Override the per-class subset.")]
RecipeDataDir = Annotated[Path | None, typer.Option(help="Folder holding the datasets' files.", callback=home)]
RecipeDevice = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Estimate = Annotated[
    bool,
    typer.Option("--estimate", help="Print the runs to do, those in the store and the time they need; then stop."),
]
FORMATS = ("table", "markdown", "csv", "json")
Format = Annotated[str, typer.Option("--format", "-f", help="table, markdown, csv or json.")]
EXECUTORS = ("local", "ray")
#: Where a recipe command's runs happen (sweep, reproduce): the same four flags, help and checks for both.
Executor = Annotated[
    str, typer.Option(help="Where runs happen: local (here, one after another) or ray (a Ray cluster).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(help="Ray cluster to use (default: RAY_ADDRESS, else a new local instance; auto: this machine's)."),
]
GpusPerRun = Annotated[
    float | None,
    typer.Option(help="GPUs per Ray task; 0.5 packs two runs on a GPU (default: 1 if the cluster has GPUs)."),
]
CpusPerRun = Annotated[float | None, typer.Option(help="CPUs per Ray task (default 1).")]


def check_format(format: str) -> None:
    """Refuse an unknown ``--format`` before anything is loaded or computed."""
    if format not in FORMATS:
        raise ConfigError(
            f"Unknown format '{shorten(format)}'.{did_you_mean(format, FORMATS)} Valid formats: {', '.join(FORMATS)}."
        )


def check_executor(
    executor: str,
    *,
    ray_address: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float | None = None,
) -> None:
    """Refuse an unknown ``--executor``, and Ray's flags given without ``--executor ray``, before anything
    is loaded or computed (a flag that would be ignored is a mistake worth one line)."""
    if executor not in EXECUTORS:
        raise UnknownNameError("executor", executor, EXECUTORS)
    ray_flags = {"--ray-address": ray_address, "--gpus-per-run": gpus_per_run, "--cpus-per-run": cpus_per_run}
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if executor == "local" and given:
        raise ConfigError(f"{', '.join(given)} only apply to --executor ray.")


def ray_executor(
    executor: str,
    ray_address: str | None,
    plugins_dir: Path | None,
    *,
    gpus_per_run: float | None = None,
    cpus_per_run: float | None = None,
) -> RayExecutor | None:
    """The Ray executor ``--executor ray`` asks for (one CPU per run unless told), else None: runs stay here."""
    check_executor(executor, ray_address=ray_address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    if executor != "ray":
        return None
    from unlearnkit.scale.ray_executor import RayExecutor

    return RayExecutor(
        ray_address,
        gpus_per_run=gpus_per_run,
        cpus_per_run=1.0 if cpus_per_run is None else cpus_per_run,
        plugins_dir=plugins_dir,
    )


@contextlib.contextmanager
def started(executor: RayExecutor | None, tracking_uri: str | None) -> Iterator[None]:
    """Ray connected (or a local instance started) in the background while the command opens its store
    and plans its runs, and shut down when the command ends; nothing without ``--executor ray``. Entered
    once the input is valid, so a bad recipe is refused without waiting for Ray to start and stop."""
    if executor is None:
        yield
        return
    executor.start(tracking_uri)
    with executor:  # closes it however the command ends
        yield


# ------------------------------------------------------------------------ plugins and store
def plugin_host(plugins_dir: Path | None = None) -> PluginHost:
    """The loaded plugins; one that failed to load is a warning, not an error: the others still serve."""
    from unlearnkit.discovery.host import get_host

    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    return host


def one_process_only(command: str) -> None:
    """Refuse a command that is not data-parallel when torchrun started it, in one line said once (by
    rank 0): a sweep ran its whole grid on every rank, each printing the board and logging its own
    leaderboard run, and a tuning study failed on both ranks. A single process pays no torch import."""
    if os.environ.get("WORLD_SIZE", "1").strip() in ("", "1"):
        return
    from unlearnkit.parallel import torchrun as ddp

    if not ddp.from_env().main:
        con.out.quiet = con.err.quiet = True
    ddp.refuse_under_torchrun(command)


def host_and_store(plugins_dir: Path | None, tracking_uri: str | None, experiment: str) -> tuple[PluginHost, Store]:
    """What a command that computes starts from: the plugins (failures warned), then the result store."""
    from unlearnkit.store.mlflow_store import Store

    host = plugin_host(plugins_dir)
    return host, Store(tracking_uri, experiment)


def open_to_read(store: Store) -> bool:
    """A read-only command's store opened without writing to it: a server asked if it answers, and the
    experiment looked up, not created, so a misspelt ``--experiment`` is one line naming the store's
    experiments instead of a new empty experiment read as "no runs". False: the default experiment is
    not made yet (the first run makes it), a store with no runs to read."""
    from unlearnkit.store.health import experiment_problem
    from unlearnkit.store.mlflow_store import DEFAULT_EXPERIMENT

    if store.remote:
        store.check()
    missing = experiment_problem(store)
    if missing and store.experiment_name != DEFAULT_EXPERIMENT:
        raise ConfigError(missing)
    return not missing


# ------------------------------------------------------------------------------ torch builds
# What torchvision raises on import when its compiled operators were built for another torch (a CPU
# torch with a CUDA torchvision, or another release): the first import happens deep in a plugin
# (a dataset download, timm), so the commands translate it rather than every plugin.
TORCHVISION_BUILD_ERRORS = re.compile(r"operator torchvision::\w+ does not exist|Couldn't load custom C\+\+ ops")


def torch_build_error(err: BaseException) -> ConfigError | None:
    """The one-line error naming both builds when ``err`` is torchvision refusing this torch; else None."""
    if not isinstance(err, RuntimeError) or not TORCHVISION_BUILD_ERRORS.search(str(err)):
        return None
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        vision = version("torchvision")
    except PackageNotFoundError:
        vision = "?"
    index = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
    return ConfigError(
        f"torch {torch.__version__} and torchvision {vision} are different builds (torchvision: "
        f"{shorten_first_line(err)}): install both from the same index, e.g. pip install --force-reinstall "
        f"torch=={torch.__version__.split('+')[0]} torchvision --index-url https://download.pytorch.org/whl/{index}."
    )


def shorten_first_line(err: BaseException) -> str:
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return line.rstrip(".")


def torch_builds_checked() -> contextlib.AbstractContextManager[None]:
    """Turn a mismatched torch/torchvision pair, met wherever torchvision is first imported, into one line."""
    return translated(RuntimeError, torch_build_error)


# ---------------------------------------------------------------------------------- output
def print_estimate(lines: Callable[[], list[str]]) -> None:
    """``--estimate``: work the report out (it loads data, so torchvision may be met first), then print it."""
    with torch_builds_checked():
        report = lines()
    for line in report:
        con.out.print(line, highlight=False, soft_wrap=True)


def status_cell(status: str) -> Text:
    """A result row's status, coloured: done, in store (reused), or the failure's own word in red."""
    label, style = {"finished": ("done", "green"), "skipped": ("in store", "cyan")}.get(status, (status, "red"))
    return con.styled(label, style)
