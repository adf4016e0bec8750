"""Bundles as a researcher uses them day to day: outputs named by habit (``-o refs.tar.gz``, the
store's own file by a slip), bundles repacked with ``tar``, folders given for files, bundles of
another format version, URLs with credentials, and exports that find nothing. Each ends as one
line naming the value and what would do, or as the bundle the name promised."""

from __future__ import annotations

import base64
import gzip
import json
import tarfile
from http.server import SimpleHTTPRequestHandler

import pytest

from tests.invoke import invoke
from tests.test_bundle_hostile import Bundle, pair, serving, store_runs, write
from tests.test_bundles import reference_run


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.strip()]


def one_error(code: object, err: str, fragment: str) -> None:
    lines = error_lines(err)
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("Error") and fragment in lines[0], err


@pytest.fixture
def exporter(tmp_path):
    """The isolated store holding one finished original model (written directly, no training)."""
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    reference_run(store, tmp_path / "runs", "original", "1")
    return store


# ------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("victim", ["store-database", "notes"])
def test_an_export_never_replaces_a_file_that_is_not_a_bundle(host, capsys, tmp_path, exporter, victim):
    """``-o`` replaced whatever it named: ``-o unlearnkit-store/mlflow.db`` turned the store's
    database into a tar file, and the store was gone. An earlier bundle is still replaced."""
    target = exporter.local_db if victim == "store-database" else tmp_path / "notes.txt"
    assert target is not None
    if victim == "notes":
        target.write_text("my notes\n")
    before = target.read_bytes()
    code, _, err = invoke(["export", "-o", str(target)], capsys)
    one_error(code, err, "that file exists and is not a bundle; name a new file, or remove it first")
    assert target.read_bytes() == before
    assert not any(p.name.endswith(".partial") for p in target.parent.iterdir())
    bundle = tmp_path / "refs.tar"
    assert invoke(["export", "-o", str(bundle)], capsys)[0] == 0
    code, out, err = invoke(["export", "-o", str(bundle)], capsys)  # a bundle there: written again
    assert code == 0 and "Exported 1 reference models" in out, err


MAGIC = {".tar.gz": b"\x1f\x8b", ".tgz": b"\x1f\x8b", ".tar.bz2": b"BZh", ".tar.xz": b"\xfd7zXZ\x00"}


@pytest.mark.parametrize("suffix", list(MAGIC))
def test_a_compressed_name_gives_a_compressed_bundle(host, capsys, tmp_path, exporter, store_dir, suffix):
    """``-o refs.tar.gz`` wrote a plain tar under a .gz name, which ``tar xzf`` and gunzip refuse.
    The gzip header carries no file name and no time, as the tar headers carry no owner or time."""
    bundle = tmp_path / f"refs{suffix}"
    code, out, err = invoke(["export", "-o", str(bundle)], capsys)
    assert code == 0 and "Exported 1 reference models" in out, err
    data = bundle.read_bytes()
    assert data.startswith(MAGIC[suffix])
    if MAGIC[suffix] == b"\x1f\x8b":
        assert data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"  # no FNAME flag, mtime 0
        assert gzip.decompress(data)[:512].startswith(b"models/")  # a tar inside
    with tarfile.open(bundle) as tar:
        assert "manifest.json" in tar.getnames()
    new = store_dir("b")
    code, out, err = invoke(["import", str(bundle), "--tracking-uri", f"sqlite:///{new / 'mlflow.db'}"], capsys)
    assert code == 0 and "Imported 1 of 1 reference models" in out, err


def test_an_archive_a_bundle_is_not_is_refused_before_any_work(host, capsys, tmp_path, exporter):
    code, _, err = invoke(["export", "-o", str(tmp_path / "refs.zip")], capsys)
    one_error(code, err, "a bundle is a tar file, not .zip; name it .tar, .tar.gz, .tar.bz2 or .tar.xz")
    assert not (tmp_path / "refs.zip").exists()


def test_an_output_under_a_file_is_called_a_file(host, capsys, tmp_path, exporter):
    """It was "the folder 'refs.tar' does not exist", of a file that does."""
    (tmp_path / "refs.tar").write_bytes(b"")
    code, _, err = invoke(["export", "-o", str(tmp_path / "refs.tar" / "new.tar")], capsys)
    one_error(code, err, f"'{tmp_path / 'refs.tar'}' is a file, not a folder")


def test_an_export_from_no_store_says_there_is_none(capsys, tmp_path):
    """A typo in --tracking-uri was "No trained reference models in ... match", as if a filter had
    matched nothing."""
    missing = tmp_path / "typo" / "mlflow.db"
    code, _, err = invoke(["export", "-o", str(tmp_path / "x.tar"), "--tracking-uri", f"sqlite:///{missing}"], capsys)
    one_error(code, err, f"There is no store at sqlite:///{missing} (check --tracking-uri")
    assert "nothing to export" in err and not missing.parent.exists()


def test_a_recipe_that_matches_nothing_names_what_the_store_holds(host, capsys, tmp_path, exporter):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nseeds = [99]\n')
    code, _, err = invoke(["export", "-o", str(tmp_path / "x.tar"), "--recipe", str(recipe)], capsys)
    one_error(code, err, "match the recipe (datasets tiny; models tiny_cnn; seeds 99): nothing to export")
    assert "The store holds tiny/tiny_cnn seed 1." in err
    assert not (tmp_path / "x.tar").exists()


