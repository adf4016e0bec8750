"""Bundles and store upkeep in everyday use: export from one store, import into another, and the
second store holds the same models under the same identities, gives the same numbers and the same
leaderboard (times aside: another machine's clock is not trusted), and computes nothing again;
imports add each model once; ``store check`` and ``store repair`` change nothing in a sound store."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.invoke import invoke

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugins"
RUN = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--method", "lotus", "--epochs", "3", "--device", "cpu"]
RUN += ["--seeds", "1,2", "--plugins-dir", str(PLUGINS)]
TIMES = {"time_s", "rte", "eval_time_s"}  # measured on each machine: the only numbers a round trip may change


def uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def main(argv: list[str]) -> int:
    """``unlearnkit ARGV`` in this process, with its own plugins, as a new process would load them."""
    from unlearnkit.cli import main as cli_main
    from unlearnkit.discovery.host import reset_host

    reset_host()
    try:
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
            raise SystemExit(0)
    finally:
        reset_host()
    return int(exc.value.code or 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_mlflow_db) -> Iterator[Path]:
    """Store A: the tiny benchmark's references and LoTUS for seeds 1 and 2, trained once per module."""
    folder = tmp_path_factory.mktemp("a")
    shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main([*RUN, "--tracking-uri", uri(folder)]) == 0
        yield folder


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        from unlearnkit.discovery.host import reset_host

        reset_host()
        try:
            code, out, err = invoke(list(argv), capsys)
        finally:
            reset_host()
        return int(code or 0), out, err

    return run


def copy_of(store: Path, folder: Path) -> Path:
    """A copy of ``store``'s database (its runs still name the original's artifact folder)."""
    folder.mkdir()
    shutil.copyfile(store / "mlflow.db", folder / "mlflow.db")
    return folder


def records(folder: Path, run_type: str, experiment: str = "unlearnkit", finished_only: bool = True) -> list:
    from unlearnkit.store.mlflow_store import Store

    return Store(uri(folder), experiment).search({"run_type": run_type}, finished_only=finished_only)


