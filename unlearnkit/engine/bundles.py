"""Reference-model bundles: trained originals and retrained models carried from one store to
another, so nobody trains the same reference twice (a lab shares its ImageNet-scale originals,
a cluster seeds a laptop's store).

A bundle is a tar file holding ``manifest.json`` and one checkpoint per model. The manifest lists,
per model, its identity (the dictionary its config hash is computed from), that hash, its tags,
params and metrics, and the checkpoint's sha256. ``import`` refuses a bundle whose files do not
match their checksums or whose identities do not hash to their config hashes, and creates, for
each model not already in the store, a finished training run with the same config hash: later runs
then find it exactly as if they had trained it.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from unlearnkit.errors import ConfigError, StoreError
from unlearnkit.identity import config_hash, file_sha256
from unlearnkit.store.mlflow_store import TAG, RunRecord, Store, tag

FORMAT = "unlearnkit-reference-models"
FORMAT_VERSION = 1
# tags that describe the process that trained a model, not the model: not carried over
LOCAL_TAGS = ("host", "pid", "heartbeat", "sweep", "mlflow.")


@dataclass
class BundleReport:
    models: int
    added: int = 0
    present: int = 0


def reference_runs(
    store: Store,
    *,
    datasets: set[str] | None = None,
    models: set[str] | None = None,
    seeds: set[int] | None = None,
) -> list[RunRecord]:
    """Finished reference-model training runs, optionally only those of a recipe's datasets, models and seeds."""
    found = []
    for rec in store.search({"run_type": "train"}):
        if datasets and rec.tag("dataset") not in datasets:
            continue
        if models and rec.tag("model") not in models:
            continue
        if seeds and int(rec.tag("seed", "-1")) not in seeds:
            continue
        found.append(rec)
    return found


def export_bundle(store: Store, records: list[RunRecord], path: Path) -> int:
    """Write ``records`` (finished training runs) with their checkpoints to the tar file ``path``."""
    if not records:
        raise ConfigError(f"No trained reference models in {store.uri} match: nothing to export.")
    entries = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path, "w") as tar:
        for rec in records:
            key = rec.tag("config_hash")
            try:
                identity = json.loads((store.download(rec.run_id, "identity.json", Path(tmp) / key)).read_text())
                checkpoint = store.download(rec.run_id, "checkpoint/model.pt", Path(tmp) / key)
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - a run without its files cannot be shared; say which
                raise StoreError(f"Run {rec.run_id} ({key}) lacks its checkpoint or identity: {err}") from None
            digest = file_sha256(checkpoint)
            if digest != rec.tag("checkpoint_sha256"):
                raise StoreError(f"Run {rec.run_id}: its checkpoint fails its sha256 check; not exported.")
            name = f"models/{key}.pt"
            tar.add(checkpoint, arcname=name)
            entries.append(
                {
                    "config_hash": key,
                    "identity": identity,
                    "file": name,
                    "sha256": digest,
                    "name": rec.tags.get("mlflow.runName", key),
                    "tags": {k: v for k, v in rec.tags.items() if not _local(k)},
                    "params": rec.params,
                    "metrics": rec.metrics,
                }
            )
        manifest = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "models": entries}, indent=1)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest.encode())
        tar.addfile(info, io.BytesIO(manifest.encode()))
    return len(entries)


def _local(key: str) -> bool:
    bare = key.removeprefix(f"{TAG}.")
    return key.startswith("mlflow.") or bare in LOCAL_TAGS or bare.startswith(LOCAL_TAGS)


def read_manifest(tar: tarfile.TarFile, path: Path) -> list[dict[str, Any]]:
    try:
        member = tar.extractfile("manifest.json")
        doc = json.loads(member.read()) if member is not None else None
    except (KeyError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            f"'{path}' is not a reference-model bundle (no valid manifest.json); make one with unlearnkit export."
        )
    if doc.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"Bundle '{path}' has format version {doc.get('version')}; this unlearnkit reads {FORMAT_VERSION}."
        )
    return list(doc["models"])


def verify(entry: dict[str, Any], file: Path, path: Path) -> None:
    """One line, and nothing imported, when a model's bytes or identity are not what the manifest says."""
    key = entry["config_hash"]
    if config_hash(entry["identity"]) != key or entry["tags"].get(tag("config_hash")) != key:
        raise ConfigError(f"Bundle '{path}': the identity of model {key} does not hash to its config hash; refused.")
    if file_sha256(file) != entry["sha256"] or entry["tags"].get(tag("checkpoint_sha256")) != entry["sha256"]:
        raise ConfigError(f"Bundle '{path}': the checkpoint of model {key} fails its sha256 check; refused.")


def import_bundle(store: Store, path: Path) -> BundleReport:
    """Verify every model of the bundle first, then add the ones the store does not have yet."""
    if not Path(path).is_file():
        raise ConfigError(f"Bundle '{path}' does not exist.")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path, "r") as tar:
        entries = read_manifest(tar, path)
        files = {}
        for entry in entries:  # everything checked before anything is written
            name = PurePosixPath(entry["file"])
            if name.is_absolute() or ".." in name.parts:
                raise ConfigError(f"Bundle '{path}': unsafe file name {entry['file']!r}; refused.")
            tar.extract(entry["file"], tmp, filter="data")
            files[entry["config_hash"]] = Path(tmp) / entry["file"]
            verify(entry, files[entry["config_hash"]], path)
        report = BundleReport(len(entries))
        for entry in entries:
            key = entry["config_hash"]
            if store.find_finished("train", key) is not None:
                report.present += 1
                continue
            run_id = store.start_run(
                entry["name"], {**entry["tags"], tag("imported_from"): Path(path).name}, entry["params"]
            )
            checkpoint = Path(tmp) / key / "model.pt"  # the name every store reads a checkpoint by
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            files[key].replace(checkpoint)
            store.log_file(run_id, checkpoint, "checkpoint")
            store.log_text(run_id, json.dumps(entry["identity"], sort_keys=True, indent=1), "identity.json")
            store.log_metrics(run_id, entry["metrics"])
            store.finish(run_id)
            report.added += 1
    return report
