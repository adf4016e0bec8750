"""The ``unlearnkit`` command run in the test process, for tests that read its output."""

from __future__ import annotations

from typing import Any

import pytest


def invoke(argv: list[str], capsys: Any) -> tuple[Any, str, str]:
    """``main(argv)`` -> (exit code, stdout, stderr); a command that returns normally exits 0."""
    from unlearnkit.cli import console as con
    from unlearnkit.cli import main

    quiet = con.out.quiet, con.err.quiet  # a rank other than 0 silences the consoles for its process
    try:
        with pytest.raises(SystemExit) as exc:
            main(argv)
            raise SystemExit(0)
    finally:
        con.out.quiet, con.err.quiet = quiet
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err
