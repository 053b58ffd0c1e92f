"""What a run holds while it writes models/<name>/ and calib_data/<set>/: a lock per folder (two runs
that would write the same files take turns), and the folders as they were before the run, restored
when the run does not finish (bad input found late, a crash, Ctrl-C, SIGTERM).

Every artifact is written to a temp path and renamed, so the folders' previous files can be kept as
hard links (no copy of a 100 MB calibration set): a rename puts a new file in place and leaves the
linked one as it was. Small files (logs that a run may append to) are copied instead.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

COPY_BELOW_BYTES = 1 << 20  # smaller files are copied: a log may be appended to in place
FAILED_BUILD_LOG = ".build.log.partial"  # convert.rknn_build: a build's log until the .rknn is in place


def lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def backup_of(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.before-run-{os.getpid()}"


@contextlib.contextmanager
def folders_locked(folders: list[Path]) -> Iterator[None]:
    """Exclusive locks on `folders` (sorted, so two runs never wait on each other in a cycle); a run
    that finds one taken says so and waits for the other run to finish."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(set(folders)):
            path = lock_file(folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(path, "a+"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"[rkverify] another run is writing {folder}: waiting for it to finish", file=sys.stderr,
                      flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _keep(src: str, dst: str) -> None:
    if os.path.getsize(src) >= COPY_BELOW_BYTES:
        try:
            os.link(src, dst)
            return
        except OSError:  # a file system without hard links: a copy keeps it all the same
            pass
    shutil.copy2(src, dst)


@contextlib.contextmanager
def kept_unless_finished(folders: list[Path]) -> Iterator[None]:
    """Run the block; if it does not finish (any exception, interrupts included), put `folders` back
    as they were before it (a folder the block created is removed). Hold `folders_locked` around it."""
    kept: dict[Path, Path | None] = {}
    for folder in dict.fromkeys(folders):
        backup = backup_of(folder)
        shutil.rmtree(backup, ignore_errors=True)
        if folder.is_dir():
            shutil.copytree(folder, backup, symlinks=True, copy_function=_keep)
            kept[folder] = backup
        else:
            kept[folder] = None
    try:
        yield
    except BaseException as exc:
        # a second Ctrl-C / SIGTERM waits until the folders are whole again
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for folder, before in kept.items():
                # a failed build's log stays for the user (its error line names it); an interrupt keeps nothing
                logs = [] if isinstance(exc, KeyboardInterrupt) else sorted(folder.glob(f"*{FAILED_BUILD_LOG}"))
                restore(folder, before, logs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    finally:
        for left in kept.values():
            if left is not None:
                shutil.rmtree(left, ignore_errors=True)


def restore(folder: Path, backup: Path | None, logs: list[Path]) -> None:
    """`folder` as `backup` holds it (None: the folder did not exist), plus the failed build `logs`."""
    if folder.exists():
        trash = folder.with_name(f".{folder.name}.failed-run-{os.getpid()}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(folder, trash)
        if backup is not None:
            os.replace(backup, folder)
        elif logs:
            folder.mkdir()
        for log in logs:
            os.replace(trash / log.name, folder / log.name)
        shutil.rmtree(trash, ignore_errors=True)
    elif backup is not None:
        os.replace(backup, folder)
