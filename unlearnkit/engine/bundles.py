"""Reference-model bundles: trained originals and retrained models carried from one store to
another, so nobody trains the same reference twice (a lab shares its ImageNet-scale originals,
a cluster seeds a laptop's store).

A bundle is a tar file holding ``manifest.json`` and one checkpoint per model. A bundle is data,
never authority: it may come from anyone (a URL, a mail attachment), and the store believes
only what import can check or re-derive itself.

- Only reference models (``original``, ``retrained``) travel. Every tag and param an imported
  run gets is re-derived from the model's identity (the dictionary its config hash hashes) or
  is one of a few descriptive tags, checked against its declared kind; anything else in the
  manifest refuses the bundle. Claims, results and MLflow's own tags never come from a bundle.
- Every checkpoint is read weights-only and strict-loaded into the model its identity names,
  built by this machine's plugins, before anything is written; its tensors must be finite and of
  the model's kind of number (a diverged model is no reference). The identity's training recipe
  must be one :class:`~unlearnkit.loops.training.TrainRecipe` accepts: it becomes the run's params.
- A measured ``train_time_s`` is kept, but the run is marked: another machine's clock is no RTE
  denominator unless the importer vouches for it (``--trust-times``).
- Sizes are bounded from the tar headers before any byte is copied, and again while copying;
  links, devices, unlisted or duplicate members and odd paths are refused; nothing is extracted
  by ``tarfile`` itself. Extended (pax, GNU long-name) headers, which ``tarfile`` reads into
  memory on its own, are bounded before it reads them (:func:`guarded_headers`).
- The import is one transaction: everything is checked first (the store is opened only then, so
  a refused bundle leaves no new store), each run appears complete (typed only once finished),
  and a failure while writing deletes the runs it made.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import re
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from unlearnkit.api.types import ImageSpec
from unlearnkit.discovery.registry import Registries
from unlearnkit.engine.references import IMAGE_SPEC, REFERENCE_ROLES, image_spec_text, parse_image_spec
from unlearnkit.errors import ConfigError, StoreError, UnlearnkitError, disk_full, redacted, shorten, translated
from unlearnkit.identity import CORE_VERSION, config_hash, file_sha256, identity_json, plugin_version
from unlearnkit.store.mlflow_store import RunRecord, Store, authorised_request, tag
from unlearnkit.store.tags import TAGS

FORMAT = "unlearnkit-reference-models"
FORMAT_VERSION = 2  # 2: only re-derivable fields, the input each model is built for
MANIFEST = "manifest.json"
MAX_MEMBERS = 10_000  # tar headers read before giving up: a bundle of empty members is no bundle
MAX_CHAIN = 8  # extended headers in a row before one member: tarfile reads each chain by recursion
CHUNK = 1 << 20

# Tags an imported run gets that are re-derived from the identity: a bundle may state them, and
# then they must agree. And descriptive tags, taken from the bundle only after a kind check.
DERIVED_TAGS = (
    "run_type",
    "role",
    "config_hash",
    "checkpoint_sha256",
    "dataset",
    "model",
    "seed",
    "subset",
    "train_recipe",
    "world_size",
)
DESCRIPTIVE_TAGS = ("scenario", "protocol", "version", "device")
ENTRY_KEYS = {"config_hash", "identity", "file", "sha256", IMAGE_SPEC, "tags", "params", "metrics"}
PARAMS = ("images",)  # besides the re-derived role, seed, image_spec and train.* params
RESERVED_PARAMS = ("role", "seed", IMAGE_SPEC, *PARAMS)  # params no training recipe may set
METRICS = ("train_time_s",)
MAX_TEXT = 200  # longest descriptive tag value accepted
IDENTITY_TYPES: dict[str, tuple[type, ...]] = {
    "core": (int,),
    "dataset": (str,),
    "dataset_options": (dict,),
    "data": (str,),
    "model": (str,),
    "model_plugin": (str,),
    "model_options": (dict,),
    "pretrained": (bool,),
    "weights": (str, type(None)),
    "subset": (int, float, type(None)),
    "train_recipe": (dict,),
    "role": (str,),
    "seed": (int,),
    "train_indices": (str,),
}
OPTIONAL_IDENTITY = {"world_size": (int,)}
# a registry entry's version string: ``package:name@algorithm_version`` or ``package:name==dist_version``
PLUGIN_VERSION = re.compile(r"^(?P<package>.*):(?P<name>[A-Za-z0-9_.\-]+)(@|==)[^:@=]*$")
HEX = re.compile(r"^[0-9a-f]{16,64}$")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
# an output's last suffix -> the compression export writes it with (import reads each of them)
COMPRESSIONS = {".gz": "gz", ".tgz": "gz", ".bz2": "bz2", ".tbz": "bz2", ".tbz2": "bz2", ".xz": "xz", ".txz": "xz"}
OTHER_ARCHIVES = (".zip", ".7z", ".rar", ".zst", ".tzst", ".lz4")  # archives a bundle is not


@dataclass(frozen=True)
class Limits:
    """The largest checkpoint, manifest and whole bundle import accepts (a ViT-B/16 checkpoint is
    about 350 MB; a manifest of a thousand models well under a MiB)."""

    member: int = 1 << 30
    manifest: int = 1 << 20
    total: int = 2 << 30
    # a URL's whole download, in seconds: a server that sends a byte just before each read's own
    # 30 s timeout would otherwise hold the import for ever (2 GiB at 1 MB/s is about 36 minutes)
    download_s: float = 3600.0


def parse_size(text: str, flag: str) -> int:
    """``"512MiB"``, ``"2GB"``, ``"1048576"`` -> bytes; a one-line error for anything else."""
    found = SIZE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise ConfigError(f"Bad {flag} {text!r}: expected a size such as 1GiB, 350MB or 1048576 (bytes).")
    unit = (found.group(2) or "b").lower().rstrip("b").rstrip("i")
    return int(float(found.group(1)) * 1024 ** ("kmgt".index(unit) + 1 if unit else 0))


@dataclass
class BundleReport:
    models: int
    added: int = 0
    present: int = 0
    source: str = ""  # the bundle as a line may print it: a URL without credentials or query


# ------------------------------------------------------------------------------------- export
def reference_runs(
    store: Store,
    *,
    datasets: set[str] | None = None,
    models: set[str] | None = None,
    seeds: set[int] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[RunRecord]:
    """Finished original and retrained models, optionally only those of a recipe's datasets,
    models and seeds (an audit's shadow models stay in their store). A run whose tags no training
    run writes (a seed ``x1``) is skipped, said through ``warn``: no bundle could carry it. Of two
    finished runs of one model (a store written before claims, or an import beside a training) only
    the first travels, the one the store itself reuses: a bundle holds each model once."""
    found: dict[str, RunRecord] = {}
    for rec in store.search({"run_type": "train"}):  # oldest first, as Store.find_finished reads them
        if rec.tag("role") not in REFERENCE_ROLES:
            continue
        problem = unusable(rec)
        if problem is not None:
            warn(f"Run {rec.run_id} is not exported: {problem}.")
            continue
        if datasets and rec.tag("dataset") not in datasets:
            continue
        if models and rec.tag("model") not in models:
            continue
        if seeds and int(rec.tag("seed", "-1")) not in seeds:
            continue
        found.setdefault(rec.tag("config_hash"), rec)
    return list(found.values())


def unusable(rec: RunRecord) -> str | None:
    """Why a reference run cannot travel (a tag of the wrong kind), or None: its derived tags go
    into the bundle as they are, and import refuses any the identity does not give."""
    if not rec.tag("config_hash"):
        return "it has no config_hash tag"
    for name in DERIVED_TAGS:
        value = rec.tag(name)
        if value and not valid_tag(name, value):
            return f"its {name} tag {short(value)} is not a valid {TAGS[name].kind}"
    return None


def check_output(path: Path) -> None:
    """Refuse an output the bundle cannot be written to, before any work: a folder, or a file in a
    folder that does not exist or is not writable."""
    path = Path(path)
    shown, folder = short(str(path), 300), short(str(path.parent), 300)  # the user's own path: in full
    if path.is_dir():
        raise ConfigError(f"Cannot write the bundle to {shown}: it is a folder; name a file in it (refs.tar).")
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"Cannot write the bundle to {shown}: {folder} is a file, not a folder.")
    if not path.parent.is_dir():
        raise ConfigError(f"Cannot write the bundle to {shown}: the folder {folder} does not exist.")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"Cannot write the bundle to {shown}: the folder {folder} is not writable.")
    compression(path)
    if path.is_file() and path.stat().st_size > 0 and not is_bundle(path):
        # export replaces its output whole: a typo (-o mlflow.db, -o data.tar.gz) would destroy it
        raise ConfigError(
            f"Cannot write the bundle to {shown}: that file exists and is not a bundle; "
            "name a new file, or remove it first."
        )


def compression(path: Path) -> str:
    """How export compresses ``path``, from its suffix: ``gz``, ``bz2``, ``xz`` or ``""`` (a plain tar).
    An archive format a bundle is not (``.zip``) is refused: its readers could not open the file."""
    suffix = Path(path).suffix.lower()
    if suffix in OTHER_ARCHIVES:
        raise ConfigError(
            f"Cannot write the bundle to {short(str(path), 300)}: a bundle is a tar file, not {suffix}; "
            "name it .tar, .tar.gz, .tar.bz2 or .tar.xz."
        )
    return COMPRESSIONS.get(suffix, "")


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a tar holding a manifest.json (an earlier export, fine to replace),
    read from its headers only and no further than import would read them."""
    try:
        with tarfile.open(path, "r:*", tarinfo=guarded_headers(str(path), Limits.manifest)) as tar:
            for _ in range(MAX_MEMBERS):
                info = tar.next()
                if info is None:
                    return False
                if PurePosixPath(info.name) == PurePosixPath(MANIFEST):
                    return True
    except (tarfile.TarError, OSError, EOFError, zlib.error, ConfigError):
        return False
    return False


def nothing_to_export(store: Store, exists: bool, held: list[RunRecord], scope: dict[str, set[Any]]) -> ConfigError:
    """Why an export found no model, and what the store does hold: a store not made yet (a typo in
    --tracking-uri?), a store without reference models, or a recipe that matches none of them."""
    if not exists:
        return ConfigError(
            f"There is no store at {store.shown_uri} (check --tracking-uri or UNLEARNKIT_STORE): nothing to export."
        )
    if not held:
        return ConfigError(f"{store.shown_uri} holds no trained original or retrained models: nothing to export.")
    asked = "; ".join(f"{name} {', '.join(sorted(map(str, values)))}" for name, values in scope.items() if values)
    return ConfigError(
        f"No trained reference models in {store.shown_uri} match the recipe ({shorten(asked, 200)}): nothing to "
        f"export. The store holds {shorten(held_models(held), 200)}."
    )


def held_models(held: list[RunRecord]) -> str:
    """``"digits/cnn seeds 1, 2; mnist/cnn seed 3"``: the reference models a store holds, in short."""
    seeds: dict[str, set[str]] = {}
    for rec in held:
        seeds.setdefault(f"{rec.tag('dataset')}/{rec.tag('model')}", set()).add(rec.tag("seed"))
    return "; ".join(
        f"{cell} seed{'s' if len(found) > 1 else ''} {', '.join(sorted(found, key=lambda s: (len(s), s)))}"
        for cell, found in sorted(seeds.items())
    )


def export_bundle(store: Store, records: list[RunRecord], path: Path) -> int:
    """Write ``records`` (finished training runs) with their checkpoints to the tar file ``path``:
    only what import re-derives or checks, so no host, path, process or nonce of this machine."""
    check_output(path)
    if not records:
        raise ConfigError(f"No trained reference models in {store.shown_uri} match: nothing to export.")
    partial = Path(path).with_name(f".{Path(path).name}.partial")  # a failed export leaves no half bundle
    try:
        count = _write_bundle(store, records, partial, compression(path))
        os.replace(partial, path)
    except OSError as err:  # the output's disk, not a bug: one line
        full = disk_full(err)
        if full is not None:
            raise full from None
        raise ConfigError(f"Cannot write the bundle to {short(str(path), 300)}: {err.strerror or err}.") from None
    finally:
        partial.unlink(missing_ok=True)
    return count


def _write_bundle(store: Store, records: list[RunRecord], path: Path, kind: str) -> int:
    entries = []
    with tempfile.TemporaryDirectory() as tmp, open_output(path, kind) as tar:
        for rec in records:
            key = rec.tag("config_hash")
            spec = spec_of(rec)
            if spec is None:
                raise StoreError(
                    f"Run {rec.run_id} ({key}) was trained before reference models recorded their input "
                    f"({IMAGE_SPEC}); run its benchmark once with this unlearnkit (it reuses the model and "
                    "records it), then export again."
                )
            try:
                identity = json.loads(
                    (store.download(rec.run_id, "identity.json", Path(tmp) / key)).read_text(encoding="utf-8")
                )
                checkpoint = store.download(rec.run_id, "checkpoint/model.pt", Path(tmp) / key)
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - a run without its files cannot be shared; say which
                raise StoreError(
                    f"Run {rec.run_id} ({key}) lacks its checkpoint or identity: {err} "
                    "(`unlearnkit store check` names every such run)."
                ) from None
            digest = file_sha256(checkpoint)
            if digest != rec.tag("checkpoint_sha256"):
                raise StoreError(
                    f"Run {rec.run_id}: its checkpoint fails its sha256 check; not exported "
                    "(`unlearnkit store check` names every such run)."
                )
            name = member_name(key)
            tar.add(checkpoint, arcname=name, filter=_anonymous)
            entries.append(
                {
                    "config_hash": key,
                    "identity": identity,
                    "file": name,
                    "sha256": digest,
                    IMAGE_SPEC: asdict(spec),
                    "tags": {tag(k): rec.tag(k) for k in DERIVED_TAGS if rec.tag(k)}
                    | {tag(k): rec.tag(k) for k in DESCRIPTIVE_TAGS if valid_tag(k, rec.tag(k))},
                    "params": {k: rec.params[k] for k in PARAMS if k in rec.params},
                    "metrics": {k: rec.metrics[k] for k in METRICS if k in rec.metrics},
                }
            )
        data = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "models": entries}, indent=1).encode()
        info = _anonymous(tarfile.TarInfo(MANIFEST))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return len(entries)


