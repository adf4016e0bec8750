"""The golden numbers of the last release reproduce (``tests/golden.py``): every built-in method
on digits under both protocols, exactly on the machine that pinned them, within floating-point
drift elsewhere. Slow (two whole runs, about two minutes on 2 cores): ``pytest -m slow``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import golden  # noqa: E402


@pytest.mark.slow
def test_every_builtin_reproduces_the_released_numbers():
    problems = golden.check()
    assert problems == [], "\n".join(problems[:30])


def test_the_comparison_sees_a_changed_number_and_a_missing_one():
    pinned = {"clean": {"lotus": {"acc_forget": 0.5, "mia": float("nan")}}}
    assert golden.compare(pinned, {"clean": {"lotus": {"acc_forget": 0.5, "mia": float("nan")}}}, 1e-6) == []
    assert golden.compare(pinned, {"clean": {"lotus": {"acc_forget": 0.5 + 2e-6, "mia": float("nan")}}}, 1e-6)
    assert golden.compare(pinned, {"clean": {"lotus": {"acc_forget": 0.5}}}, 1e-6) == [
        "clean/lotus/mia: missing (pinned nan)"
    ]
    assert golden.volatile("time_s") and golden.volatile("rte") and not golden.volatile("acc_forget")


def test_a_method_whose_version_moved_is_skipped_and_listed_not_failed(tmp_path, monkeypatch, capsys):
    record = {
        "machine": golden.machine(),
        "results": {"clean": {"lotus": {"acc_forget": 0.5}, "unsir": {"acc_forget": 0.5}}},
        "identities": {"clean": {"lotus": "aaa", "unsir": "bbb"}},
        "versions": {"lotus": 2, "unsir": 2},
    }
    pinned = tmp_path / "golden_results.json"
    pinned.write_text(json.dumps(record))
    monkeypatch.setattr(golden, "GOLDEN", pinned)
    measured = {
        "clean": {"lotus": {"acc_forget": 0.5}, "unsir": {"acc_forget": 0.9}},
        "identities": {"clean": {"lotus": "aaa", "unsir": "ccc"}},
    }
    monkeypatch.setattr(golden, "measure", lambda: measured)

    monkeypatch.setattr(golden, "versions", lambda: {"lotus": 2, "unsir": 3})  # unsir bumped on purpose
    assert golden.check() == []
    assert golden.main([]) == 0
    assert "skipped: unsir: version moved 2->3" in capsys.readouterr().out

    monkeypatch.setattr(golden, "versions", lambda: {"lotus": 2, "unsir": 2})  # not bumped: still compared
    assert golden.check() == [
        "clean/unsir/acc_forget: 0.9 != pinned 0.5",
        "clean/unsir: run identity ccc != pinned bbb (stored runs would be recomputed)",
    ]
    del record["versions"]  # a record pinned without versions compares every method
    pinned.write_text(json.dumps(record))
    monkeypatch.setattr(golden, "versions", lambda: {"lotus": 2, "unsir": 3})
    assert golden.skips() == {} and len(golden.check()) == 2
