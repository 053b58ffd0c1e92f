"""rknn-toolkit2 leaves nothing in the checkout and keeps its progress bars off the console.

The toolkit writes check*.onnx debug graphs into its working directory and prints progress bars
on fd 2 from C and Python alike; only a separate process shows what reaches the real console.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.recipe import PROJECT_ROOT

NOT_OURS = {".git", ".tox", ".ci-venv"}  # git's store and installed environments
TOOLKIT_BARS = ("GraphPreparing", "SessionPreparing")


@dataclass
class Session:
    out: Path
    returncode: int
    console: str  # stdout + stderr as the real fds 1 and 2 received them
    status_before: str
    status_after: str


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=True).stdout


def debris(root: Path) -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in NOT_OURS]
        found += [Path(folder) / f for f in files if f.startswith("check") and f.endswith(".onnx")]
    return found


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """tests/toolkit_session.py run from the checkout, as `rkverify.py run` is."""
    out = tmp_path_factory.mktemp("toolkit-session")
    before = git_status()
    done = subprocess.run([sys.executable, "-m", "tests.toolkit_session", str(out)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=1200)
    return Session(out, done.returncode, done.stdout + done.stderr, before, git_status())


def test_hybrid_and_float16_builds_leave_the_checkout_clean(session: Session) -> None:
    assert session.returncode == 0, session.console[-3000:]
    # what the builds added to `git status` (empty on a fresh clone before and after)
    assert session.status_after == session.status_before
    assert debris(PROJECT_ROOT) == []
    assert debris(session.out) == []  # nor beside the artifacts (hybrid step 1's folder, calibration set)
    step1 = next((session.out / "models" / "retinaface" / "hybrid").iterdir())
    assert sorted(p.suffix for p in step1.iterdir() if not p.name.startswith("hybrid-")) == [".cfg", ".data", ".model"]


def test_toolkit_progress_bars_go_to_the_log_not_the_console(session: Session) -> None:
    assert session.returncode == 0, session.console[-3000:]
    log = Path(json.loads((session.out / "session.json").read_text())["log"]).read_text(errors="replace")
    for bar in TOOLKIT_BARS:
        assert bar not in session.console, bar
        assert log.count(bar) >= 2, bar  # one per simulator session: hybrid and float16
    # the suite's own lines still reach the console
    assert session.console.count("[session]") == 2 and "on the simulator" in session.console