@contextmanager
def open_output(path: Path, kind: str) -> Iterator[tarfile.TarFile]:
    """The tar file export writes, compressed by ``kind`` (see :func:`compression`). The gzip header
    gets no name and no time, as the tar headers get no owner and no time."""
    with open(path, "wb") as raw:
        packed: io.BufferedIOBase
        if kind == "gz":
            packed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        elif kind == "bz2":
            packed = bz2.BZ2File(raw, "wb")
        elif kind == "xz":
            packed = lzma.LZMAFile(raw, "wb")
        else:
            packed = raw
        with packed, tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            yield tar


def spec_of(rec: RunRecord) -> ImageSpec | None:
    """The input a training run's model was built for (None for runs of 0.2, which did not record it)."""
    try:
        return parse_image_spec(rec.params.get(IMAGE_SPEC, "null"))
    except ValueError:
        return None


def member_name(key: str) -> str:
    """The one file name a model's checkpoint may have in a bundle."""
    return f"models/{key}.pt"


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner, group or time of the exporting machine in the tar headers."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o644
    return info


# ------------------------------------------------------------------------------------ sources
def short(value: object, limit: int = 80) -> str:
    """A value from a bundle, safe to put in a one-line message: quoted, escaped, cut."""
    text = ascii(value) if isinstance(value, str) else ascii(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def source_label(source: str) -> str:
    """What a run records as its bundle: the file name, or the URL without credentials or query."""
    if "://" not in source:
        return Path(source).name[:MAX_TEXT]
    try:
        parts = urllib.parse.urlsplit(source)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError as err:  # "http://[::1", a port that is no number or over 65535
        raise ConfigError(f"Bundle {short(redacted(source))} is not a valid URL ({err}).") from None
    return f"{parts.scheme}://{host}{port}{parts.path}"[:MAX_TEXT]


def shown_source(source: str) -> str:
    """The bundle as a line may print it: a path as typed, a URL without credentials or query."""
    return source if "://" not in source else source_label(source)


@contextmanager
def fetched(source: str, limits: Limits, sha256: str | None, tmp: Path) -> Iterator[Path]:
    """The bundle as a local file: a path as it is, a URL streamed into ``tmp`` (never more than
    ``limits.total`` bytes), its sha256 checked against ``--sha256`` before it is opened."""
    shown = short(source if "://" not in source else source_label(source))  # no credentials in an error line
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ConfigError(f"Bad --sha256 {short(sha256)}: expected 64 hexadecimal digits.")
    scheme = urllib.parse.urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme == "file":
        parts = urllib.parse.urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"Bundle {shown}: a file:// URL names a file on this machine (no host).")
        path = Path(urllib.request.url2pathname(parts.path))
    elif scheme in ("http", "https"):
        path = tmp / "bundle.tar"
        download(source, path, limits.total, limits.download_s)
    elif scheme:
        raise ConfigError(f"Bundle {shown}: unsupported scheme '{scheme}'; use a path, file://, http:// or https://.")
    else:
        path = Path(source)
    if path.is_dir():
        raise ConfigError(f"Bundle {short(str(path))} is a folder: name the bundle file in it (refs.tar).")
    if not path.is_file():
        raise ConfigError(f"Bundle {short(str(path))} does not exist.")
    if path.stat().st_size > limits.total:
        raise ConfigError(
            f"Bundle {shown} is {path.stat().st_size} bytes, over the {limits.total}-byte limit "
            "(--max-bundle-size); refused."
        )
    if sha256 is not None and file_sha256(path) != sha256.lower():
        raise ConfigError(f"Bundle {shown} does not match --sha256 {sha256.lower()[:16]}...; refused.")
    yield path


