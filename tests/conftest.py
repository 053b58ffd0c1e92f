"""Shared fixtures: one real conversion + verification run of the default recipe per session."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.recipe import PROJECT_ROOT
from verify.report.run_report import render_index

RECIPES = PROJECT_ROOT / "convert" / "recipes"


RECIPE_NAMES = sorted(p.stem for p in RECIPES.glob("*.yaml"))
# CI measures recognizers on LFW's first View 2 fold (600 pairs); full runs live in benchmarks/
CI_VERIFICATION = {"evaluate.verification.max_folds": 1}
# pipelines too slow for a whole fold in CI: a seeded subset of fold 1's pairs (evaluate.verification.max_pairs).
# facenet-mtcnn-pipeline makes MTCNN's rows float and quantized in one process, then 4 FaceNet embedding sets
# (the stage split): ~15 minutes cold on fold 1, ~4 on 150 pairs
CI_MAX_PAIRS = {"facenet-mtcnn-pipeline": 150}


def ci_overrides(name: str) -> dict[str, object]:
    from core.recipe import load_recipe

    if load_recipe(name).recipe.evaluate.verification is None:
        return {}
    return CI_VERIFICATION | ({"evaluate.verification.max_pairs": CI_MAX_PAIRS[name]} if name in CI_MAX_PAIRS else {})


@pytest.fixture(scope="session")
def fresh_run(tmp_path_factory: pytest.TempPathFactory):
    """`fresh_run(name)`: one real run per recipe per session (rknn-toolkit2 build + simulator)."""
    import rkverify

    runs: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in runs:
            run_dir = rkverify.run(name, ci_overrides(name), reports_dir=tmp_path_factory.mktemp(f"reports-{name}"))
            # keep the HTML/JSON as CI artifacts next to the project's reports
            keep = PROJECT_ROOT / "reports" / name / run_dir.name
            if not keep.exists():
                shutil.copytree(run_dir, keep)
                render_index(PROJECT_ROOT / "reports")
            runs[name] = run_dir
        return runs[name]

    return run


@pytest.fixture(scope="session")
def retinaface_run(fresh_run) -> Path:
    return fresh_run("retinaface")


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
