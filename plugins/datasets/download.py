"""torchvision downloads that fail fast and cleanly offline.

A blocked network must become a one-line DataError saying where to put the files, never a hang
(every socket gets a 10 s timeout) and never a traceback. torchvision's own prints and progress
bars are swallowed: the core owns the terminal.
"""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import zlib
from collections.abc import Callable

from unlearnkit import DataError

DOWNLOAD_TIMEOUT_S = 10.0
# What a failed or interrupted download can raise (URLError and timeouts are OSErrors; torchvision
# raises RuntimeError for bad checksums and exhausted mirrors).
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, zlib.error)


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as a single short line (torchvision's messages span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_download(fetch: Callable[[], object], *, title: str, fix: str) -> None:
    """Call ``fetch`` (a torchvision download) with a socket timeout; failures raise DataError with ``fix``."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fetch()
    except _DOWNLOAD_ERRORS as err:
        raise DataError(f"Could not download {title} ({one_line(err)}). {fix}") from err
    finally:
        socket.setdefaulttimeout(previous)