# ------------------------------------------------------------------------------------ import
def test_a_bundle_repacked_with_tar_imports(host, capsys, tmp_path, temp_dir):
    """``tar xf refs.tar -C d && tar czf refs.tgz -C d .`` writes a ``./`` member first: it was
    refused as "member '.' has an unsafe path". A ``..`` folder is still refused."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(write(pair(), tmp_path / "refs.tar")) as tar:
        tar.extractall(unpacked, filter="data")
    repacked = tmp_path / "refs.tgz"
    with tarfile.open(repacked, "w:gz") as tar:
        tar.add(unpacked, arcname=".")
    assert tarfile.open(repacked).getnames()[0] == "."
    code, out, err = invoke(["import", str(repacked)], capsys)
    assert code == 0 and "Imported 2 of 2 reference models" in out, err
    up = tmp_path / "up.tar"
    with tarfile.open(up, "w") as tar:
        info = tarfile.TarInfo("..")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    code, _, err = invoke(["import", str(up)], capsys)
    one_error(code, err, "member '..' has an unsafe path")


def test_a_folder_given_as_the_bundle_is_called_a_folder(host, capsys, tmp_path, temp_dir):
    """It was "Bundle 'refs' does not exist", of a folder that is there."""
    (tmp_path / "refs").mkdir()
    code, _, err = invoke(["import", str(tmp_path / "refs")], capsys)
    one_error(code, err, "is a folder: name the bundle file in it")
    assert "does not exist" not in err and store_runs() == 0


def with_version(version: object) -> Bundle:
    from unlearnkit.engine import bundles

    b = pair()
    doc: dict = {"format": bundles.FORMAT, "models": b.entries}
    if version is not ...:
        doc["version"] = version
    b.manifest_text = json.dumps(doc).encode()
    return b


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (3, "has format version 3, written by a newer unlearnkit; this unlearnkit reads format version 2: upgrade"),
        (1, "has format version 1, written by an older unlearnkit; this unlearnkit reads format version 2 (export"),
        ("2", 'has the format version "2", not an integer'),
        (2.0, "has the format version 2.0, not an integer"),
        (..., "has no format version"),
    ],
    ids=["newer", "older", "a-string", "a-float", "none"],
)
def test_a_bundle_of_another_format_version_says_which_side_to_upgrade(host, capsys, tmp_path, temp_dir, version, says):
    """A newer bundle was told "export it again with this unlearnkit" (the old one), and a version
    "2" read "has format version '2'; this unlearnkit reads 2"."""
    code, _, err = invoke(["import", str(write(with_version(version), tmp_path / "v.tar"))], capsys)
    one_error(code, err, says)
    assert store_runs() == 0 and list(temp_dir.iterdir()) == []


def test_the_import_line_shows_no_query_string(host, capsys, tmp_path, temp_dir):
    """The success line printed the URL as typed, a signed URL's token included (into CI logs)."""
    path = write(pair(), tmp_path / "refs.tar")
    code, out, err = invoke(["import", f"{path.as_uri()}?token=SECRET"], capsys)
    assert code == 0 and f"Imported 2 of 2 reference models from {path.as_uri()} " in out, err
    assert "SECRET" not in out + err


class AuthHandler(SimpleHTTPRequestHandler):
    """Serves its folder to ``user:p@ss`` only (HTTP basic auth)."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        wanted = "Basic " + base64.b64encode(b"user:p@ss").decode()
        if self.headers.get("Authorization") != wanted:
            self.send_response(401)
            self.end_headers()
            return None
        return super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def auth_server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    with serving(www, AuthHandler) as port:
        yield www, port


def test_a_url_with_credentials_sends_them_as_basic_auth(host, capsys, tmp_path, temp_dir, auth_server):
    """``https://user:password@host/refs.tar`` failed with "Name or service not known": urllib took
    the credentials for part of the host name. And the success line would have printed them."""
    www, port = auth_server
    write(pair(), www / "refs.tar")
    code, out, err = invoke(["import", f"http://user:p%40ss@127.0.0.1:{port}/refs.tar"], capsys)
    assert code == 0 and f"from http://127.0.0.1:{port}/refs.tar " in out, err
    assert "p%40ss" not in out + err and "p@ss" not in out + err
    code, _, err = invoke(["import", f"http://user:wrong@127.0.0.1:{port}/refs.tar"], capsys)
    one_error(code, err, "HTTP 401")
    assert "wrong" not in err and store_runs() == 2


def test_trusting_times_on_a_second_import_says_the_runs_there_keep_theirs(host, capsys, tmp_path, temp_dir):
    """Imported once untrusted, then again with --trust-times: "Imported 0 of 2" and silence, yet the
    retrained model still gave no RTE. The second import now says so."""
    path = write(pair(), tmp_path / "refs.tar")
    assert invoke(["import", str(path)], capsys)[0] == 0
    code, out, err = invoke(["import", str(path), "--trust-times"], capsys)
    assert code == 0 and "Imported 0 of 2 reference models" in out and "(2 already in the store)" in out, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("Warning") and "--trust-times" in ln]
    assert len(warnings) == 1 and "2 of its models were already in the store, imported with untrusted" in warnings[0]
    assert "--trust-times applies only to the models an import adds" in warnings[0]
