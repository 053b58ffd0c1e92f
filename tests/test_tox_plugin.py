"""`tox -e convert-<name>` for any recipe file (toxfile.py), against a copy of the project: a recipe
added to convert/recipes/ is an environment without an edit to tox.ini, and a name with no recipe
ends in one line listing the recipes. The last test is a real tox run: it creates the copy's own
environment (as a user's first `tox -e convert-<name>` does; uv's cache makes it quick) and runs
the conversion and verification of a small model made here."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.recipe import PROJECT_ROOT
from tests import tiny_models

TOX = shutil.which("tox")
pytestmark = pytest.mark.skipif(TOX is None, reason="tox is not on PATH (pip install tox tox-uv)")
LEFT_OUT = (".tox", ".git", ".ci-venv", "models", "reports", "calib_data", "__pycache__", ".mypy_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with one recipe the project does not ship: tiny-extra.yaml."""
    copy = tmp_path_factory.mktemp("project") / "rkverify"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(*LEFT_OUT))
    model = tiny_models.two_outputs(copy.parent / "tiny-extra.onnx")
    tiny_models.recipe(copy / "convert" / "recipes", model, name="tiny-extra")
    return copy


def tox(project: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOX_", "VIRTUAL_ENV", "RKVERIFY_"))}
    assert TOX is not None
    return subprocess.run([TOX, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_new_recipe_file_is_an_environment(project: Path) -> None:
    listed = tox(project, "list")
    assert listed.returncode == 0, listed.stderr
    assert "convert-tiny-extra" in listed.stdout
    assert "convert-retinaface" in listed.stdout
    shown = tox(project, "config", "-e", "convert-tiny-extra", "-k", "commands", "env_dir", "description")
    assert shown.returncode == 0, shown.stderr
    assert "commands = python rkverify.py run tiny-extra" in shown.stdout
    assert f"env_dir = {project / '.tox' / 'rkverify'}" in shown.stdout  # tox.ini's one shared environment
    assert "convert/recipes/tiny-extra.yaml" in shown.stdout


def test_positional_arguments_reach_the_run(project: Path) -> None:
    shown = tox(project, "config", "-e", "convert-tiny-extra", "-k", "commands", "--", "--set", "evaluate.count=2")
    assert "commands = python rkverify.py run tiny-extra --set evaluate.count=2" in shown.stdout, shown.stdout


def test_a_name_without_a_recipe_lists_the_recipes_in_one_line(project: Path) -> None:
    result = tox(project, "-e", "convert-tiny-extar")
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "convert-tiny-extar: no such recipe" in lines[0]
    assert "tiny-extra" in lines[0] and "retinaface" in lines[0]


def test_tox_runs_a_recipe_tox_ini_does_not_name(project: Path) -> None:
    """Real: tox creates the copy's environment from requirements/ and runs the new recipe (rknn-toolkit2
    build, simulator); a few minutes with a warm uv cache."""
    assert "tiny-extra" not in (project / "tox.ini").read_text()
    result = tox(project, "-e", "convert-tiny-extra", timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "report: " in output and "reports/tiny-extra/" in output
    report = next((project / "reports" / "tiny-extra").glob("*/metrics.json"))
    assert report.is_file()
    shutil.rmtree(project / ".tox")  # ~1.5 GB