def manifest(bundle: Path) -> list[dict]:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())["models"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def results(folder: Path, experiment: str = "unlearnkit") -> dict[str, dict[str, float]]:
    """Each result row's numbers by its identity, less the measured times."""
    rows = {}
    for rec in records(folder, "unlearn", experiment):
        assert rec.tag("config_hash") not in rows  # one finished row per identity
        rows[rec.tag("config_hash")] = {k: v for k, v in rec.metrics.items() if k not in TIMES}
    return rows


def without_times(fmt: str, text: str) -> object:
    """A leaderboard in ``fmt`` with the columns of measured times taken out."""
    if fmt == "csv":
        return [row for row in csv.DictReader(io.StringIO(text)) if row["metric"] not in TIMES]
    if fmt == "json":
        boards = json.loads(text)
        for board in boards:
            for row in board["rows"]:
                row["metrics"] = {k: v for k, v in row["metrics"].items() if k not in TIMES}
        return boards
    lines = text.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    header = [cell.strip() for cell in lines[table[0]].strip("|").split("|")]
    keep = [i for i, name in enumerate(header) if name not in TIMES]
    for i in table:
        cells = lines[i].strip("|").split("|")
        lines[i] = "|".join(cells[k] for k in keep)
    return lines


# ---------------------------------------------------------------------------------- round trip
def test_a_round_trip_gives_the_same_models_numbers_and_leaderboard(trained, cli, tmp_path, monkeypatch):
    """Exported from A, imported into a fresh B (another experiment, another working folder): the
    same method run on B trains nothing, hashes to the same identities, gives the same numbers and
    leaderboards in every format; run again, it finds every row in the store."""
    bundle = tmp_path / "refs.tar"
    code, out, err = cli("export", "-o", str(bundle), "--tracking-uri", uri(trained))
    assert code == 0 and "Exported 4 reference models" in out, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    b = tmp_path / "b"
    on_b = ["--tracking-uri", uri(b), "--experiment", "other"]
    code, out, err = cli("import", str(bundle), "--plugins-dir", str(PLUGINS), *on_b)
    assert code == 0 and "Imported 4 of 4 reference models" in out and "Warning" not in err, err
    trained_a = {(r.tag("config_hash"), r.tag("checkpoint_sha256")) for r in records(trained, "train")}
    assert {(r.tag("config_hash"), r.tag("checkpoint_sha256")) for r in records(b, "train", "other")} == trained_a

    code, out, err = cli(*RUN, *on_b)
    assert code == 0, err
    assert "Trained the" not in err and err.count("Reusing the") == 4
    assert len(records(b, "train", "other")) == 4  # nothing trained in B
    assert results(b, "other") == results(trained)  # the same identities and the same numbers
    for fmt in ("csv", "json", "markdown"):
        for wide in ([], ["--wide"]):
            boards = [
                cli("leaderboard", "-f", fmt, *wide, "--tracking-uri", uri(s), "--experiment", e)
                for s, e in ((trained, "unlearnkit"), (b, "other"))
            ]
            assert all(code == 0 for code, _, _ in boards), boards
            assert without_times(fmt, boards[0][1]) == without_times(fmt, boards[1][1]), (fmt, wide)

    code, out, err = cli(*RUN, *on_b)
    assert code == 0 and err.count("already in the store") == 6 and "Trained the" not in err, err


def test_importing_again_or_a_bundle_that_overlaps_adds_each_model_once(trained, cli, tmp_path):
    """``--recipe`` selects exactly its seeds; an overlapping bundle adds only what is missing, and
    the same bundle again adds nothing and says so."""
    recipe = tmp_path / "seed2.toml"
    recipe.write_text('name = "s2"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nmethods = ["lotus"]\nseeds = [2]\n')
    one, both = tmp_path / "seed2.tar", tmp_path / "both.tar"
    code, out, err = cli("export", "-o", str(one), "--recipe", str(recipe), "--tracking-uri", uri(trained))
    assert code == 0 and "Exported 2 reference models" in out, err
    assert sorted((m["identity"]["role"], m["identity"]["seed"]) for m in manifest(one)) == [
        ("original", 2),
        ("retrained", 2),
    ]
    assert cli("export", "-o", str(both), "--tracking-uri", uri(trained))[0] == 0
    b = tmp_path / "b"
    on_b = ["--plugins-dir", str(PLUGINS), "--tracking-uri", uri(b)]
    assert "Imported 2 of 2 reference models" in cli("import", str(one), *on_b)[1]
    code, out, err = cli("import", str(both), *on_b)
    assert code == 0 and "Imported 2 of 4 reference models" in out and "(2 already in the store)" in out, err
    code, out, err = cli("import", str(both), *on_b)
    assert code == 0 and "Imported 0 of 4 reference models" in out and "(4 already in the store)" in out, err
    runs = records(b, "train", finished_only=False)
    assert len(runs) == 4 and len({r.tag("config_hash") for r in runs}) == 4


def test_only_finished_reference_models_travel(trained, cli, tmp_path):
    """A FAILED reference and a RUNNING claim stay in their store."""
    from unlearnkit.store.mlflow_store import Store, tag

    a = copy_of(trained, tmp_path / "a")
    store = Store(uri(a))
    failed = records(a, "train")[0]
    store.fail(failed.run_id, "broken on purpose")
    claim = {tag("run_type"): "train", tag("role"): "original", tag("config_hash"): "ab" * 10}
    store.start_run("claim", {**claim, tag("host"): "elsewhere", tag("pid"): "1"}, {})
    bundle = tmp_path / "refs.tar"
    code, out, err = cli("export", "-o", str(bundle), "--tracking-uri", uri(a))
    assert code == 0 and "Exported 3 reference models" in out, err
    assert {m["config_hash"] for m in manifest(bundle)} == {
        r.tag("config_hash") for r in records(trained, "train") if r.run_id != failed.run_id
    }


def test_a_model_the_store_holds_twice_is_exported_once(trained, cli, tmp_path):
    """Two finished runs of one model (a store written before claims): the first one travels, once,
    and the bundle imports. Before, the export held that member twice and every import refused it."""
    from unlearnkit.store.mlflow_store import Store

    a = copy_of(trained, tmp_path / "a")
    store = Store(uri(a))
    first = records(a, "train")[0]
    files = tmp_path / "files"
    checkpoint = store.download(first.run_id, "checkpoint/model.pt", files)
    identity = store.download(first.run_id, "identity.json", files)
    tags = {k: v for k, v in first.tags.items() if k.startswith("unlearnkit.") and k != "unlearnkit.creation"}
    twin = store.start_run("twin", tags, first.params)
    store.log_file(twin, checkpoint, "checkpoint")
    store.log_file(twin, identity)
    store.log_metrics(twin, first.metrics)
    store.finish(twin)
    bundle = tmp_path / "refs.tar"
    code, out, err = cli("export", "-o", str(bundle), "--tracking-uri", uri(a))
    assert code == 0 and "Exported 4 reference models" in out, err
    keys = [m["config_hash"] for m in manifest(bundle)]
    assert len(keys) == len(set(keys)) == 4
    code, out, err = cli("import", str(bundle), "--plugins-dir", str(PLUGINS), "--tracking-uri", uri(tmp_path / "b"))
    assert code == 0 and "Imported 4 of 4 reference models" in out, err


# ------------------------------------------------------------------------------- store upkeep
def test_check_and_repair_leave_a_sound_store_byte_for_byte(trained, cli, tmp_path):
    a = copy_of(trained, tmp_path / "a")
    before = digest(a / "mlflow.db")
    code, out, err = cli("store", "check", "--tracking-uri", uri(a))
    assert code == 0 and "Database: sound" in out and "Nothing to repair." in out, out + err
    assert "6 of 6 match their sha256" in out  # four references, and the model LoTUS gave per seed
    code, out, err = cli("store", "repair", "--tracking-uri", uri(a))
    assert code == 0 and "Nothing to repair in" in out, out + err
    assert digest(a / "mlflow.db") == before


@pytest.mark.parametrize(
    "command", [["store", "check"], ["store", "repair"], ["export", "-o", "x.tar"], ["leaderboard"]]
)
def test_an_unknown_experiment_is_one_line_and_adds_nothing(trained, cli, tmp_path, monkeypatch, command):
    """A read-only command asked about an experiment the store does not hold names it and those the
    store holds. Before, check and repair made the empty experiment and said "Nothing to repair", and
    export made it and said only that nothing matched."""
    a = copy_of(trained, tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    before = digest(a / "mlflow.db")
    code, out, err = cli(*command, "--tracking-uri", uri(a), "--experiment", "unlearnkti")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, out + err
    assert "'unlearnkti'" in lines[0] and "unlearnkit" in lines[0].replace("'unlearnkti'", "")
    assert "Nothing to repair" not in out
    assert digest(a / "mlflow.db") == before and not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["leaderboard"], "No finished runs"),
        (["store", "check"], "Checkpoints: 0 of 0"),
        (["export", "-o", "x.tar"], "nothing to export"),
    ],
)
def test_the_default_experiment_not_made_yet_is_a_store_with_no_runs(cli, tmp_path, monkeypatch, command, says):
    # a store that holds only another experiment: the first run here makes the default one, and a
    # command that only reads neither refuses it nor makes it
    from unlearnkit.store.mlflow_store import Store

    store = tmp_path / "s"
    Store(uri(store), "other").check()
    monkeypatch.chdir(tmp_path)
    before = digest(store / "mlflow.db")
    code, out, err = cli(*command, "--tracking-uri", uri(store))
    assert code == (2 if command[0] == "export" else 0) and says in out + err, out + err  # export: as for no store
    assert digest(store / "mlflow.db") == before


