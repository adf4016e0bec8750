"""The ``unlearnkit`` command run in the test process, for tests that read its output."""

from __future__ import annotations

from typing import Any

import pytest


def invoke(argv: list[str], capsys: Any) -> tuple[Any, str, str]:
    """``main(argv)`` -> (exit code, stdout, stderr); a command that returns normally exits 0."""
    from unlearnkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err
