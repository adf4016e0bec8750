"""Reference-model bundles: export -> import into an empty store -> the same run trains nothing;
a tampered bundle is refused with one line and nothing is imported."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.invoke import invoke

TINY = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--epochs", "3", "--seeds", "1,2", "--device", "cpu"]


def train_runs(store_dir: Path):
    from unlearnkit.store.mlflow_store import Store

    return Store(f"sqlite:///{store_dir / 'mlflow.db'}").search({"run_type": "train"}, finished_only=False)


def test_export_then_import_into_an_empty_store_skips_training(host, capsys, tmp_path, monkeypatch, store_dir):
    first, second = store_dir("a"), store_dir("b")
    monkeypatch.setenv("UNLEARNKIT_STORE", str(first))
    code, _, err = invoke(TINY, capsys)
    assert code == 0, err
    bundle = tmp_path / "refs.tar"
    code, out, err = invoke(["export", "-o", str(bundle)], capsys)
    assert code == 0 and "Exported 4 reference models" in out, err  # original + retrained, 2 seeds
    monkeypatch.setenv("UNLEARNKIT_STORE", str(second))
    code, out, err = invoke(["import", str(bundle)], capsys)
    assert code == 0 and "Imported 4 of 4 reference models" in out, err
    code, out, err = invoke(["import", str(bundle)], capsys)
    assert "Imported 0 of 4 reference models" in out and "(4 already in the store)" in out  # never duplicated
    code, _, err = invoke(TINY, capsys)
    assert code == 0, err
    assert "Trained the" not in err and err.count("Reusing the") == 4  # every reference came from the bundle
    assert len(train_runs(second)) == 4  # nothing was trained in the second store
    assert {r.tag("imported_times") for r in train_runs(second)} == {"untrusted"}
    # another machine's training time is no RTE denominator: the trained store has RTEs, this one none
    assert all("rte" in r.metrics for r in method_rows(first))
    assert method_rows(second) and not any("rte" in r.metrics for r in method_rows(second))
    assert not any("time_s" in r.metrics for r in unlearn_runs(second) if r.tag("role") == "retrained")


def unlearn_runs(store_dir: Path):
    from unlearnkit.store.mlflow_store import Store

    return Store(f"sqlite:///{store_dir / 'mlflow.db'}").search({"run_type": "unlearn"})


def method_rows(store_dir: Path):
    return [r for r in unlearn_runs(store_dir) if not r.tag("role")]


def manifest_of(bundle: Path) -> dict:
    with tarfile.open(bundle) as tar:
        return json.loads(tar.extractfile("manifest.json").read())


def test_an_export_carries_no_machine_paths_nonces_or_claims(capsys, tmp_path, monkeypatch, store_dir):
    """Only what import re-derives or checks travels: no plugin folder, host, pid, heartbeat,
    creation nonce or MLflow tag; no shadow models; headers without owner or time."""
    from unlearnkit.discovery.host import reset_host

    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("a")))
    plugins = Path(__file__).parent / "fixtures" / "plugins"
    reset_host()
    code, _, err = invoke([*TINY[:-4], "--seeds", "1", "--device", "cpu", "--plugins-dir", str(plugins)], capsys)
    reset_host()
    assert code == 0, err
    from unlearnkit.store.mlflow_store import Store, tag

    store = Store()  # an audit's shadow model: it stays in its store
    shadow = store.start_run("shadow", {tag("run_type"): "train", tag("role"): "shadow-original"}, {})
    store.finish(shadow)
    bundle = tmp_path / "refs.tar"
    code, out, err = invoke(["export", "-o", str(bundle)], capsys)
    assert code == 0 and "Exported 2 reference models" in out, err
    doc = manifest_of(bundle)
    for entry in doc["models"]:
        carried = json.dumps({k: v for k, v in entry.items() if k != "identity"})
        assert str(plugins) not in carried and "local:" not in carried, carried  # the tags of 0.2 had it
        assert not any(k.startswith("mlflow.") for k in entry["tags"])
        for name in ("host", "pid", "heartbeat", "creation", "sweep", "dataset.package", "model.package"):
            assert f"unlearnkit.{name}" not in entry["tags"]
        assert set(entry["metrics"]) <= {"train_time_s"} and set(entry["params"]) <= {"images"}
    with tarfile.open(bundle) as tar:
        assert all(m.uid == 0 and m.uname == "" and m.mtime == 0 for m in tar.getmembers())


def test_trusted_times_are_used_for_rte(host, capsys, tmp_path, monkeypatch, store_dir):
    """--trust-times: the importer vouches that the bundle's clock is comparable to its own."""
    one = [*TINY[:-4], "--seeds", "1", "--device", "cpu"]
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("a")))
    assert invoke(one, capsys)[0] == 0
    bundle = tmp_path / "refs.tar"
    assert invoke(["export", "-o", str(bundle)], capsys)[0] == 0
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("b")))
    code, _, err = invoke(["import", str(bundle), "--trust-times"], capsys)
    assert code == 0, err
    assert {r.tag("imported_times") for r in train_runs(tmp_path / "b")} == {"trusted"}
    assert invoke(one, capsys)[0] == 0
    trained = {r.tag("role"): r.metrics["train_time_s"] for r in train_runs(tmp_path / "a")}
    rows = unlearn_runs(tmp_path / "b")
    assert all("rte" in r.metrics for r in rows if not r.tag("role"))
    assert [r.metrics["time_s"] for r in rows if r.tag("role") == "retrained"] == [trained["retrained"]]


