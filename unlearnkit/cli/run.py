"""``unlearnkit run``: one benchmark, any number of methods and seeds."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import (
    Experiment,
    PluginsDir,
    TrackingUri,
    home,
    home_text,
    plugin_host,
    status_cell,
    torch_builds_checked,
)
from unlearnkit.errors import ConfigError


def strict_json(value: Any) -> Any:
    """``value`` with every NaN and infinity made null: JSON has neither, and Python's ``NaN`` (a brought
    model's unknown ``time_s``, an ``rte`` without one) stops every strict reader (jq, JavaScript)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@app.command()
def run(
    method: Annotated[
        list[str],
        typer.Option(
            "--method",
            "-m",
            help="Method(s): a name, a comma list, 'all', or 'all,-NAME' to leave some out (`unlearnkit list methods`).",
        ),
    ] = [],
    model: Annotated[str | None, typer.Option(help="Model name or timm/<name> (`unlearnkit list models`).")] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset (`unlearnkit list datasets`; the default is embedded and needs no files)."),
    ] = None,
    forget: Annotated[
        str,
        typer.Option(
            help="A forget scenario: 0.1 (first 10% per class), random:0.1, class:<id|name>, identity:<id>[,<id>], "
            "subclass:<name>, memorised:<stratum>:<fraction>, sequential:<k>:<scenario>, ... (`unlearnkit list scenarios`)."
        ),
    ] = "0.1",
    seeds: Annotated[
        str, typer.Option("--seeds", "--seed", help="Comma-separated seeds (paper: 3407,13,12).")
    ] = "3407",
    option: Annotated[
        list[str], typer.Option("--option", "-o", help="Method option KEY=VALUE or METHOD.KEY=VALUE.")
    ] = [],
    dataset_option: Annotated[
        list[str], typer.Option("--dataset-option", help="Dataset option KEY=VALUE (e.g. download=false).")
    ] = [],
    model_option: Annotated[list[str], typer.Option("--model-option", help="Model option KEY=VALUE.")] = [],
    metric: Annotated[
        list[str],
        typer.Option(
            help="Only these metrics: a name or a comma list (default: all registered; `unlearnkit list metrics`)."
        ),
    ] = [],
    subset: Annotated[
        str | None, typer.Option(help="Per-class count (500) or fraction (0.1) of train and test.")
    ] = None,
    train_recipe: Annotated[
        str | None,
        typer.Option(
            help="paper, fast, quick or a .toml file (default: the dataset's; `unlearnkit list recipes`).",
            callback=home_text,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Override the training recipe's epochs (0: use --pretrained/--weights as is).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder holding the dataset's files (offline use).", callback=home)
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from pretrained weights (ViT-B/16 for 'vit').")] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Initial weights for every network trained here (not an original: see --original).", callback=home
        ),
    ] = None,
    original: Annotated[
        Path | None,
        typer.Option(
            help="A trained model file (state dict or .safetensors) to unlearn, used as the original.", callback=home
        ),
    ] = None,
    retrained: Annotated[
        Path | None, typer.Option(help="A model file retrained without D_f, used as the gold standard.", callback=home)
    ] = None,
    no_retrain: Annotated[
        bool, typer.Option("--no-retrain", help="No gold standard: skip the retrained model (RF-JSD still compares).")
    ] = False,
    original_min_retain: Annotated[
        float | None,
        typer.Option(
            help="Lowest retain accuracy of a sound original (default 0.9); below it runs are marked weak "
            "(docs/protocols.md). Changes no number."
        ),
    ] = None,
    protocol: Annotated[str, typer.Option(help="Evaluation protocol: clean (default) or paper.")] = "clean",
    eval_draw: Annotated[
        int,
        typer.Option(
            help="Another draw of the paper protocol's random crops (default 0): re-evaluates the stored "
            "unlearned models, never re-runs them (docs/reproducing.md)."
        ),
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            help="Pin torch's CPU threads (default: torch's own). CPU numbers are bit-identical at one thread "
            "count; a pinned count enters the run identity (docs/protocols.md)."
        ),
    ] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile model training (CUDA only).")] = False,
    models_per_device: Annotated[
        str,
        typer.Option(
            help="Train the seeds' reference models N at a time in this process (or auto: from memory on a GPU, "
            "cores on a CPU); the same models and identities as one at a time (docs/packing.md)."
        ),
    ] = "1",
    save_models: Annotated[
        bool, typer.Option("--save-models/--no-save-models", help="Log each unlearned model as an MLflow artifact.")
    ] = True,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
    plugins_dir: PluginsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Data-parallel processes on this machine: re-runs the command under torchrun (docs/distributed.md).",
        ),
    ] = 1,
) -> None:
    """Train (or reuse) the original and retrained models, run the method(s), evaluate, log to MLflow."""
    params = dict(locals())  # this command's parameters, by name, before anything else is bound
    # imported here, not at the top: `unlearnkit --help` need not pay for numpy and pydantic
    from unlearnkit.engine.config import RunRequest, cli_names, parse_option_pairs, validate

    fields = cli_names()  # `unlearnkit run` parameter name -> RunRequest field: the request's fields are its options
    from unlearnkit.parallel import torchrun as ddp

    world = ddp.from_env()  # under torchrun: rank 0 prints, the other ranks stay quiet
    if not world.main:
        con.out.quiet = con.err.quiet = True
    from unlearnkit.api.progress import SILENT
    from unlearnkit.board.leaderboard import metric_info
    from unlearnkit.board.publish import publish_benchmark_board
    from unlearnkit.board.tables import header
    from unlearnkit.engine.runner import Runner
    from unlearnkit.store.mlflow_store import Store

    host = plugin_host(plugins_dir)
    values = {  # the parameters of this command, by name: each RunRequest field is one of them
        **{name: params[name] for name in fields if name in params},
        "option": parse_option_pairs(option),
        "dataset_option": parse_option_pairs(dataset_option, "dataset"),
        "model_option": parse_option_pairs(model_option, "model"),
        "metric": metric or None,
    }
    request = RunRequest(**{field_name: values[cli] for cli, field_name in fields.items()})
    plan = validate(request, host.registries)
    if nproc > 1:  # bad input is one line here, not after torchrun has started its ranks
        argv, given = ddp.without_nproc(sys.argv[1:])
        if not given or "run" not in argv:
            raise ConfigError(
                f"--nproc re-executes the command line; from Python, start `torchrun --standalone "
                f"--nproc-per-node {nproc} -m unlearnkit run ...` instead."
            )
        ddp.relaunch(nproc, argv, device)  # does not return
    if data_dir is not None and plan.dataset.cls.embedded:  # a typo'd path or a wrong dataset: say it is unread
        con.warn(f"--data-dir is not read: dataset '{plan.dataset.name}' is embedded (it needs no files).")
    if compile and not (device.startswith("cuda") or (device == "auto" and _has_cuda())):
        con.warn("--compile is ignored on the CPU (compilation costs more than it saves there).")
    store = Store(tracking_uri, experiment)
    # with --json, stdout is the JSON alone: what a plugin prints while it runs goes to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with (
        quiet,
        torch_builds_checked(),
        con.RichReporter() if world.main else contextlib.nullcontext(SILENT) as reporter,
    ):
        runner = Runner(plan, store, reporter)
        runner.check()
        results = runner.run()
        board_run = ""
        if sum(1 for m in plan.methods if m.cls.role is None) > 1 and world.main:
            board_run = publish_benchmark_board(store, host.registries, runner.bench.key)
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        con.out.print_json(json.dumps(strict_json([r.__dict__ for r in results]), default=str, allow_nan=False))
        for res in failed:
            con.warn(f"{res.method} (seed {res.seed}) failed: {res.failure}")
        if failed:  # a script reading the JSON learns from the exit code too that a row failed
            raise typer.Exit(1)
        return
    info = metric_info(host.registries)
    if plan.request.metrics is not None:  # --metric: the metrics asked for, none of the defaults left blank
        chosen = {m.name for m in plan.metrics}
    else:  # a run's own metrics (audits add columns only to boards)
        chosen = {n for n in host.registries.metrics.names() if n in info and info[n].default}
    shown = sorted((n for n in chosen if n in info), key=lambda n: (info[n].order, n))
    table = Table(
        title=f"{plan.dataset.name} / {plan.model_name} / {plan.scenario.key} ({plan.protocol.name})",
        title_justify="left",
    )
    for col in ("method", "seed", "status", *shown):
        title = header(col, info[col]) if col in info else col
        table.add_column(title, justify="left" if col in ("method", "status") else "right")
    for res in results:
        cells = []
        for name in shown:
            value = res.metrics.get(name)
            cells.append("—" if value is None else f"{value * info[name].scale:.{info[name].digits}f}")
        table.add_row(res.method, str(res.seed), status_cell(res.status), *cells)
    con.out.print(table)
    con.out.print(
        f"Store: {store.shown_uri}" + (f"; leaderboard logged to run {board_run[:8]}" if board_run else ""),
        highlight=False,
    )
    for res in failed:
        con.warn(f"{res.method} (seed {res.seed}) failed: {res.failure}")
    if failed:
        raise typer.Exit(1)
