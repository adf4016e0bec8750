"""The ``unlearnkit`` command line: typer + rich, one error boundary, the only place that prints.

Built-in commands are imported eagerly (they are light); plugins — and so torch — load only
when a command needs them, which keeps ``unlearnkit --help`` instant.
"""

from __future__ import annotations

import sys

import click
import typer

from unlearnkit import interrupts
from unlearnkit.cli import console as con
from unlearnkit.errors import UnlearnkitError

app = typer.Typer(
    name="unlearnkit",
    help="Benchmark machine-unlearning methods (LoTUS and baselines) and keep every result in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from unlearnkit.cli import leaderboard as _leaderboard  # noqa: E402,F401  (commands register on import)
from unlearnkit.cli import listing as _listing  # noqa: E402,F401
from unlearnkit.cli import run as _run  # noqa: E402,F401
from unlearnkit.cli import sweep as _sweep  # noqa: E402,F401

BUILTIN = {"run", "sweep", "leaderboard", "list", "show", "plugins"}


def _wants_plugin_command(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] not in BUILTIN


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: UnlearnkitError -> one red line and a non-zero exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C and SIGTERM interrupt cleanly (the unfinished run is marked failed), even when the
    # parent shell started us with SIGINT ignored (background jobs).
    interrupts.install()
    try:
        if _wants_plugin_command(argv):
            from unlearnkit.plugins import get_host

            get_host().pm.hook.register_commands(app=app)
        code = app(args=argv, prog_name="unlearnkit", standalone_mode=False)
    except UnlearnkitError as err:
        con.error(str(err))
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        con.error("Aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        code = 130
    # typer turns KeyboardInterrupt into exit code 130 and returns exit codes in this mode
    if code == 130:
        con.error("Interrupted: the unfinished run is marked failed in the store and never counted.")
    if isinstance(code, int) and code:
        sys.exit(code)