def test_a_stored_checkpoint_that_does_not_load_is_retrained(host, capsys, tmp_path, monkeypatch, store_dir):
    """A checkpoint that matches its sha256 but is not this architecture's is treated as corrupt:
    the next run fails its training run and trains the model again, instead of crashing every time."""
    import torch

    from unlearnkit.identity import file_sha256
    from unlearnkit.store.mlflow_store import Store, tag

    one = [*TINY[:-4], "--seeds", "1", "--device", "cpu"]
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("a")))
    assert invoke(one, capsys)[0] == 0
    store = Store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    original = next(r for r in store.search({"run_type": "train"}) if r.tag("role") == "original")
    path = Path(original.artifact_uri.removeprefix("file://")) / "checkpoint" / "model.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)  # another architecture, with its sha256 recorded
    store.set_tags(original.run_id, {tag("checkpoint_sha256"): file_sha256(path)})
    code, _, err = invoke(one, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "does not load into this model" in err and "Retraining it" in err and "Trained the original" in err
    assert store.get(original.run_id).status == "FAILED"
    code, _, err = invoke(one, capsys)  # and the store stays usable afterwards
    assert code == 0 and "Reusing the original" in err, err
    originals = [r for r in store.search({"run_type": "train"}) if r.tag("role") == "original"]
    assert len(originals) == 1 and originals[0].run_id != original.run_id  # trained once more, then reused


def test_models_trained_before_image_specs_are_exported_after_one_reuse(host, capsys, tmp_path, monkeypatch, store_dir):
    """A 0.2 store's reference runs lack the input their model was built for: export says what to
    do in one line, and the next run that reuses them records it."""
    import sqlite3

    one = [*TINY[:-4], "--seeds", "1", "--device", "cpu"]
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("a")))
    assert invoke(one, capsys)[0] == 0
    con = sqlite3.connect(tmp_path / "a" / "mlflow.db")
    with con:
        con.execute("DELETE FROM params WHERE key = 'image_spec'")  # as a 0.2 run left it
    con.close()
    bundle = tmp_path / "refs.tar"
    code, _, err = invoke(["export", "-o", str(bundle)], capsys)
    assert code == 2 and "run its benchmark once with this unlearnkit" in err, err
    assert invoke(one, capsys)[0] == 0
    code, out, err = invoke(["export", "-o", str(bundle)], capsys)
    assert code == 0 and "Exported 2 reference models" in out, err


def tamper(bundle: Path, out: Path, edit) -> Path:
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "manifest.json" and edit is not None:
                doc = json.loads(data)
                edit(doc)
                data = json.dumps(doc).encode()
            elif member.name.endswith(".pt") and edit is None:
                data = data[:-10] + b"tampered!!"
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


