"""Shared fixtures: one real conversion + verification run of the default recipe per session."""
from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path

import pytest

from core.recipe import PROJECT_ROOT
from verify.report.run_report import render_index

RECIPES = PROJECT_ROOT / "convert" / "recipes"


RECIPE_NAMES = sorted(p.stem for p in RECIPES.glob("*.yaml"))
# CI measures recognizers on LFW's first View 2 fold (600 pairs); full runs live in benchmarks/
CI_VERIFICATION = {"evaluate.verification.max_folds": 1}


def ci_overrides(name: str) -> dict[str, object]:
    from core.recipe import load_recipe

    return CI_VERIFICATION if load_recipe(name).recipe.evaluate.verification is not None else {}


# With pytest-xdist (--dist loadgroup), tests are grouped by the models/ folder their runs write:
# a recipe's runs happen once, on one worker, and two workers never rebuild the same artifacts at once
# (a recognizer whose quantized run aligns with the quantized detector writes the detector's folder).
RUN_FIXTURES = {"retinaface_run": "retinaface", "retinaface_metrics": "retinaface"}


def recipe_of(item: pytest.Item) -> str | None:
    """The recipe whose run (fresh_run, the retinaface fixtures) or conversion (convert_all) a test uses."""
    names = getattr(item, "fixturenames", ())
    for fixture, recipe in RUN_FIXTURES.items():
        if fixture in names:
            return recipe
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "fresh_run" in names and isinstance(params.get("name"), str):
        return params["name"]
    source = inspect.getsource(item.obj) if hasattr(item, "obj") else ""
    for argument in re.findall(r"(?:fresh_run|convert_all)\(([^,)]+)", source):  # a literal or a module constant
        value = argument.strip("\"'") if argument[0] in "\"'" else getattr(item.module, argument, None)
        if isinstance(value, str):
            return value
    return "fresh_run" if "fresh_run" in names else None


def models_folder_of(recipe: str) -> str:
    """The recipe's group: its own models/ folder, or its detector's when it writes that one too."""
    from core.recipe import RECIPES_DIR, load_recipe

    if not (RECIPES_DIR / f"{recipe}.yaml").is_file():
        return recipe
    verification = load_recipe(recipe).recipe.evaluate.verification
    if verification and verification.full_pipeline and not verification.detector_input:
        return verification.detector
    return recipe


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        recipe = recipe_of(item)
        if recipe:
            item.add_marker(pytest.mark.xdist_group(models_folder_of(recipe)))


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
