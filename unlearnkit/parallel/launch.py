"""The launcher ``unlearnkit run --nproc N`` re-executes itself under: torchrun's own
(``torch.distributed.run``, the same arguments and elastic agent), except how it ends.

torchrun exits 1 whenever a rank fails and prints a traceback of its own ``ChildFailedError``
with a failure summary, after the rank already printed its one-line error: a refused option
(exit 2 in one process) became 1 and thirty lines. Here the launcher exits with the status of
the rank that failed first (the others are stopped by torchrun, with SIGTERM) and adds one line
only when no rank could say why: a rank killed by a signal.
"""

from __future__ import annotations

import logging
import signal
import sys


def exit_status(exitcode: int) -> int:
    """A shell's exit status for a rank's ``exitcode`` (negative: killed by that signal)."""
    return exitcode if exitcode >= 0 else 128 - exitcode


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def main(argv: list[str] | None = None) -> int:
    from torch.distributed import run as torchrun_cli
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # "failed (exitcode: 2) local_rank: 0 ...": the failure is the rank's own line, or ours below
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        torchrun_cli.run(torchrun_cli.parse_args(argv))
    except ChildFailedError as failed:
        rank, first = failed.get_first_failure()
        if first.exitcode < 0:
            print(
                f"Error: rank {rank} was killed by {signal_name(-first.exitcode)}; torchrun stopped the other ranks. "
                "Run the same command again to resume.",
                file=sys.stderr,
            )
        return exit_status(first.exitcode)
    except SignalException as stopped:  # Ctrl-C or SIGTERM: the ranks said "Interrupted" themselves
        return 128 + int(stopped.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
