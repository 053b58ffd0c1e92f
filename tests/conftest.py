"""Shared fixtures: one real conversion + verification run of the default recipe per session."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from convert.recipe import PROJECT_ROOT

RECIPES = PROJECT_ROOT / "convert" / "recipes"


@pytest.fixture(scope="session")
def retinaface_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, real run of convert/recipes/retinaface.yaml (rknn-toolkit2 build + simulator)."""
    import rkverify

    reports = tmp_path_factory.mktemp("reports")
    run_dir = rkverify.run("retinaface", reports_dir=reports)
    # keep the HTML/JSON as CI artifacts next to the project's reports
    keep = PROJECT_ROOT / "reports" / "retinaface" / run_dir.name
    if not keep.exists():
        shutil.copytree(run_dir, keep)
    return run_dir


@pytest.fixture(scope="session")
def retinaface_metrics(retinaface_run: Path) -> dict:
    return json.loads((retinaface_run / "metrics.json").read_text())


@pytest.fixture()
def recipe_copy(tmp_path: Path):
    """Write a variant of a shipped recipe to tmp_path; `edit(text) -> text` changes it."""

    def make(edit, name: str = "retinaface") -> Path:
        text = (RECIPES / f"{name}.yaml").read_text()
        path = tmp_path / f"{name}.yaml"
        path.write_text(edit(text))
        return path

    return make