def download(url: str, dest: Path, limit: int, deadline_s: float = Limits.download_s) -> None:
    """Stream ``url`` into ``dest``, stopping as soon as the server sends more than ``limit`` bytes
    (a Content-Length over it is refused before the body is read) or the download has taken more
    than ``deadline_s`` seconds (checked after every read; each read waits at most 30 s)."""
    label = short(source_label(url))
    start = time.monotonic()
    try:
        request = authorised_request(url, {"User-Agent": "unlearnkit-import"})
        with urllib.request.urlopen(request, timeout=min(30.0, deadline_s)) as resp, open(dest, "wb") as out:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ConfigError(
                    f"Bundle {label} is {declared} bytes, over the {limit}-byte limit (--max-bundle-size); refused."
                )
            received = 0
            while chunk := resp.read(CHUNK):
                received += len(chunk)
                if received > limit:
                    raise ConfigError(
                        f"Bundle {label} sent more than the {limit}-byte limit (--max-bundle-size); refused."
                    )
                out.write(chunk)
                if time.monotonic() - start > deadline_s:
                    raise ConfigError(
                        f"Bundle {label} took longer than {deadline_s:g} s to download (--download-timeout); refused."
                    )
    except urllib.error.HTTPError as err:
        raise ConfigError(f"Bundle {label} could not be downloaded: HTTP {err.code} {err.reason}.") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        full = disk_full(err)
        if full is not None:
            raise full from None
        reason = getattr(err, "reason", err)
        raise ConfigError(f"Bundle {label} could not be downloaded ({short(str(reason), 120)}).") from None


