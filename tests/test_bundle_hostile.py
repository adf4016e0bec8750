"""Hostile bundles: every malformed or forged bundle ends as one line, exit 2, no traceback,
nothing in the store and nothing left in the temp folder; no payload runs. The bundles are built
here, byte by byte, around one valid pair of tiny_cnn reference models (no training needed).

The manifest is written in the format version of the code under test, so the same cases also
run against an older import (they name what the old code let through)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shlex
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.invoke import invoke
from unlearnkit.api.types import ImageSpec
from unlearnkit.identity import config_hash

SPEC = ImageSpec(channels=1, height=8, width=8, num_classes=3)


def checkpoint(state: object) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def tiny_state() -> dict[str, torch.Tensor]:
    from unlearnkit.testing import TinyModel

    return TinyModel().build(SPEC).state_dict()


def identity(role: str, seed: int = 1) -> dict:
    return {
        "core": 2,
        "dataset": "local:tiny@None",
        "dataset_options": {"classes": 3},
        "data": "0123456789abcdef0123",
        "model": "tiny_cnn",
        "model_plugin": "local:tiny_cnn@None",
        "model_options": {},
        "pretrained": False,
        "weights": None,
        "subset": None,
        "train_recipe": {"train.name": "fast", "train.epochs": 3},
        "role": role,
        "seed": seed,
        "train_indices": f"{role}{seed}".ljust(20, "0"),
    }


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes = b""


@dataclass
class Bundle:
    """A bundle under construction: its manifest's entries and its tar members, in order."""

    entries: list[dict] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)  # config hash -> checkpoint bytes
    extra: list[Member] = field(default_factory=list)  # members added after the checkpoints
    manifest_text: bytes | None = None  # replaces the manifest built from ``entries``

    def add(self, ident: dict, blob: bytes) -> dict:
        from unlearnkit.engine import bundles

        key = config_hash(ident)
        digest = _sha256(blob)
        entry = {
            "config_hash": key,
            "identity": ident,
            "file": f"models/{key}.pt",
            "sha256": digest,
            "image_spec": {"channels": 1, "height": 8, "width": 8, "num_classes": 3},
            "tags": {
                "unlearnkit.run_type": "train",
                "unlearnkit.role": ident["role"],
                "unlearnkit.config_hash": key,
                "unlearnkit.checkpoint_sha256": digest,
                "unlearnkit.dataset": "tiny",
                "unlearnkit.model": "tiny_cnn",
                "unlearnkit.seed": str(ident["seed"]),
            },
            "params": {"images": 120},
            "metrics": {"train_time_s": 1.5},
        }
        if bundles.FORMAT_VERSION == 1:  # what the older import reads besides (it ignores image_spec)
            entry["name"] = f"{ident['role']}-model-tiny-tiny_cnn-s{ident['seed']}"
        self.entries.append(entry)
        self.blobs[key] = blob
        return entry

    def manifest(self) -> bytes:
        from unlearnkit.engine import bundles

        if self.manifest_text is not None:
            return self.manifest_text
        doc = {"format": bundles.FORMAT, "version": bundles.FORMAT_VERSION, "models": self.entries}
        return json.dumps(doc).encode()

    def members(self) -> list[Member]:
        out = [file_member("manifest.json", self.manifest())]
        out += [file_member(f"models/{key}.pt", blob) for key, blob in self.blobs.items()]
        return out + self.extra

    def write(self, path: Path) -> Path:
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for m in self.members():
                tar.addfile(m.info, io.BytesIO(m.data) if m.data else None)  # None: a header alone
        return path


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def file_member(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return Member(info, data)


def special_member(name: str, kind: bytes, link: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return Member(info)


def pair() -> Bundle:
    """The control: a valid original and retrained model."""
    b = Bundle()
    b.add(identity("original"), checkpoint(tiny_state()))
    b.add(identity("retrained"), checkpoint(tiny_state()))
    return b


class Evil:
    """Unpickling this would run a shell command that leaves a marker file."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def with_payload(marker: Path) -> Bundle:
    Evil.marker = str(marker)
    b = Bundle()
    b.add(identity("original"), checkpoint({"0.weight": Evil()}))
    return b


def edit_first(edit: Callable[[dict], None]) -> Callable[[Path], Bundle]:
    def make(_: Path) -> Bundle:
        b = pair()
        edit(b.entries[0])
        return b

    return make


def forged_unlearn(entry: dict) -> None:
    entry["tags"].update(
        {"unlearnkit.run_type": "unlearn", "unlearnkit.method": "lotus", "unlearnkit.code": "evilcode"}
    )
    entry["metrics"].update({"acc_forget": 0.0, "acc_retain": 1.0})


def legacy_archive() -> bytes:
    """A file in torch's legacy tar layout (``storages``, ``tensors``, ``pickle``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            data = b"\x80\x02}q\x00."
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def one_model(blob: bytes) -> Callable[[Path], Bundle]:
    def make(_: Path) -> Bundle:
        b = Bundle()
        b.add(identity("original"), blob)
        return b

    return make


def plus(*members: Callable[[Bundle], Member]) -> Callable[[Path], Bundle]:
    def make(_: Path) -> Bundle:
        b = pair()
        b.extra += [m(b) for m in members]
        return b

    return make


def linked_second(kind: bytes) -> Callable[[Path], Bundle]:
    """The second model's member is a link to the first model's file (same bytes: both verify)."""

    def make(_: Path) -> Bundle:
        b = pair()
        first, second = (e["file"] for e in b.entries)
        b.blobs.pop(b.entries[1]["config_hash"])
        digest = _sha256(b.blobs[b.entries[0]["config_hash"]])
        b.entries[1]["sha256"] = b.entries[1]["tags"]["unlearnkit.checkpoint_sha256"] = digest
        b.extra.append(special_member(second, kind, first))
        return b

    return make


def oversized_header(b: Bundle) -> Member:
    info = tarfile.TarInfo(b.entries[0]["file"])
    info.size = 3 << 29  # 1.5 GiB declared, none of it sent
    return Member(info)


def oversized_member_bundle(_: Path) -> Bundle:
    b = pair()
    b.blobs.pop(b.entries[0]["config_hash"])
    b.extra.append(oversized_header(b))
    return b


def big_manifest(_: Path) -> Bundle:
    b = pair()
    b.manifest_text = b.manifest() + b" " * (1 << 20)
    return b


def manifest_of(doc: object) -> Callable[[Path], Bundle]:
    def make(_: Path) -> Bundle:
        b = pair()
        b.manifest_text = json.dumps(doc).encode()
        return b

    return make


def raw_manifest(text: bytes) -> Callable[[Path], Bundle]:
    def make(_: Path) -> Bundle:
        b = pair()
        b.manifest_text = text
        return b

    return make


def current(models: object) -> dict:
    from unlearnkit.engine import bundles

    return {"format": bundles.FORMAT, "version": bundles.FORMAT_VERSION, "models": models}


def same_model_twice(_: Path) -> Bundle:
    b = pair()
    b.entries.append(dict(b.entries[0]))
    return b


def reidentified(ident: dict) -> Callable[[dict], None]:
    """Give an entry another identity, with its hash, tag and file name made to agree."""

    def edit(entry: dict) -> None:
        key = config_hash(ident)
        entry.update(identity=ident, config_hash=key, file=f"models/{key}.pt")
        entry["tags"]["unlearnkit.config_hash"] = key

    return edit


def renamed_first(edit: Callable[[dict], None]) -> Callable[[Path], Bundle]:
    """``edit_first``, with the first checkpoint's member renamed to the entry's new file name."""

    def make(_: Path) -> Bundle:
        b = pair()
        old = b.entries[0]["config_hash"]
        edit(b.entries[0])
        b.blobs = {b.entries[0]["config_hash"] if k == old else k: v for k, v in b.blobs.items()}
        return b

    return make


def duplicated_member(_: Path) -> Bundle:
    b = pair()
    key = b.entries[0]["config_hash"]
    b.extra.append(file_member(f"models/{key}.pt", b.blobs[key]))  # the same bytes again: both copies verify
    return b


def two_manifests(_: Path) -> Bundle:
    b = pair()
    shown = b.manifest()
    b.extra.append(file_member("manifest.json", shown))
    return b


def raw_file(data: bytes) -> Callable[[Path], bytes]:
    return lambda _: data


def cut(mode: str) -> Callable[[Path], bytes]:
    """The control bundle (``w`` plain, ``w:gz`` compressed) cut off inside its last checkpoint."""

    def make(tmp: Path) -> bytes:
        path = tmp / "whole.tar"
        with tarfile.open(path, mode) as tar:
            for m in pair().members():
                tar.addfile(m.info, io.BytesIO(m.data))
        data = path.read_bytes()
        return data[: len(data) * 3 // 4]

    return make


def filled(value: complex | float, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tiny model's weights with its first floating tensor filled with ``value`` (and cast)."""
    state = tiny_state()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full(state[key].shape, value, dtype=dtype or state[key].dtype)
    return state


def recipe_with(**extra: object) -> dict:
    """The original's identity, its training recipe extended with ``extra``."""
    ident = identity("original")
    return {**ident, "train_recipe": {**ident["train_recipe"], **extra}}


def raw_header(name: str, kind: bytes, size: int) -> bytes:
    """One tar header of type ``kind`` declaring ``size`` bytes; its body, if any, is the caller's."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(tarfile.GNU_FORMAT)  # GNU: a negative size is written too (base-256)


def pax_body(**records: str) -> bytes:
    """A pax header's records ("LEN key=value\n", LEN counting itself), padded to whole blocks."""
    out = b""
    for key, value in records.items():
        rest = f" {key}={value}\n".encode()
        size = len(rest)
        while len(str(size)) + len(rest) != size:
            size = len(str(size)) + len(rest)
        out += str(size).encode() + rest
    return out + b"\0" * (-len(out) % 512)


def pax_member(**records: str) -> bytes:
    """A pax extended header with these records, for the member after it."""
    body = pax_body(**records)
    return raw_header("././@PaxHeader", tarfile.XHDTYPE, len(body)) + body


def sparse_header(name: str) -> bytes:
    """An old GNU sparse header that says more sparse blocks follow (and none do)."""
    buf = bytearray(raw_header(name, tarfile.GNUTYPE_SPARSE, 0))
    buf[482] = 1  # isextended
    buf[148:156] = b" " * 8
    buf[148:155] = b"%06o\0" % sum(buf)
    return bytes(buf)


def before_pair(raw: bytes) -> Callable[[Path], bytes]:
    """The control bundle's bytes with ``raw`` (headers of the caller's making) in front."""
    return lambda tmp: raw + pair().write(tmp / "control.tar").read_bytes()


def zip_file(_: Path) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", "{}")
    return buf.getvalue()


# case id -> (bundle maker, a fragment of the one error line)
CASES: dict[str, tuple[Callable[[Path], Bundle | bytes], str]] = {
    "forged-unlearn-entry": (edit_first(forged_unlearn), "'unlearnkit.run_type' is 'unlearn'"),
    "unlearn-identity": (renamed_first(reidentified(identity("lotus"))), "is a 'lotus' model"),
    "forged-identity-field": (
        renamed_first(reidentified({**identity("original"), "model": 7})),
        "identity's 'model' is missing or of the wrong type",
    ),
    "mlflow-tag": (edit_first(lambda e: e["tags"].update({"mlflow.note.content": "<b>x</b>"})), "mlflow.note"),
    "heartbeat-tag": (edit_first(lambda e: e["tags"].update({"unlearnkit.heartbeat": "inf"})), "heartbeat"),
    "pid-host-tags": (edit_first(lambda e: e["tags"].update({"unlearnkit.pid": "1"})), "unlearnkit.pid"),
    "forged-seed-tag": (edit_first(lambda e: e["tags"].update({"unlearnkit.seed": "7"})), "its identity says '1'"),
    "forged-train-time": (edit_first(lambda e: e["metrics"].update(train_time_s=-3600.0)), "train_time_s"),
    "invented-metric": (edit_first(lambda e: e["metrics"].update(acc_forget=0.0)), "acc_forget"),
    "long-param": (edit_first(lambda e: e["params"].update(lr="9" * 10_000)), "the param 'lr'"),
    "pickle-payload": (lambda tmp: with_payload(tmp / "MARKER"), "does not load as weights only"),
    "raw-pickle": (one_model(__import__("pickle").dumps({"a": 1}) + b"junk"), "does not load as weights only"),
    "truncated-checkpoint": (one_model(checkpoint(tiny_state())[:1500]), "does not load as weights only"),
    "wrong-architecture": (one_model(checkpoint(nn.Linear(4, 2).state_dict())), "does not fit model 'tiny_cnn'"),
    "legacy-archive": (one_model(legacy_archive()), "does not load as weights only"),
    "not-a-state-dict": (one_model(checkpoint([torch.zeros(2)])), "state dict of tensors"),
    "two-manifests": (two_manifests, "'manifest.json' appears twice"),
    "symlink-to-sibling": (linked_second(tarfile.SYMTYPE), "is a symlink"),
    "hardlink-to-sibling": (linked_second(tarfile.LNKTYPE), "is a hardlink"),
    "symlink-absolute": (plus(lambda b: special_member("etc", tarfile.SYMTYPE, "/etc/hostname")), "is a symlink"),
    "device": (plus(lambda b: special_member("dev/null", tarfile.CHRTYPE)), "is a device"),
    "fifo": (plus(lambda b: special_member("pipe", tarfile.FIFOTYPE)), "is a FIFO"),
    "dotdot-unlisted": (plus(lambda b: file_member("../../evil.sh", b"#!/bin/sh\n")), "unsafe path"),
    "dotdot-listed": (edit_first(lambda e: e.update(file="../../x.pt")), "../../x.pt"),
    "unlisted-member": (plus(lambda b: file_member("notes.txt", b"hello")), "'notes.txt' is not listed"),
    "oversized-member-header": (oversized_member_bundle, "over the 1073741824-byte limit"),
    "oversized-manifest": (big_manifest, "over the 1048576-byte limit"),
    "duplicate-member": (duplicated_member, "appears twice"),
    "same-model-twice": (same_model_twice, "lists 'models/"),
    "truncated-tar": (cut("w"), "truncated"),
    "truncated-gz": (cut("w:gz"), "truncated"),
    "empty-file": (raw_file(b""), "is not a tar file"),
    "random-bytes": (raw_file(bytes(range(256)) * 40), "is not a tar file"),
    "zip": (zip_file, "is not a tar file"),
    "manifest-a-list": (manifest_of([1, 2]), "not a reference-model bundle"),
    "manifest-5000-digits": (raw_manifest(b'{"version": ' + b"9" * 5000 + b"}"), "not a reference-model bundle"),
    "manifest-nested-deep": (raw_manifest(b"[" * 100_000), "not a reference-model bundle"),
    "manifest-without-models": (manifest_of(current(None)), "lists no models"),
    "models-a-string": (manifest_of(current("abc")), "lists no models"),
    "models-of-ints": (manifest_of(current([1])), "is not an object"),
    "tags-a-string": (edit_first(lambda e: e.update(tags="x")), "its tags are not an object"),
    "entry-without-file": (edit_first(lambda e: e.pop("file")), "its file must be"),
    "no-image-spec": (edit_first(lambda e: e.pop("image_spec", None)), "image_spec"),
    # params: the identity's training recipe is the run's train.* params, so it may hold nothing else
    "train-recipe-sets-role-and-seed": (
        renamed_first(reidentified(recipe_with(role="unlearn", seed=42))),
        "its training recipe has the unknown key 'role' (valid: train.name,",
    ),
    "train-recipe-mlflow-param": (
        renamed_first(reidentified(recipe_with(**{"mlflow.runName": "pwn"}))),
        "has the unknown key 'mlflow.runName'",
    ),
    "train-recipe-unknown-field": (
        renamed_first(reidentified(recipe_with(**{"train.zzz": "x"}))),
        "has the unknown key 'train.zzz'",
    ),
    "train-recipe-wrong-type": (
        renamed_first(reidentified(recipe_with(**{"train.epochs": "3"}))),
        "its training recipe's 'train.epochs' is not valid",
    ),
    # weights that would be reused as a finished reference model, with the right sha256
    "nan-weights": (one_model(checkpoint(filled(float("nan")))), "holds NaN or infinite values"),
    "inf-weights": (one_model(checkpoint(filled(float("-inf")))), "holds NaN or infinite values"),
    "complex-weights": (
        one_model(checkpoint(filled(1 + 2j, torch.complex64))),
        "is complex64, but the model's is float32",
    ),
    "integer-weights": (one_model(checkpoint(filled(3, torch.int64))), "is int64, but the model's is float32"),
    # tar headers that tarfile itself would follow before any size is checked
    "pax-chain": (
        before_pair(raw_header("././@PaxHeader", tarfile.XHDTYPE, 0) * 500),  # recursion, once per header
        "is a pax extended header after 8 others in a row",
    ),
    "gnu-sparse-extended": (before_pair(sparse_header("models/x.pt")), "'models/x.pt' is a sparse file"),
    "pax-sparse-map": (  # GNU sparse 1.0: its map is read from the next member's data, for as long as it goes
        before_pair(pax_member(**{"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})),
        "'manifest.json' is a sparse file",
    ),
    "negative-size-pax": (  # tarfile would read(-N): the whole rest of the file, into memory
        before_pair(raw_header("././@PaxHeader", tarfile.XHDTYPE, -(1 << 20))),
        "'././@PaxHeader' has a negative size (-1048576)",
    ),
}


def store_runs() -> int:
    """Every run row of the store, deleted ones included."""
    db = Path(os.environ["UNLEARNKIT_STORE"]) / "mlflow.db"
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        con.close()


def write(made: Bundle | bytes, path: Path) -> Path:
    if isinstance(made, Bundle):
        return made.write(path)
    path.write_bytes(made)
    return path


def test_the_control_bundle_imports(host, capsys, tmp_path, temp_dir):
    path = write(pair(), tmp_path / "good.tar")
    code, out, err = invoke(["import", str(path)], capsys)
    assert code == 0 and "Imported 2 of 2 reference models" in out, err
    assert store_runs() == 2
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_bundle_is_one_line_and_writes_nothing(host, capsys, tmp_path, temp_dir, case):
    make, fragment = CASES[case]
    path = write(make(tmp_path), tmp_path / "hostile.tar")
    code, _, err = invoke(["import", str(path)], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("Error") and fragment in lines[0], err
    assert store_runs() == 0  # not even a deleted run: everything was refused before the first write
    assert list(temp_dir.iterdir()) == []
    assert not (tmp_path / "MARKER").exists()  # no payload ran


def active_runs() -> int:
    db = Path(os.environ["UNLEARNKIT_STORE"]) / "mlflow.db"
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'").fetchone()[0]
    finally:
        con.close()


def test_a_failure_while_writing_leaves_no_run(host, capsys, tmp_path, temp_dir, monkeypatch):
    """All or nothing: the second model's write fails, so the first one's run goes too."""
    from unlearnkit.store.mlflow_store import Store

    real = Store.log_text
    calls = []

    def failing(self, run_id, text, name):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real(self, run_id, text, name)

    monkeypatch.setattr(Store, "log_text", failing)
    path = write(pair(), tmp_path / "good.tar")
    code, _, err = invoke(["import", str(path)], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "nothing was imported" in lines[0], err
    assert len(calls) == 2 and active_runs() == 0  # the first run, finished by then, was deleted as well
    assert list(temp_dir.iterdir()) == []


# ------------------------------------------------------------------------------ over HTTP
class Handler(SimpleHTTPRequestHandler):
    """Serves the test's folder; ``/flood`` sends 3 MiB without a Content-Length (close-delimited)."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        if self.path == "/drip":  # a server that keeps sending, slowly: 1 KiB every 0.1 s for 4 s
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client hung up
                pass
            return None
        if self.path != "/flood":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.end_headers()
        try:
            for _ in range(48):
                self.wfile.write(b"\0" * (64 << 10))
        except OSError:  # the client hung up at its limit, as it should: not an error to report on stderr
            pass
        return None

    def log_message(self, *args):  # quiet
        pass


@contextmanager
def serving(www: Path, handler: type[SimpleHTTPRequestHandler]) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 serving ``www`` through ``handler``, in a thread: its port."""
    import functools
    import threading

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "www"``, in a thread."""
    www = tmp_path / "www"
    www.mkdir()
    with serving(www, Handler) as port:
        yield www, f"http://127.0.0.1:{port}"


def test_a_bundle_imports_from_a_url_pinned_by_its_sha256(host, capsys, tmp_path, temp_dir, server):
    www, base = server
    path = write(pair(), www / "refs.tar")
    code, out, err = invoke(["import", f"{base}/refs.tar", "--sha256", _sha256(path.read_bytes())], capsys)
    assert code == 0 and "Imported 2 of 2 reference models" in out, err
    assert store_runs() == 2
    assert list(temp_dir.iterdir()) == []
    from unlearnkit.store.mlflow_store import Store

    labels = {r.tag("imported_from") for r in Store().search({"run_type": "train"})}
    assert labels == {f"{base}/refs.tar"}


def test_a_file_url_is_a_local_bundle(host, capsys, tmp_path, temp_dir):
    path = write(pair(), tmp_path / "refs.tar")
    code, out, err = invoke(["import", path.as_uri()], capsys)
    assert code == 0 and "Imported 2 of 2" in out, err


@pytest.mark.parametrize(
    "name, extra, fragment",
    [
        ("refs.tar", ["--sha256", "0" * 64], "does not match --sha256"),
        ("refs.tar", ["--max-bundle-size", "4KiB"], "bytes, over the 4096-byte limit"),  # its Content-Length
        ("flood", ["--max-bundle-size", "1MiB"], "sent more than the 1048576-byte limit"),
        ("missing.tar", [], "HTTP 404"),
        ("drip", ["--download-timeout", "1"], "took longer than 1 s to download (--download-timeout)"),
    ],
    ids=["wrong-sha256", "content-length-over-limit", "stream-over-limit", "not-found", "slow-drip-past-deadline"],
)
def test_a_url_bundle_is_refused_before_anything_is_written(
    host, capsys, tmp_path, temp_dir, server, name, extra, fragment
):
    www, base = server
    write(pair(), www / "refs.tar")
    code, _, err = invoke(["import", f"{base}/{name}", *extra], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert store_runs() == 0
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize(
    "flag, value", [("--max-member-size", "1GB?"), ("--max-bundle-size", "-1"), ("--sha256", "abc")]
)
def test_bad_limit_or_checksum_flags_are_one_line(host, capsys, tmp_path, flag, value):
    path = write(pair(), tmp_path / "refs.tar")
    code, _, err = invoke(["import", str(path), flag, value], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err, err
    assert store_runs() == 0


def test_small_member_limits_are_honoured(host, capsys, tmp_path, temp_dir):
    """The limits are flags: a checkpoint over --max-member-size is refused from its header."""
    path = write(pair(), tmp_path / "refs.tar")
    code, _, err = invoke(["import", str(path), "--max-member-size", "1KiB"], capsys)
    assert code == 2 and "over the 1024-byte limit (--max-member-size)" in err, err
    assert store_runs() == 0


def test_a_compressed_bomb_is_refused_from_its_header(host, capsys, tmp_path, temp_dir):
    """A few KB of .tar.gz that would unpack to 8 MiB: refused by the declared size, nothing unpacked."""
    b = pair()
    b.extra.append(file_member("models/zeros.pt", b"\0" * (8 << 20)))
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for m in b.members():
            tar.addfile(m.info, io.BytesIO(m.data))
    assert path.stat().st_size < 100_000
    code, _, err = invoke(["import", str(path), "--max-member-size", "1MiB"], capsys)
    assert code == 2 and "'models/zeros.pt' is 8388608 bytes, over the 1048576-byte limit" in err, err
    assert store_runs() == 0 and list(temp_dir.iterdir()) == []


@pytest.mark.parametrize(
    "kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK], ids=bytes.decode
)
@pytest.mark.parametrize("first", [True, False], ids=["first-member", "after-the-manifest"])
def test_an_extended_header_is_refused_from_its_declared_size(host, capsys, tmp_path, temp_dir, kind, first):
    """tarfile reads a pax or GNU long-name header's body into memory, whole, before the next
    header (2 MB of .tar.gz declaring 2000 MiB cost 2.8 GB): its declared size is held to
    --max-manifest-size before that. Here 64 KiB of zeros over a 4 KiB limit."""
    header = raw_header("././@LongLink", kind, 64 << 10) + b"\0" * (64 << 10)
    control = pair().write(tmp_path / "control.tar").read_bytes()
    cut = 0 if first else 512 + -(-len(pair().manifest()) // 512) * 512  # the manifest comes first
    path = tmp_path / "bomb.tar.gz"
    with gzip.open(path, "wb") as out:
        out.write(control[:cut] + header + control[cut:])
    code, _, err = invoke(["import", str(path), "--max-manifest-size", "4KiB"], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "member '././@LongLink' is a " in lines[0] and "of 65536 bytes, over the 4096-byte limit" in lines[0], err
    assert store_runs() == 0 and list(temp_dir.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://user:secret@[::1/refs.tar", "https://example.org:99999/refs.tar"]
)
def test_a_malformed_url_is_one_line(host, capsys, temp_dir, url):
    code, _, err = invoke(["import", url], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "is not a valid URL" in lines[0], err
    assert "secret" not in err  # no credentials in the error line
    assert store_runs() == 0 and list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("case", ["nan-weights", "train-recipe-sets-role-and-seed", "pax-chain", "missing"])
def test_a_refused_import_leaves_no_new_store(host, capsys, tmp_path, temp_dir, case):
    """The bundle is checked before the store is opened: a refusal creates no store file or folder."""
    bundle = write(CASES[case][0](tmp_path), tmp_path / "hostile.tar") if case in CASES else tmp_path / "none.tar"
    new = tmp_path / "new" / "mlflow.db"
    code, _, err = invoke(["import", str(bundle), "--tracking-uri", f"sqlite:///{new}"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not new.parent.exists()
    code, out, err = invoke(
        ["import", str(write(pair(), tmp_path / "good.tar")), "--tracking-uri", f"sqlite:///{new}"], capsys
    )
    assert code == 0 and "Imported 2 of 2" in out and new.is_file(), err  # an accepted one makes the store
