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
