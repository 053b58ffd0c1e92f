"""How a run that does not finish ends: one exit code per kind of ending, one line on the console.

0 every gate passed, 1 a gate failed, 2 bad input (RkverifyError: file, field, fix), 3 an internal
or environment failure (the line says what failed; the traceback goes to a log file, never to the
console), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Light on imports: this runs before anything heavy is loaded.
"""
from __future__ import annotations

import errno
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from convert.signals import Terminated
from core.errors import RkverifyError

PASSED, GATE_FAILED, BAD_INPUT, FAILED, INTERRUPTED, TERMINATED = 0, 1, 2, 3, 130, 143
STEP_NOTE = "during step: "  # convert.progress.step adds it to an exception that leaves a step


def report_failure(exc: BaseException, error_log: Path) -> int:
    """Print the one line for `exc` and return its exit code (3: the traceback is written to `error_log`)."""
    if isinstance(exc, RkverifyError):
        print(f"rkverify: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    if isinstance(exc, Terminated):  # SIGTERM (convert.signals): cleaned up as Ctrl-C is
        print("rkverify: terminated (SIGTERM); nothing half-written was kept: earlier models, calibration sets and "
              "reports are as they were", file=sys.stderr)
        return TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        print("rkverify: interrupted; nothing half-written was kept: earlier models, calibration sets and "
              "reports are as they were", file=sys.stderr)
        return INTERRUPTED
    written = write_traceback(exc, error_log)
    where = f"full traceback in {written}" if written else "the traceback could not be written either"
    print(f"rkverify: failed{_step_of(exc)}: {what_failed(exc)} ({where})", file=sys.stderr)
    return FAILED


def what_failed(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        target = Path(exc.filename) if exc.filename else None
        free = _free_space(target) if target else ""
        writing = f" writing {target}" if target else ""
        return f"no space left on device{writing}{free}; free some space (or move models/ and reports/) and re-run"
    if isinstance(exc, OSError) and exc.filename:
        return f"{type(exc).__name__}: {exc.strerror} ({exc.filename})"
    text = " ".join(str(exc).split())  # one line, whatever the exception's own message looks like
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def write_traceback(exc: BaseException, error_log: Path) -> Path | None:
    """The traceback in `error_log`, or in the temp folder when that cannot be written (full disk)."""
    text = "".join(traceback.format_exception(exc))
    for path in (error_log, Path(tempfile.gettempdir()) / "rkverify-last-error.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def _step_of(exc: BaseException) -> str:
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith(STEP_NOTE)]
    return f" during '{notes[0].removeprefix(STEP_NOTE)}'" if notes else ""


def _free_space(path: Path) -> str:
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return ""
    usage = shutil.disk_usage(existing)
    return f" ({usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.1f} MB there)"