# --------------------------------------------------------------------------- reading the tar
def open_tar(path: Path, label: str, limits: Limits) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*", tarinfo=guarded_headers(label, limits.manifest))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ConfigError(
            f"{label} is not a tar file ({type(err).__name__}); make one with unlearnkit export."
        ) from None


# the headers whose body tarfile reads into memory, whole, before the next header is even seen
SPECIAL_HEADERS = {
    tarfile.XHDTYPE: "a pax extended header",
    tarfile.SOLARIS_XHDTYPE: "a pax extended header",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.GNUTYPE_LONGNAME: "a GNU long name",
    tarfile.GNUTYPE_LONGLINK: "a GNU long link name",
}


def guarded_headers(label: str, limit: int) -> type[tarfile.TarInfo]:
    """The header class a bundle is read with. tarfile reads a pax or GNU long-name header's body
    into memory and follows chains of them by recursion, all before :func:`scan` sees a size, and
    parses sparse maps as long as the stream goes on: so each such header's declared size is held
    to ``limit`` (``--max-manifest-size``) before its body is read, the global headers together
    too, chains to :data:`MAX_CHAIN`, and sparse files (refused by :func:`scan` anyway) at once."""
    seen = {"chain": 0, "global": 0}

    def refuse(info: tarfile.TarInfo, why: str) -> ConfigError:
        return ConfigError(f"{label}: member {short(info.name)} {why}; refused.")

    class GuardedInfo(tarfile.TarInfo):
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:  # tarfile's hook for subclasses
            if self.size < 0:
                raise refuse(self, f"has a negative size ({self.size})")
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise refuse(self, "is a sparse file; a bundle holds regular files only")
            what = SPECIAL_HEADERS.get(self.type)
            seen["chain"] = 0 if what is None else seen["chain"] + 1
            if seen["chain"] > MAX_CHAIN:
                raise refuse(self, f"is {what} after {MAX_CHAIN} others in a row")
            seen["global"] += self.size if self.type == tarfile.XGLTYPE else 0
            if what is not None and (self.size > limit or seen["global"] > limit):
                over = f"of {self.size} bytes, over the {limit}-byte limit (--max-manifest-size)"
                raise refuse(self, f"is {what} {over}")
            return super()._proc_member(tar)  # type: ignore[misc]  # a hook typeshed leaves out

        def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict, tar: tarfile.TarFile) -> None:
            raise refuse(next, "is a sparse file; a bundle holds regular files only")  # its map is unbounded

    return GuardedInfo


