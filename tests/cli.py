"""Run rkverify.py as a user does: a subprocess, its exit code and its console."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.recipe import PROJECT_ROOT


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stderr.strip().splitlines()[-1] if self.stderr.strip() else ""


def rkverify(*args: str, root: Path = PROJECT_ROOT, python_flags: tuple[str, ...] = (), timeout: float = 900,
             env: dict[str, str] | None = None) -> Result:
    done = subprocess.run([sys.executable, *python_flags, str(root / "rkverify.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout, env=env)
    return Result(done.returncode, done.stdout, done.stderr)