def test_repair_fails_a_stale_claim_and_the_store_is_then_sound(trained, cli, tmp_path):
    from unlearnkit.store.mlflow_store import Store, tag

    a = copy_of(trained, tmp_path / "a")
    store = Store(uri(a))
    dead = {tag("host"): socket.gethostname(), tag("pid"): "999999999", tag("beat"): "3", tag("ticket"): "1"}
    claim = store.start_run("claim", {tag("run_type"): "unlearn", tag("config_hash"): "cd" * 10, **dead}, {})
    assert cli("store", "check", "--tracking-uri", uri(a))[0] == 1
    code, out, err = cli("store", "repair", "--tracking-uri", uri(a), "--wait", "0")
    assert code == 0 and f"failed orphan run {claim}" in out, out + err
    assert store.get(claim).status == "FAILED"
    code, out, _ = cli("store", "check", "--tracking-uri", uri(a))
    assert code == 0 and "Nothing to repair." in out


# ------------------------------------------------------------------------------------ reuse
def test_an_import_says_when_runs_here_would_not_reuse_its_models(trained, cli, tmp_path, monkeypatch):
    """A plugin folder is part of a model's identity as it was typed: the bundle from A (an absolute
    --plugins-dir) imports with a relative one, but no run here would reuse it, and the import says
    so in one warning instead of leaving it to a silent retraining."""
    bundle = tmp_path / "refs.tar"
    assert cli("export", "-o", str(bundle), "--tracking-uri", uri(trained))[0] == 0
    monkeypatch.chdir(PLUGINS.parent)
    code, out, err = cli("import", str(bundle), "--plugins-dir", "plugins", "--tracking-uri", uri(tmp_path / "b"))
    warnings = [line for line in err.splitlines() if line.startswith("Warning")]
    assert code == 0 and "Imported 4 of 4 reference models" in out, err
    assert len(warnings) == 1 and f"'local:{PLUGINS}:tiny==0'" in warnings[0], err
    assert "'local:plugins:tiny==0'" in warnings[0] and "--plugins-dir" in warnings[0]
