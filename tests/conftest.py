"""Shared fixtures. Every test runs in a workspace of its own (RKVERIFY_WORKSPACE: its models/,
calib_data/, reports/), so none reads what another test built and any test runs alone; real runs
of a shipped recipe happen once per session per recipe, each in its own workspace."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.recipe import PROJECT_ROOT
from core.workspace import CACHE_ENV, WORKSPACE_ENV
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


def workspace_of(run_dir: Path) -> Path:
    """The workspace a run wrote to: its run folder is <workspace>/reports/<recipe>/<run-id>."""
    return run_dir.parents[2]


WorkspaceFor = Callable[[str], contextlib.AbstractContextManager[Path]]


@pytest.fixture(scope="session", autouse=True)
def session_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The content-keyed caches (embeddings, detections, memoised runs) are shared by the session's
    tests, and by pytest-xdist's workers (their temp folders share a parent); a workspace of the session
    holds whatever a module- or session-scoped fixture writes before a test's own is set."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(shared / "cache"))
        patch.setenv(WORKSPACE_ENV, str(tmp_path_factory.mktemp("session-workspace")))
        yield


@pytest.fixture(scope="session")
def workspace_for(tmp_path_factory: pytest.TempPathFactory) -> WorkspaceFor:
    """`with workspace_for(label) as folder:` a new workspace in effect for the block."""

    @contextlib.contextmanager
    def use(label: str) -> Iterator[Path]:
        folder = tmp_path_factory.mktemp(label)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(WORKSPACE_ENV, str(folder))
            yield folder

    return use


@pytest.fixture(autouse=True)
def workspace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own workspace (not tmp_path: tests list what their tmp_path holds)."""
    folder = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv(WORKSPACE_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def fresh_run(workspace_for: WorkspaceFor) -> Callable[[str], Path]:
    """`fresh_run(name)`: one real run per recipe per session (rknn-toolkit2 build + simulator), in a
    workspace of its own (`workspace_of(run_dir)` holds its models/ and calib_data/)."""
    import rkverify

    runs: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in runs:
            with workspace_for(f"run-{name}"):
                run_dir = rkverify.run(name, ci_overrides(name))
            # keep the HTML/JSON as CI artifacts in the checkout's reports/
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