def normal_name(name: str, label: str) -> str:
    """A member's name as a relative POSIX path without ``.`` parts; absolute or ``..`` refused."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name or not pure.parts:
        raise ConfigError(f"{label}: member {short(name)} has an unsafe path; refused.")
    return str(pure)


def scan(tar: tarfile.TarFile, label: str, limits: Limits) -> dict[str, tarfile.TarInfo]:
    """Every member's header, checked before any data is copied: regular files (and folders)
    only, each name once, each size within its limit, all of them within the total."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    count = 0
    try:
        while (info := tar.next()) is not None:
            count += 1
            if count > MAX_MEMBERS:
                raise ConfigError(f"{label} has more than {MAX_MEMBERS} members; refused.")
            if is_top_folder(info):  # `tar -C folder .` starts with ./ itself
                continue
            name = normal_name(info.name, label)
            if info.isdir():
                continue
            if not info.isreg() or info.issparse():
                kind = next(
                    (what for what, test in _KINDS if test(info)),
                    "not a regular file",
                )
                raise ConfigError(
                    f"{label}: member {short(name)} is {kind}; a bundle holds regular files only; refused."
                )
            if name in members:
                raise ConfigError(f"{label}: member {short(name)} appears twice; refused.")
            limit, flag = (
                (limits.manifest, "--max-manifest-size") if name == MANIFEST else (limits.member, "--max-member-size")
            )
            if info.size > limit:
                raise ConfigError(
                    f"{label}: member {short(name)} is {info.size} bytes, over the {limit}-byte limit "
                    f"({flag}); refused."
                )
            total += info.size
            if total > limits.total:
                raise ConfigError(
                    f"{label}: its members add up to more than the {limits.total}-byte limit "
                    f"(--max-bundle-size) at {short(name)}; refused."
                )
            members[name] = info
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ConfigError(f"{label} is damaged or truncated ({type(err).__name__}); refused.") from None
    if MANIFEST not in members:
        raise ConfigError(f"{label} is not a reference-model bundle (no {MANIFEST}); make one with unlearnkit export.")
    return members


def is_top_folder(info: tarfile.TarInfo) -> bool:
    """Whether a member is the archive's own folder (``.``, ``./``), which a repacked bundle holds."""
    return info.isdir() and info.name.startswith(".") and PurePosixPath(info.name).parts == ()


_KINDS: tuple[tuple[str, Callable[[tarfile.TarInfo], bool]], ...] = (
    ("a symlink", tarfile.TarInfo.issym),
    ("a hardlink", tarfile.TarInfo.islnk),
    ("a device", lambda i: i.ischr() or i.isblk()),
    ("a FIFO", tarfile.TarInfo.isfifo),
    ("a sparse file", tarfile.TarInfo.issparse),
)


def copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, out: IO[bytes], limit: int, label: str) -> str:
    """Copy one member's bytes (at most ``limit``) and return their sha256."""
    digest = hashlib.sha256()
    copied = 0
    src = tar.extractfile(info)
    assert src is not None  # a regular file, checked by scan
    while True:
        try:
            chunk = src.read(CHUNK)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # the bundle's fault
            raise ConfigError(
                f"{label}: member {short(info.name)} is truncated or damaged ({type(err).__name__}); refused."
            ) from None
        if not chunk:
            return digest.hexdigest()
        copied += len(chunk)
        if copied > limit:
            raise ConfigError(f"{label}: member {short(info.name)} holds more than {limit} bytes; refused.")
        digest.update(chunk)
        out.write(chunk)  # a full temp folder is the machine's, not the bundle's: see full_disk_is_one_line


def read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], label: str, limits: Limits) -> list[Any]:
    with tempfile.SpooledTemporaryFile(max_size=limits.manifest + 1) as buf:
        copy_member(tar, members[MANIFEST], buf, limits.manifest, label)
        buf.seek(0)
        try:
            doc = json.loads(buf.read())
        except (ValueError, RecursionError):  # not UTF-8, not JSON, a 5,000-digit number, nested too deep
            doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            f"{label} is not a reference-model bundle (no valid {MANIFEST}); make one with unlearnkit export."
        )
    version_problem(doc.get("version"), label)
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{label}: its manifest lists no models; refused.")
    return models


def version_problem(version: Any, label: str) -> None:
    """Refuse a manifest of another format version, saying which side to upgrade."""
    if type(version) is int and version == FORMAT_VERSION:
        return
    reads = f"this unlearnkit reads format version {FORMAT_VERSION}"
    if type(version) is not int:
        shown = "no format version" if version is None else f"the format version {json_text(version)}, not an integer"
        raise ConfigError(f"{label} has {shown}; {reads} (export it again with this unlearnkit).")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{label} has format version {version}, written by a newer unlearnkit; {reads}: upgrade "
            "unlearnkit here (pip install -U unlearnkit) to import it."
        )
    raise ConfigError(
        f"{label} has format version {version}, written by an older unlearnkit; {reads} "
        "(export it again with this unlearnkit)."
    )


