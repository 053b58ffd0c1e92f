"""The install works on a user's machine: requirements/ and tox.ini name no path of this project's
machines, and the tox environment's requirements resolve with no find-links folder at all."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from core.recipe import PROJECT_ROOT

REQUIREMENTS = PROJECT_ROOT / "requirements"
INSTALL_FILES = [*sorted(REQUIREMENTS.glob("*.txt")), PROJECT_ROOT / "tox.ini"]
# an absolute path as a token ("/opt/x", "C:\x") or a file: URL; not "requirements/base.txt" nor tox's "{/}"
ABSOLUTE = re.compile(r"(?<![\w.{}~-])/[A-Za-z_]\S*|file:/|\b[A-Za-z]:\\")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;#]+)", re.MULTILINE)
# requirement files, and whether uv resolves their dependencies (tox.ini installs the others --no-deps)
RESOLVED = {"base.txt": True, "lint.txt": True, "nodeps.txt": False, "wheels.txt": False}


def pins(text: str) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in PIN.findall(text)}


def test_install_files_name_no_absolute_path_and_no_find_links() -> None:
    found = [f"{path.name}:{number}: {line.strip()}"
             for path in INSTALL_FILES for number, line in enumerate(path.read_text().splitlines(), 1)
             if ABSOLUTE.search(line) or line.lstrip().startswith(("--find-links", "-f "))]
    assert found == [], "the user's own PIP_FIND_LINKS / UV_FIND_LINKS say where local wheels are"
    assert sorted(p.name for p in REQUIREMENTS.glob("*.txt")) == sorted(RESOLVED)


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_requirements_resolve_without_a_find_links_folder(name: str) -> None:
    uv = shutil.which("uv")  # tox-uv puts its own uv on the PATH of the commands it runs
    if uv is None:
        pytest.skip("uv is not on PATH: run the tests through tox (pip install tox tox-uv)")
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "UV_FIND_LINKS")}
    env["UV_FIND_LINKS"] = ""  # what tox.ini hands uv when the user sets neither variable
    command = [uv, "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate",
               "--python", sys.executable, str(REQUIREMENTS / name)]
    if not RESOLVED[name]:
        command.append("--no-deps")
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    wanted, resolved = pins((REQUIREMENTS / name).read_text()), pins(done.stdout)
    assert wanted and {k: resolved.get(k) for k in wanted} == wanted
    if name == "base.txt":  # the toolkit's real dependencies, torch included, come from the index
        assert resolved["torch"] == "2.13.0" and len(resolved) > len(wanted)
