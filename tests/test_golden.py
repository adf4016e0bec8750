"""The golden numbers of the last release reproduce (``tests/golden.py``): every built-in method
on digits under both protocols, exactly on the machine that pinned them, within floating-point
drift elsewhere. Slow (two whole runs, about two minutes on 2 cores): ``pytest -m slow``."""

from __future__ import annotations

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