@pytest.mark.parametrize(
    "edit, message",
    [
        (None, "fails its sha256 check; refused."),
        (lambda doc: doc["models"][0]["identity"].update(seed=99), "does not hash to its config hash; refused."),
    ],
    ids=["bytes", "identity"],
)
def test_a_tampered_bundle_is_refused_and_nothing_imported(
    host, capsys, tmp_path, monkeypatch, store_dir, edit, message
):
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("a")))
    assert invoke([*TINY[:-4], "--seeds", "1", "--device", "cpu"], capsys)[0] == 0
    bundle = tmp_path / "refs.tar"
    assert invoke(["export", "-o", str(bundle)], capsys)[0] == 0
    bad = tamper(bundle, tmp_path / "bad.tar", edit)
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("b")))
    code, _, err = invoke(["import", str(bad)], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert train_runs(tmp_path / "b") == []


def reference_run(store, tmp: Path, role: str, seed_tag: str) -> str:
    """A finished reference run as training leaves one (tags, image_spec, identity, checkpoint),
    written directly: the export tests need no training. ``seed_tag`` is stored as it is."""
    import torch

    from tests.test_bundle_hostile import SPEC, identity, tiny_state
    from unlearnkit.engine.references import image_spec_text
    from unlearnkit.identity import config_hash, file_sha256, identity_json
    from unlearnkit.store.mlflow_store import tag

    ident = identity(role)
    key = config_hash(ident)
    path = tmp / key / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(tiny_state(), path)
    tags = {"run_type": "train", "role": role, "config_hash": key, "dataset": "tiny", "model": "tiny_cnn"}
    tags |= {"seed": seed_tag, "checkpoint_sha256": file_sha256(path)}
    run_id = store.start_run(
        f"{role}-model", {tag(k): v for k, v in tags.items()}, {"image_spec": image_spec_text(SPEC)}
    )
    store.log_file(run_id, path, "checkpoint")
    store.log_text(run_id, identity_json(ident), "identity.json")
    store.finish(run_id)
    return run_id


@pytest.mark.parametrize("scoped", [False, True], ids=["all", "recipe"])
def test_a_run_with_a_hostile_seed_tag_is_skipped_with_one_warning(host, capsys, tmp_path, scoped):
    """A seed tag no training writes ('x1', left by a bug or a hand): that run is not exported
    (import would refuse it) and says why in one line; the others still are."""
    from unlearnkit.store.mlflow_store import Store

    store = Store()
    reference_run(store, tmp_path / "runs", "original", "1")
    bad = reference_run(store, tmp_path / "runs", "retrained", "x1")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ndatasets = ["tiny"]\nmodels = ["tiny_cnn"]\nseeds = [1]\n')
    bundle = tmp_path / "refs.tar"
    code, out, err = invoke(["export", "-o", str(bundle), *(["--recipe", str(recipe)] if scoped else [])], capsys)
    assert code == 0 and "Exported 1 reference models" in out, err
    assert err.strip() == f"Warning: Run {bad} is not exported: its seed tag 'x1' is not a valid int.", err
    assert [e["tags"]["unlearnkit.seed"] for e in manifest_of(bundle)["models"]] == ["1"]


@pytest.mark.parametrize("where", ["missing-folder", "a-folder"])
def test_an_export_to_an_unwritable_output_is_one_line_before_any_work(host, capsys, tmp_path, where):
    from unlearnkit.store.mlflow_store import Store

    reference_run(Store(), tmp_path / "runs", "original", "1")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "nodir" / "refs.tar" if where == "missing-folder" else out_dir
    fragment = "does not exist" if where == "missing-folder" else "it is a folder"
    code, _, err = invoke(["export", "-o", str(target)], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and f"Cannot write the bundle to '{target}'" in lines[0], err
    assert fragment in lines[0] and list(out_dir.iterdir()) == []  # no temp bundle was written either


@pytest.mark.parametrize("extra", [[], ["--recipe", "/nonexistent/r.toml"]], ids=["no-store", "no-recipe"])
def test_a_refused_export_creates_no_store(capsys, tmp_path, extra):
    new = tmp_path / "new" / "mlflow.db"
    code, _, err = invoke(
        ["export", "-o", str(tmp_path / "refs.tar"), "--tracking-uri", f"sqlite:///{new}", *extra], capsys
    )
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and ("nothing to export" in lines[0] or "does not exist" in lines[0]), err
    assert not new.parent.exists() and not (tmp_path / "refs.tar").exists()
