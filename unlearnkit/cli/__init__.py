"""The ``unlearnkit`` command line: typer + rich, one error boundary, the only place that prints.

Built-in commands are imported eagerly (they are light); plugins — and so torch — load only
when a command needs them, which keeps ``unlearnkit --help`` instant.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Annotated, Any

import typer

from unlearnkit import __version__
from unlearnkit.cli import console as con
from unlearnkit.errors import UnlearnkitError, disk_full, one_line, shorten
from unlearnkit.store import interrupts

app = typer.Typer(
    name="unlearnkit",
    help="Benchmark machine-unlearning methods (LoTUS and baselines) and keep every result in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        con.out.print(f"unlearnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark machine-unlearning methods (LoTUS and baselines) and keep every result in MLflow."""


NOT_COMMANDS = ("console", "shared")  # this package's modules that only serve the commands
FIRST_COMMAND = "run"  # leads `unlearnkit --help`; the other commands follow by module name


def _load_commands() -> set[str]:
    """Import every command module of this package (each registers its command on ``app``) and
    return the built-in command names; a new command is a new module here, nothing else."""
    import pkgutil

    names = [info.name for info in pkgutil.iter_modules(__path__) if info.name not in NOT_COMMANDS]
    for name in sorted(names, key=lambda name: name != FIRST_COMMAND):
        importlib.import_module(f"{__name__}.{name}")
    one_line_summaries()
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    groups = {g.name or (g.typer_instance.info.name if g.typer_instance else None) for g in app.registered_groups}
    return commands | {name for name in groups if name}  # and the command groups (`store check`)


def one_line_summaries() -> None:
    """Each command's summary in `unlearnkit --help` as the one line it is: typer's rich help keeps
    the line breaks of a docstring's first paragraph there, so a summary wrapped at 100 columns in
    the source broke mid-sentence in the list of commands."""
    groups = [g.typer_instance for g in app.registered_groups if g.typer_instance]
    for info in [*app.registered_commands, *(c for group in groups for c in group.registered_commands)]:
        doc = info.short_help or info.help or inspect.getdoc(info.callback) or ""
        first = doc.split("\n\n", 1)[0]
        if "\n" in first:
            info.short_help = " ".join(first.split())


BUILTIN = _load_commands()


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` (ClickException, Exit, Abort) from every click the installed typer may raise:
    the click package and typer's vendored copy (typer >= 0.29), plus typer's own classes."""
    found: list[type[BaseException]] = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions", "typer"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


CLICK_ERRORS = _exception_classes("ClickException")
EXITS = _exception_classes("Exit")
ABORTS = _exception_classes("Abort")


LONG_WORD = 200  # a word of a usage error longer than this is the user's own blob, echoed shortened


def given_value(argv: list[str], opts: list[str]) -> str | None:
    """The value typed after one of ``opts`` (``--epochs abc`` or ``--epochs=abc``)."""
    for i, word in enumerate(argv):
        for opt in opts:
            if word == opt and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(opt + "="):
                return word[len(opt) + 1 :]
    return None


def usage_message(exc: Any, argv: list[str] | None = None) -> str:
    """A click usage error as one line: what was wrong, the value typed, the valid choices, where to read more."""
    text = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command", None)
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", None) or [])
    value = given_value(argv or [], opts) if opts else None
    if type(exc).__name__ == "BadParameter" and value is not None:
        text = f"Bad value '{shorten(value)}' for {opts[0]}: {text.split(': ', 1)[-1]}"
    elif type(exc).__name__ == "NoSuchOption" and command is not None and not getattr(exc, "possibilities", None):
        options = sorted(o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--"))
        if options:
            text = text if text.endswith((".", "?", "!")) else text + "."
            text += f" Valid options: {', '.join(options)}."
    elif type(exc).__name__ == "MissingParameter" and param is not None and getattr(param, "help", None):
        text += f" Expected: {param.help}."
    elif "No such command" in text and command is not None and hasattr(command, "commands"):
        text += f" Valid commands: {', '.join(sorted(command.commands))}."
    text = " ".join(shorten(word) if len(word) > LONG_WORD else word for word in text.split(" "))  # a pasted blob
    if ctx is not None and getattr(ctx, "command_path", None):
        text = text if text.endswith((".", "?", "!")) else text + "."
        text += f" See '{ctx.command_path} --help'."
    return text


def _wants_plugin_command(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] not in BUILTIN


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: UnlearnkitError and usage errors -> one red line, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C and SIGTERM interrupt cleanly (the unfinished run is marked failed), even when the
    # parent shell started us with SIGINT ignored (background jobs).
    interrupts.install()
    try:
        if _wants_plugin_command(argv):
            from unlearnkit.discovery.host import get_host

            get_host().pm.hook.register_commands(app=app)
            one_line_summaries()
        code = app(args=argv, prog_name="unlearnkit", standalone_mode=False)
    except UnlearnkitError as err:
        con.error(one_line(str(err)))
        sys.exit(err.exit_code)
    except EXITS as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except ABORTS:
        con.error("Aborted.")
        sys.exit(130)
    except CLICK_ERRORS as exc:
        con.error(usage_message(exc, argv))
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a full disk, however deep a library wrapped it, is one line too; the rest are bugs
        ddp = sys.modules.get("unlearnkit.parallel.torchrun")  # loaded only when torch is: --help stays light
        known = (ddp.peer_lost(exc) if ddp is not None else None) or disk_full(exc)  # a rank whose peer went away
        if known is None:
            raise
        con.error(str(known))
        sys.exit(known.exit_code)
    # typer turns KeyboardInterrupt into exit code 130 and returns exit codes in this mode
    if code == 130:
        con.error("Interrupted: an unfinished run is never counted; run the same command again to resume.")
    if isinstance(code, int) and code:
        sys.exit(code)
