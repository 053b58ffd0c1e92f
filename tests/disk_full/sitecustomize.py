"""A full disk where a tmpfs cannot be mounted (containers without CAP_SYS_ADMIN, CI runners): with
RKVERIFY_TEST_DISK_FOLDER set, files opened for writing under that folder fail with ENOSPC once
RKVERIFY_TEST_DISK_BYTES bytes were written there, as write(2) does on a full device. Loaded by Python
at start-up when this folder is on PYTHONPATH (tests/test_exit_codes.py); nothing else imports it."""
from __future__ import annotations

import builtins
import errno
import os
from typing import Any

_FOLDER = os.environ.get("RKVERIFY_TEST_DISK_FOLDER")

if _FOLDER:
    _capacity = int(os.environ["RKVERIFY_TEST_DISK_BYTES"])
    _written = [0]
    _open = builtins.open

    class _OnSmallDisk:
        def __init__(self, handle: Any) -> None:
            self._handle = handle

        def write(self, data: bytes) -> int:
            if _written[0] + len(data) > _capacity:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # write(2) names no file
            _written[0] += len(data)
            return self._handle.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._handle, name)

        def __enter__(self) -> _OnSmallDisk:
            self._handle.__enter__()
            return self

        def __exit__(self, *exc: object) -> Any:
            return self._handle.__exit__(*exc)

    def _open_on_small_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = _open(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax") and isinstance(file, str | os.PathLike) and \
                os.path.abspath(os.fspath(file)).startswith(_FOLDER + os.sep):
            return _OnSmallDisk(handle)
        return handle

    builtins.open = _open_on_small_disk