def json_text(value: Any) -> str:
    """A manifest's value as JSON writes it (``"2"`` is a string, ``2`` a number), cut for one line."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = ascii(value)
    return text if len(text) <= 40 else text[:36] + "..."


# ---------------------------------------------------------------------------- checking entries
@dataclass
class Checked:
    """One model of a bundle, checked: what its run will be, every value re-derived or validated."""

    key: str
    identity: dict[str, Any]
    sha256: str
    spec: ImageSpec
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    file: Path = Path()

    @property
    def run_name(self) -> str:
        ident = self.identity
        return f"{ident['role']}-model-{self.tags[tag('dataset')]}-{ident['model']}-s{ident['seed']}"


def check_entry(raw: Any, index: int, label: str) -> Checked:
    """The manifest's entry ``index``, refused on the first thing that is not a reference model's."""
    where = f"{label}: model {index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not an object; refused.")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where} has the unknown field {short(unknown[0])}; refused.")
    key, identity = raw.get("config_hash"), raw.get("identity")
    if not isinstance(key, str) or not isinstance(identity, dict):
        raise ConfigError(f"{where} lacks its config_hash or identity; refused.")
    where = f"{label}: model {short(key, 30)}"
    if config_hash(identity) != key:
        raise ConfigError(f"{where}: its identity does not hash to its config hash; refused.")
    check_identity(identity, where)
    if raw.get("file") != member_name(key):
        raise ConfigError(f"{where}: its file must be {member_name(key)!r}, not {short(raw.get('file'))}; refused.")
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ConfigError(f"{where}: its sha256 is not 64 hexadecimal digits; refused.")
    spec = check_spec(raw.get(IMAGE_SPEC), where)
    derived = derived_tags(identity, key, sha256, where)
    tags = {**derived, **check_tags(raw.get("tags", {}), derived, where)}
    params = check_params(raw.get("params", {}), identity, spec, where)
    metrics = check_metrics(raw.get("metrics", {}), where)
    return Checked(key, identity, sha256, spec, tags, params, metrics)


def check_identity(identity: dict[str, Any], where: str) -> None:
    for name, types in IDENTITY_TYPES.items():
        value = identity.get(name, ...)
        if value is ... or not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{where}: its identity's {name!r} is missing or of the wrong type; refused.")
    for name, types in OPTIONAL_IDENTITY.items():
        if name in identity and (not isinstance(identity[name], types) or isinstance(identity[name], bool)):
            raise ConfigError(f"{where}: its identity's {name!r} is of the wrong type; refused.")
    if identity["role"] not in REFERENCE_ROLES:
        raise ConfigError(
            f"{where} is a {short(identity['role'])} model; a bundle carries only "
            f"{' and '.join(REFERENCE_ROLES)} models; refused."
        )
    if not isinstance(identity["train_recipe"].get("train.name"), str):
        raise ConfigError(f"{where}: its identity names no training recipe; refused.")
    check_train_recipe(identity["train_recipe"], where)
    if PLUGIN_VERSION.match(identity["dataset"]) is None:
        raise ConfigError(f"{where}: its identity names no dataset plugin; refused.")


def check_train_recipe(recipe: dict[str, Any], where: str) -> None:
    """The identity's training recipe is what :meth:`TrainRecipe.as_params` gives: ``train.FIELD``
    keys of its fields only, each of the field's type, so no other param (``role``, ``seed``,
    ``mlflow.*``) reaches the run through it."""
    from pydantic import ValidationError

    from unlearnkit.loops.training import TrainRecipe

    fields = {}
    for key, value in recipe.items():
        name = key.removeprefix("train.")
        if not key.startswith("train.") or name not in TrainRecipe.model_fields:
            valid = ", ".join(f"train.{f}" for f in TrainRecipe.model_fields)
            raise ConfigError(
                f"{where}: its training recipe has the unknown key {short(key)} (valid: {valid}); refused."
            )
        fields[name] = value  # NaN and infinity too: TrainRecipe refuses them (allow_inf_nan=False)
    try:
        TrainRecipe.model_validate(fields, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        key = f"train.{first['loc'][0]}" if first["loc"] else "fields"
        detail = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"{where}: its training recipe's {short(key)} is not valid ({short(detail, 100)}); refused."
        ) from None


def check_spec(raw: Any, where: str) -> ImageSpec:
    try:
        spec = parse_image_spec(json.dumps(raw))
    except (ValueError, TypeError):
        spec = None
    if spec is None:
        raise ConfigError(
            f"{where}: its {IMAGE_SPEC} is not channels, height, width and num_classes (1-65536); refused."
        )
    return spec


def derived_tags(identity: dict[str, Any], key: str, sha256: str, where: str) -> dict[str, str]:
    """The tags an imported run gets from its identity alone (the same a trained run carries)."""
    found = PLUGIN_VERSION.match(identity["dataset"])
    assert found is not None  # checked by check_identity
    subset = identity["subset"]
    tags = {
        "run_type": "train",
        "role": identity["role"],
        "config_hash": key,
        "checkpoint_sha256": sha256,
        "dataset": found.group("name"),
        "model": identity["model"],
        "seed": str(identity["seed"]),
        "subset": str(subset) if subset is not None else "full",
        "train_recipe": identity["train_recipe"]["train.name"],
    }
    if "world_size" in identity:
        tags["world_size"] = str(identity["world_size"])
    for name, value in tags.items():
        if not valid_tag(name, value):
            raise ConfigError(f"{where}: its {name} {short(value)} is not a valid {TAGS[name].kind}; refused.")
    return {tag(k): v for k, v in tags.items()}


def check_tags(raw: Any, derived: dict[str, str], where: str) -> dict[str, str]:
    """The bundle's own tags: each one re-derived (and then it must agree) or descriptive (and then
    of its declared kind); any other key, ``mlflow.*`` included, refuses the bundle."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: its tags are not an object; refused.")
    kept: dict[str, str] = {}
    allowed = {tag(k): k for k in (*DERIVED_TAGS, *DESCRIPTIVE_TAGS)}
    for name, value in raw.items():
        bare = allowed.get(name)
        if bare is None:
            raise ConfigError(f"{where}: the tag {short(name)} is not one a reference model may bring; refused.")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: the tag {short(name)} is not a string; refused.")
        if name in derived or bare in DERIVED_TAGS:
            if derived.get(name) != value:
                raise ConfigError(
                    f"{where}: the tag {short(name)} is {short(value)}, but its identity says "
                    f"{short(derived.get(name, '(none)'))}; refused."
                )
        elif not valid_tag(bare, value):
            raise ConfigError(f"{where}: the tag {short(name)} is not a valid {TAGS[bare].kind}; refused.")
        else:
            kept[name] = value
    return kept


def valid_tag(name: str, value: str) -> bool:
    """Whether ``value`` is of the kind :data:`unlearnkit.store.tags.TAGS` declares for ``name``."""
    kind = TAGS[name].kind
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        return False
    if kind == "int":
        return re.fullmatch(r"-?\d{1,18}", value) is not None
    if kind == "hash":
        return HEX.fullmatch(value) is not None
    if kind == "float":
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return kind == "text"


