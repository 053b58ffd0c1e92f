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


# tests that read a recipe's run (the session fixtures below) are grouped by that recipe, so that with
# pytest-xdist (--dist loadgroup) each recipe runs once, on one worker
RUN_FIXTURES = {"retinaface_run": "retinaface", "retinaface_metrics": "retinaface"}


def recipe_group(item: pytest.Item) -> str | None:
    names = getattr(item, "fixturenames", ())
    for fixture, recipe in RUN_FIXTURES.items():
        if fixture in names:
            return recipe
    if "fresh_run" not in names:
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    if isinstance(params.get("name"), str):
        return params["name"]
    source = inspect.getsource(item.obj) if hasattr(item, "obj") else ""
    for argument in re.findall(r"fresh_run\(([^)]+)\)", source):  # a literal, or a module constant
        value = argument.strip("\"'") if argument[0] in "\"'" else getattr(item.module, argument, None)
        if isinstance(value, str):
            return value
    return "fresh_run"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = recipe_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


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
