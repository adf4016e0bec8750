"""``unlearnkit export`` / ``unlearnkit import``: reference models carried between stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli import app
from unlearnkit.cli import console as con
from unlearnkit.cli.shared import Experiment, PluginsDir, TrackingUri, host_and_store, open_to_read


@app.command("export")
def export(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The bundle to write: a .tar file (.tar.gz, .tar.bz2, .tar.xz: compressed). "
            "An earlier bundle there is replaced; any other file is refused.",
        ),
    ],
    recipe: Annotated[
        Path | None, typer.Option(help="Only the reference models of this recipe's datasets, models and seeds.")
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
) -> None:
    """Write trained original and retrained models, with their identities and checksums, to a bundle."""
    from unlearnkit.engine.bundles import check_output, export_bundle, nothing_to_export, reference_runs
    from unlearnkit.store.mlflow_store import Store

    check_output(output)  # before any work, and before the store is opened
    scope: dict = {}
    if recipe is not None:
        from unlearnkit.scale.sweep_recipes import load_recipe

        spec = load_recipe(recipe)
        scope = {"datasets": set(spec.datasets), "models": set(spec.models), "seeds": set(spec.seeds)}
    store = Store(tracking_uri, experiment)
    records: list = []
    # a store that is not there, or not yet holding the experiment, has nothing to export and is not
    # changed by trying: export only reads
    exists = store.exists()
    readable = exists and open_to_read(store)
    if readable:
        records = reference_runs(store, **scope, warn=con.warn)
    if not records:  # say why, and what the store holds
        raise nothing_to_export(store, exists, reference_runs(store) if readable and scope else [], scope)
    n = export_bundle(store, records, output)
    con.out.print(f"Exported {n} reference models to {output}.", highlight=False)


@app.command("import")
def import_(
    bundle: Annotated[
        str,
        typer.Argument(
            help="A bundle written by `unlearnkit export`: a path, or a file://, http:// or https:// URL.",
            metavar="BUNDLE",
        ),
    ],
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Accept only the bundle file with this sha256 (64 hex digits).")
    ] = None,
    trust_times: Annotated[
        bool,
        typer.Option(
            "--trust-times",
            help="The bundle's training times were measured on hardware like this one: use them as RTE denominators.",
        ),
    ] = False,
    max_member_size: Annotated[
        str, typer.Option(help="Largest checkpoint accepted (binary units: 500MB = 500MiB).")
    ] = "1GiB",
    max_manifest_size: Annotated[
        str, typer.Option(help="Largest manifest.json accepted, and largest tar extended (pax, long-name) header.")
    ] = "1MiB",
    max_bundle_size: Annotated[
        str, typer.Option(help="Largest bundle accepted: the file (or download) and all its members together.")
    ] = "2GiB",
    download_timeout: Annotated[
        float, typer.Option(help="Longest a URL's whole download may take, in seconds.", min=1.0, max=1e6)
    ] = 3600.0,
    plugins_dir: PluginsDir = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "unlearnkit",
) -> None:
    """Add a bundle's reference models to the store, all or none, after checking every byte: later
    runs reuse them instead of training. Each checkpoint must load into the model its identity names."""
    from unlearnkit.engine.bundles import Limits, import_bundle, parse_size

    limits = Limits(
        member=parse_size(max_member_size, "--max-member-size"),
        manifest=parse_size(max_manifest_size, "--max-manifest-size"),
        total=parse_size(max_bundle_size, "--max-bundle-size"),
        download_s=download_timeout,
    )
    # no store.check() here: import_bundle opens the store once the bundle is checked, so a refused
    # bundle leaves no new store behind
    host, store = host_and_store(plugins_dir, tracking_uri, experiment)
    report = import_bundle(
        store, bundle, host.registries, limits=limits, sha256=sha256, trust_times=trust_times, warn=con.warn
    )
    con.out.print(
        f"Imported {report.added} of {report.models} reference models from {report.source} "
        f"({report.present} already in the store).",
        highlight=False,
    )