def check_params(raw: Any, identity: dict[str, Any], spec: ImageSpec, where: str) -> dict[str, Any]:
    """The run's params: role, seed, the training recipe and the input re-derived; ``images`` checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: its params are not an object; refused.")
    params: dict[str, Any] = {  # the recipe first: nothing of it may stand for a reserved param
        **{k: v for k, v in identity["train_recipe"].items() if k not in RESERVED_PARAMS},
        "role": identity["role"],
        "seed": identity["seed"],
        IMAGE_SPEC: image_spec_text(spec),
    }
    for name, value in raw.items():
        if name not in PARAMS:
            raise ConfigError(f"{where}: the param {short(name)} is not one a reference model may bring; refused.")
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"\d{1,12}", str(value)):
            raise ConfigError(f"{where}: the param {short(name)} is not a count of images; refused.")
        params[name] = int(value)
    return params


def check_metrics(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: its metrics are not an object; refused.")
    metrics = {}
    for name, value in raw.items():
        if name not in METRICS:
            raise ConfigError(f"{where}: the metric {short(name)} is not one a reference model may bring; refused.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: its {name} {short(value)} is not a finite number of seconds; refused.")
        metrics[name] = float(value)
    return metrics


def check_weights(entry: Checked, registries: Registries, label: str) -> None:
    """Read the checkpoint weights-only and strict-load it into the model its identity names,
    built by this machine's plugins for the entry's input: a file that does not load is refused."""
    import torch

    from unlearnkit.api.weights import state_dict_mismatches

    where = f"{label}: the checkpoint of model {entry.key}"
    try:
        with warnings.catch_warnings():  # torch's hints about the file are not for this user: one line says it
            warnings.simplefilter("ignore")
            state = torch.load(entry.file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle, a torn or legacy file: the file's fault, named in one line
        detail = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"{where} does not load as weights only ({type(err).__name__}: {short(detail, 100)}); refused."
        ) from None
    if not (
        isinstance(state, dict)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise ConfigError(f"{where} does not hold a state dict of tensors; refused.")
    net = build_named_model(entry, registries, where)
    own = net.state_dict()
    problems = state_dict_mismatches(own, state, set())
    if problems:
        raise ConfigError(f"{where} does not fit model {short(entry.identity['model'])}: {problems[0]}; refused.")
    for key, value in state.items():
        problem = tensor_problem(value, own[key])
        if problem is not None:
            raise ConfigError(f"{where}: its tensor {short(key)} {problem}; refused.")
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as err:
        detail = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"{where} does not load into model {short(entry.identity['model'])} ({short(detail, 100)}); refused."
        ) from None


def tensor_problem(value: Any, own: Any) -> str | None:
    """What makes a checkpoint's tensor unfit to stand for a trained model's (None if nothing):
    not a dense CPU tensor, of another kind of number than the model's (complex for float), or,
    floating, holding NaN or inf: a diverged model would be reused as a FINISHED reference."""
    import torch

    if value.layout is not torch.strided or value.is_quantized or value.device.type != "cpu":
        return "is not a dense tensor"
    if number_kind(value) != number_kind(own):
        return (
            f"is {str(value.dtype).removeprefix('torch.')}, but the model's is {str(own.dtype).removeprefix('torch.')}"
        )
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        return "holds NaN or infinite values"
    return None


def number_kind(value: Any) -> str:
    import torch

    if value.is_complex():
        return "complex"
    if value.is_floating_point():
        return "float"
    return "bool" if value.dtype == torch.bool else "integer"


def build_named_model(entry: Checked, registries: Registries, where: str) -> Any:
    """The architecture the identity names, with this machine's plugin. A model built on
    pretrained or given weights gets the checkpoint itself as its weights file: the same
    architecture, and no download of weights the checkpoint replaces anyway."""
    identity = entry.identity
    try:
        model, variant = registries.model(identity["model"])
        options = model.cls.parse_options(identity["model_options"])
        needs_file = identity["pretrained"] or identity["weights"] is not None
        obj = model.cls(
            options, variant=variant, pretrained=identity["pretrained"], weights=entry.file if needs_file else None
        )
        return obj.build(entry.spec).cpu()
    except UnlearnkitError as err:
        raise ConfigError(
            f"{where} cannot be checked with this machine's plugins ({err}): install the model's plugin "
            "or pass --plugins-dir."
        ) from None
    except Exception as err:  # noqa: BLE001 - the plugin could not build what the identity names
        raise ConfigError(
            f"{where} cannot be checked: model {short(identity['model'])} does not build "
            f"({type(err).__name__}: {short(str(err), 100)}); refused."
        ) from None


# ------------------------------------------------------------------------------------- import
def import_bundle(
    store: Store,
    source: str | Path,
    registries: Registries,
    *,
    limits: Limits = Limits(),
    sha256: str | None = None,
    trust_times: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> BundleReport:
    """Check every model of the bundle (headers, sizes, manifest, tags, identities, checksums,
    weights), then add the ones the store does not have yet, all or none. Models whose identity
    names another core or plugin than this machine's runs do are said through ``warn``: imported,
    but never reused here."""
    source = str(source)
    label = f"Bundle {short(source_label(source))}"
    with tempfile.TemporaryDirectory(prefix="unlearnkit-import-") as tmp:
        with (
            full_disk_is_one_line(),
            fetched(source, limits, sha256, Path(tmp)) as path,
            open_tar(path, label, limits) as tar,
        ):
            members = scan(tar, label, limits)
            entries = [check_entry(raw, i, label) for i, raw in enumerate(read_manifest(tar, members, label, limits))]
            check_members(entries, members, label)
            for entry in entries:  # every byte checked before anything is written
                entry.file = Path(tmp) / entry.key / "model.pt"  # the name every store reads a checkpoint by
                entry.file.parent.mkdir()
                with open(entry.file, "wb") as out:
                    digest = copy_member(tar, members[member_name(entry.key)], out, limits.member, label)
                if digest != entry.sha256:
                    raise ConfigError(f"{label}: the checkpoint of model {entry.key} fails its sha256 check; refused.")
                check_weights(entry, registries, label)
        store.check()  # only now: a refused bundle leaves no new store behind
        report = BundleReport(len(entries), source=shown_source(source))
        todo = []
        untrusted = 0
        for entry in entries:
            found = store.find_finished("train", entry.key)
            if found is None:
                todo.append(entry)
                continue
            report.present += 1
            untrusted += found.tag("imported_times") == "untrusted"
        publish(store, todo, source_label(source), trust_times)
        report.added = len(todo)
    for line in reuse_problems(entries, registries, label):  # once the import is done: a refused one says one line
        warn(line)
    if trust_times and untrusted:  # an import again with --trust-times does not rewrite the runs already there
        warn(
            f"{label}: {untrusted} of its models were already in the store, imported with untrusted times, and "
            "keep them: --trust-times applies only to the models an import adds."
        )
    return report


def reuse_problems(entries: list[Checked], registries: Registries, label: str) -> list[str]:
    """Why runs on this machine would never reuse some of the bundle's models, one line per cause: their
    identity names a core version or a plugin (package, ``--plugins-dir`` folder as typed, version) that
    this machine's runs do not, so a run here hashes to another config and trains its own model. The
    import is still valid (the weights load), but said beforehand, not found out after a retraining."""
    counts: dict[tuple[tuple[str, str, str], ...], int] = {}
    for entry in entries:
        differ = tuple(part for part in identity_sources(entry.identity, registries) if part[1] != part[2])
        if differ:
            counts[differ] = counts.get(differ, 0) + 1
    return [
        f"{label}: {n} of its {len(entries)} models name "
        + "; ".join(f"the {what} {short(theirs, 120)} (here: {short(ours, 120)})" for what, theirs, ours in differ)
        + ": a run here trains its own instead of reusing them (runs reuse them with the same unlearnkit and "
        "plugin versions, and --plugins-dir given exactly as the exporter gave it)."
        for differ, n in counts.items()
    ]


def identity_sources(identity: dict[str, Any], registries: Registries) -> list[tuple[str, str, str]]:
    """``(what, the identity's value, this machine's value)`` for the parts of a model's identity that
    depend on the machine rather than on the benchmark asked for: the core's version and the plugins."""
    found = PLUGIN_VERSION.match(identity["dataset"])
    assert found is not None  # checked by check_identity
    name = found.group("name")
    dataset = plugin_version(registries.datasets.get(name)) if name in registries.datasets else "(not installed)"
    model = plugin_version(registries.model(identity["model"])[0])  # built by check_weights: it resolves
    return [
        ("core version", str(identity["core"]), str(CORE_VERSION)),
        ("dataset plugin", identity["dataset"], dataset),
        ("model plugin", identity["model_plugin"], model),
    ]


