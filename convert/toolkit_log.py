"""Send rknn-toolkit2's console output (hundreds of debug lines per build) to a log file."""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from convert.signals import Terminated

ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIBC = ctypes.CDLL(None)


def _flush_all() -> None:
    """Flush Python's and the C runtime's buffers (the toolkit's C++ logs use the latter)."""
    sys.stdout.flush()
    sys.stderr.flush()
    _LIBC.fflush(None)


@contextlib.contextmanager
def interrupts_kept() -> Iterator[None]:
    """rknn-toolkit2 catches what its calls raise, Ctrl-C's KeyboardInterrupt included, and can carry
    on (a build interrupted this way once ran to the end and exited 0): a SIGINT (or SIGTERM) seen
    during the block is raised again when the block ends."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return
    seen: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        seen.append(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    previous_term = signal.signal(signal.SIGTERM, interrupt)  # SIGTERM too (convert.signals)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)
    if seen:
        raise Terminated if signal.SIGTERM in seen else KeyboardInterrupt


@contextlib.contextmanager
def toolkit_output_to(log_file: Path) -> Iterator[None]:
    """Redirect fds 1 and 2 (the toolkit's C++ and Python logs both use them) to `log_file`, keeping
    a Ctrl-C the toolkit would swallow."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    _flush_all()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with interrupts_kept():
                yield
        finally:
            _flush_all()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def last_error(log_file: Path) -> str:
    """The toolkit's last 'E ...' line, for a one-line error message."""
    lines = ANSI.sub("", log_file.read_text(errors="replace")).splitlines() if log_file.exists() else []
    errors = [line[2:].strip() for line in lines if line.startswith("E ")]
    return errors[-1] if errors else "no error line in the toolkit log"
