"""What a tracking URI or a store path may be, checked before MLflow is asked: someone else's SQLite
file is never migrated in place, a store that lost its schema revision is refused, a folder is not
taken for "no store yet", and an unknown scheme, a missing database driver or an empty experiment
name is one line with nothing created. Asking a question of no store (``show run``) makes none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.test_store_health import store_with_runs, uri
from unlearnkit.errors import StoreError
from unlearnkit.store.mlflow_store import Store, resolve_tracking_uri, uri_problem

PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_someone_elses_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, cli):
    db = tmp_path / "theirs.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE measurements(x)")
        con.execute("INSERT INTO measurements VALUES (1)")
    before = db.read_bytes()
    for command in (["leaderboard"], ["store", "check"], ["show", "run", "abcdefgh12"]):
        code, _, err = cli(*command, "--tracking-uri", uri(db))
        assert code in (1, 2), err
        assert "is an SQLite database but not an MLflow store (its tables: measurements)" in one_error_line(err)
    assert db.read_bytes() == before  # before, a read-only leaderboard migrated MLflow's 60 tables into it


def test_a_store_whose_schema_revision_is_gone_is_refused_or_rebuilt_when_empty(tmp_path, cli):
    db = tmp_path / "s" / "mlflow.db"
    store_with_runs(db)
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE alembic_version")
    code, _, err = cli("leaderboard", "--tracking-uri", uri(db))
    assert code == 2 and "its alembic_version row is gone). Restore a backup." in one_error_line(err)
    empty = tmp_path / "e" / "mlflow.db"
    Store(uri(empty)).check()
    with sqlite3.connect(empty) as con:
        con.execute("DELETE FROM alembic_version")
    code, out, err = cli("leaderboard", "--tracking-uri", uri(empty))
    assert code == 0, err  # nothing to lose: made again from the template
    with sqlite3.connect(empty) as con:
        assert con.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_a_folder_at_the_store_path_is_refused_not_taken_for_no_store(tmp_path, cli):
    db = tmp_path / "mlflow.db"
    db.mkdir()
    for command in (["leaderboard"], ["store", "check"]):
        code, out, err = cli(*command, "--tracking-uri", uri(db))
        assert code in (1, 2) and "is not a file (a folder?)" in one_error_line(err), out + err
        assert "No finished runs" not in out


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("foo://bar", "Unsupported tracking URI 'foo://bar': use sqlite:///PATH, http(s)://HOST:PORT"),
        ("file:///tmp/mlruns", "MLflow keeps file stores in maintenance mode, unopened unless MLFLOW_ALLOW_FILE_STORE"),
        ("sqlite://relative.db", "a SQLite store is sqlite:///PATH (three slashes"),
    ],
)
def test_a_tracking_uri_no_store_can_have_is_one_line_naming_the_forms(given, says, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert says in uri_problem(given)
    code, _, err = cli("leaderboard", "--tracking-uri", given)
    assert code == 2 and says in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "given",
    ["databricks", "databricks://profile", "HTTPS://host:5000/mlflow", "sqlite:///relative/path.db",
     "SQLITE:///x.db", "postgresql+psycopg2://me@host/db", "mysql://me@host/db"],
)  # fmt: skip
def test_every_form_a_store_takes_is_left_to_mlflow(given):
    assert uri_problem(given) == ""


def test_mlflows_own_relative_sqlite_uri_opens_the_file_in_the_working_directory(tmp_path, monkeypatch, cli):
    # `sqlite:///mlflow.db` is the form MLflow's documentation shows; it had failed every command that
    # writes ("relative path can't be expressed as a file URI", from the artifact folder's URI)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(
        "run", "--method", "lotus", "--dataset", "tiny", "--model", "tiny_cnn", "--epochs", "1",
        "--plugins-dir", str(PLUGINS), "--tracking-uri", "sqlite:///mlflow.db",
    )  # fmt: skip
    assert code == 0, out + err
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "artifacts").is_dir()
    monkeypatch.chdir(tmp_path.parent)  # read from elsewhere by its absolute form: the same store
    code, out, err = cli("leaderboard", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 0 and "lotus" in out, out + err


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("sqlite:///runs/mlflow.db", "sqlite:///{cwd}/runs/mlflow.db"),
        ("SQLITE:///x.db?timeout=20", "sqlite:///{cwd}/x.db?timeout=20"),  # the driver's options kept
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("http://host:5000", "http://host:5000"),
        ("postgresql://me@host/db", "postgresql://me@host/db"),
    ],
)
def test_a_relative_sqlite_path_is_made_absolute_once_and_nothing_else_is_touched(
    given, resolved, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    expected = resolved.format(cwd=tmp_path.resolve())
    assert resolve_tracking_uri(given) == expected
    monkeypatch.setenv("MLFLOW_TRACKING_URI", given)
    assert Store().uri == expected
    if expected.startswith("sqlite:///") and "memory" not in given:  # the file, less the driver's options
        assert Store(given).local_db == Path(expected[len("sqlite:///") :].split("?")[0])


def test_a_file_store_is_left_to_mlflow_where_it_is_told_to_open_one(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert uri_problem("file:///tmp/mlruns") == ""


def test_a_database_url_without_its_driver_is_one_line_without_its_password(cli):
    code, _, err = cli("leaderboard", "--tracking-uri", "postgresql+nosuchdriver://me:s3cret@127.0.0.1:1/db")
    line = one_error_line(err)
    assert code == 2 and "Cannot open the store postgresql+nosuchdriver://me:***@127.0.0.1:1/db" in line
    assert "s3cret" not in err


def test_asking_no_store_makes_none_and_an_empty_experiment_name_is_refused(tmp_path, cli):
    db = tmp_path / "none" / "mlflow.db"
    code, _, err = cli("show", "run", "abcdefgh12", "--tracking-uri", uri(db))
    assert code == 2 and "there is no store at" in one_error_line(err)
    code, _, err = cli("leaderboard", "--experiment", " ", "--tracking-uri", uri(db))
    assert code == 2 and "Bad --experiment ' '" in one_error_line(err)
    assert not db.parent.exists()
    with pytest.raises(StoreError, match="an experiment needs a name"):
        Store(uri(db), experiment="")


def test_a_damaged_store_is_named_damaged_when_a_run_is_asked_of_it(tmp_path, cli):
    db = tmp_path / "s" / "mlflow.db"
    db.parent.mkdir()
    db.write_text("a text file, not a database")
    code, _, err = cli("show", "run", "abc", "--tracking-uri", uri(db))
    assert code == 2 and "is damaged" in one_error_line(err)  # before: "No run 'abc'"
    code, _, err = cli("show", "run", "x" * 5000, "--tracking-uri", uri(db))
    assert len(one_error_line(err)) < 1000


def test_a_plugins_dir_that_is_a_file_is_named_so(tmp_path, cli):
    (tmp_path / "plugin.py").write_text("")
    code, _, err = cli("run", "--plugins-dir", str(tmp_path / "plugin.py"), "--dataset", "digits")
    assert code == 2 and "is a file: --plugins-dir takes the folder" in one_error_line(err)


def test_commands_refused_or_computing_nothing_make_no_store(tmp_path, cli, monkeypatch):
    """A 0-epoch recipe (refused when the request is validated, before the store is opened), an
    audit's estimate, and a reproduction judged from a store that is not there."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "s" / "mlflow.db"
    recipe = tmp_path / "zero.toml"
    recipe.write_text(
        'name = "zero"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nmethods = ["lotus"]\nseeds = [1]\n'
        'epochs = 0\ndevice = "cpu"\n'
    )
    code, _, err = cli("sweep", str(recipe), "--tracking-uri", uri(db), "--plugins-dir", str(PLUGINS))
    assert code == 2 and "A 0-epoch training recipe leaves the original untrained" in one_error_line(err)
    code, _, err = cli("reproduce", "unlearnkit-digits", "--from-store", "--tracking-uri", uri(db))
    assert code == 2 and "there is no store there yet" in one_error_line(err)
    code, out, err = cli("audit", "audit-digits", "--estimate", "--tracking-uri", uri(db))
    assert code == 0, err
    assert not db.parent.exists()


def test_an_infinite_metric_reads_back_infinite_not_as_the_largest_float(tmp_path):
    """MLflow's SQL store keeps inf as 1.797e308 (an ensemble score's perfect separation is +inf)."""
    import math

    from unlearnkit.store.mlflow_store import Store

    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.check()
    run_id = store.client.create_run(store.experiment_id).info.run_id
    store.log_metrics(run_id, {"eps": math.inf, "low": -math.inf, "plain": 1.0})
    store.log_series(run_id, [("curve", math.inf, 3)])
    (record,) = store.search({}, finished_only=False)
    assert record.metrics == {"eps": math.inf, "low": -math.inf, "plain": 1.0, "curve": math.inf}
    assert store.series(run_id, "curve") == [(3, math.inf)]
