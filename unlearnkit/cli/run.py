"""``unlearnkit run``: one benchmark, any number of methods and seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.config import RunRequest, parse_option_pairs, parse_seeds, validate


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


SHOWN = ("acc_forget", "acc_retain", "acc_test", "mia", "jsd", "rf_jsd", "time_s")


@app.command()
def run(
    method: Annotated[list[str], typer.Option("--method", "-m", help="Method(s): a name, a comma list, or 'all'.")] = [
        "lotus"
    ],
    model: Annotated[str, typer.Option(help="Model: resnet18, vit, cnn, resnet20, timm/<name>, ...")] = "resnet18",
    dataset: Annotated[
        str, typer.Option(help="Dataset; the default 'digits' is embedded and needs no files.")
    ] = "digits",
    forget: Annotated[str, typer.Option(help="0.1 (first 10% per class), random:0.1, or class:<id|name>.")] = "0.1",
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
    metric: Annotated[list[str], typer.Option(help="Only these metrics (default: all registered).")] = [],
    subset: Annotated[
        str | None, typer.Option(help="Per-class count (500) or fraction (0.1) of train and test.")
    ] = None,
    train_recipe: Annotated[
        str | None, typer.Option(help="paper, fast or a .toml file (default: the dataset's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the training recipe's epochs (CPU runs).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files (offline use).")] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from pretrained weights (ViT-B/16 for 'vit').")] = False,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the model.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile model training (CUDA only).")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
    plugins_dir: Annotated[Path | None, typer.Option(help="Also load plugin modules (*.py) from this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Train (or reuse) the original and retrained models, run the method(s), evaluate, log to MLflow."""
    from unlearnkit.plugins import get_host
    from unlearnkit.runner import Runner
    from unlearnkit.store import Store

    host = get_host(plugins_dir)
    for message in host.report.failed:
        con.warn(message)
    request = RunRequest(
        dataset=dataset,
        model=model,
        methods=method,
        options=parse_option_pairs(option),
        dataset_options=parse_option_pairs(dataset_option),
        model_options=parse_option_pairs(model_option),
        metrics=metric or None,
        seeds=parse_seeds(seeds),
        forget=forget,
        subset=subset,
        train_recipe=train_recipe,
        epochs=epochs,
        data_dir=data_dir,
        pretrained=pretrained,
        weights=weights,
        device=device,
        compile=compile,
    )
    plan = validate(request, host.registries)
    if compile and not (device.startswith("cuda") or (device == "auto" and _has_cuda())):
        con.warn("--compile is ignored on the CPU (compilation costs more than it saves there).")
    store = Store(tracking_uri, experiment)
    with con.RichReporter() as reporter:
        runner = Runner(plan, store, reporter)
        runner.prepare()
        store.check()
        results = runner.run()
    if as_json:
        con.out.print_json(json.dumps([r.__dict__ for r in results], default=str))
        return
    table = Table(title=f"{plan.dataset.name} / {request.model} / {plan.scenario.key}", title_justify="left")
    for col in ("method", "seed", "status", *SHOWN):
        table.add_column(col, justify="left" if col in ("method", "status") else "right")
    for res in results:
        cells = []
        for name in SHOWN:
            value = res.metrics.get(name)
            scale = 1e4 if name in ("jsd", "rf_jsd") else 1
            cells.append("—" if value is None else f"{value * scale:.3f}" if name != "time_s" else f"{value:.2f}")
        status = {"finished": "[green]done[/]", "skipped": "[cyan]in store[/]"}.get(res.status, f"[red]{res.status}[/]")
        table.add_row(res.method, str(res.seed), status, *cells)
    con.out.print(table)
    con.out.print("jsd and rf_jsd are shown x1e4. Store:", store.uri, highlight=False)
    failed = [r for r in results if r.status == "failed"]
    for res in failed:
        con.warn(f"{res.method} (seed {res.seed}) failed: {res.failure}")
    if failed:
        raise typer.Exit(1)
