"""``unlearnkit export`` / ``unlearnkit import``: reference models carried between stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle to write (a .tar file).")],
    recipe: Annotated[
        Path | None, typer.Option(help="Only the reference models of this recipe's datasets, models and seeds.")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
) -> None:
    """Write trained original and retrained models, with their identities and checksums, to a bundle."""
    from unlearnkit.engine.bundles import export_bundle, reference_runs
    from unlearnkit.store.mlflow_store import Store

    store = Store(tracking_uri, experiment)
    store.check()
    scope: dict = {}
    if recipe is not None:
        from unlearnkit.scale.sweep_recipes import load_recipe

        spec = load_recipe(recipe)
        scope = {"datasets": set(spec.datasets), "models": set(spec.models), "seeds": set(spec.seeds)}
    n = export_bundle(store, reference_runs(store, **scope), output)
    con.out.print(f"Exported {n} reference models to {output}.", highlight=False)


@app.command("import")
def import_(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `unlearnkit export`.", metavar="BUNDLE")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: ./unlearnkit-store).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "unlearnkit",
) -> None:
    """Add a bundle's reference models to the store (checked first): later runs reuse them instead of training."""
    from unlearnkit.engine.bundles import import_bundle
    from unlearnkit.store.mlflow_store import Store

    store = Store(tracking_uri, experiment)
    store.check()
    report = import_bundle(store, bundle)
    con.out.print(
        f"Imported {report.added} of {report.models} reference models from {bundle} "
        f"({report.present} already in the store).",
        highlight=False,
    )
