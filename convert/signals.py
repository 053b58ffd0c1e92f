"""SIGTERM ends a run as Ctrl-C does. CI runners, `timeout`, schedulers and a pool stopping its workers
send SIGTERM, whose default action kills the process on the spot: no finally block runs, so temp
folders, `.partial` logs and half-built state stay behind and the console gets no line. Raised as an
exception (a KeyboardInterrupt, so every path that cleans up after Ctrl-C cleans up after it too),
it unwinds the run: the one line, exit 143 (128 + SIGTERM, what a shell reports)."""
from __future__ import annotations

import signal
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises Terminated in the main thread (signal handlers live there only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)