def full_disk_is_one_line() -> AbstractContextManager[None]:
    """A temp folder that fills up while the bundle is copied: the CLI's one line for a full disk."""
    return translated(OSError, disk_full)


def check_members(entries: list[Checked], members: dict[str, tarfile.TarInfo], label: str) -> None:
    """Exactly the manifest and one checkpoint per model: nothing missing, nothing unlisted."""
    wanted = [member_name(e.key) for e in entries]
    if len(set(wanted)) != len(wanted):
        twice = next(name for name in wanted if wanted.count(name) > 1)
        raise ConfigError(f"{label}: the manifest lists {short(twice)} twice; refused.")
    missing = [name for name in wanted if name not in members]
    if missing:
        raise ConfigError(f"{label}: member {short(missing[0])} is listed in the manifest but absent; refused.")
    extra = sorted(set(members) - set(wanted) - {MANIFEST})
    if extra:
        raise ConfigError(f"{label}: member {short(extra[0])} is not listed in the manifest; refused.")


def publish(store: Store, entries: list[Checked], label: str, trust_times: bool) -> None:
    """Write the checked models as finished training runs, all or none. A run is untyped until it
    is finished, so a crash midway leaves nothing a claim or a leaderboard would ever see; any
    failure deletes the runs written so far."""
    created: list[tuple[str, Checked]] = []
    try:
        for entry in entries:
            run_id = store.start_run(entry.run_name, {tag("imported_from"): label}, entry.params)
            created.append((run_id, entry))
            store.log_file(run_id, entry.file, "checkpoint")
            store.log_text(run_id, identity_json(entry.identity), "identity.json")
            store.log_metrics(run_id, entry.metrics)
            store.finish(run_id)
        for run_id, entry in created:  # each run appears complete, in one write
            times = "trusted" if trust_times else "untrusted"
            store.set_tags(run_id, {**entry.tags, tag("imported_from"): label, tag("imported_times"): times})
    except BaseException as err:
        for run_id, _ in created:
            try:
                store.delete_run(run_id)
            except Exception:  # noqa: BLE001, S110 - best effort: an untyped run is invisible anyway
                pass
        if isinstance(err, Exception) and not isinstance(err, UnlearnkitError):
            full = disk_full(err)
            if full is not None:
                raise full from None
            detail = (str(err).strip().splitlines() or [""])[0]
            raise StoreError(
                f"Import failed while writing to {store.shown_uri} ({type(err).__name__}: {short(detail, 120)}); "
                "nothing was imported."
            ) from None
        raise


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BundleReport",
    "Limits",
    "export_bundle",
    "import_bundle",
    "nothing_to_export",
    "parse_size",
    "reference_runs",
]
