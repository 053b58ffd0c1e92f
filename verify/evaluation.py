"""One verification run: the run's state set up, its steps run (verify/steps.py), the report written.

Everything is written to a temp folder and renamed to reports/<recipe>/<run-id>/ at the
end, so a failed run never leaves a half report and never touches earlier runs.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from convert.pipeline import Artifacts
from core.artifacts import atomic_dir, tool_versions, utc_now, write_json_atomic
from core.recipe import LoadedRecipe
from core.runner import Runner
from verify.engines.run_models import rknn_runner
from verify.engines.runners import OnnxRuntimeRunner
from verify.history import compare_runs, runs_of
from verify.report.run_report import draw_overlay, render_index, render_report
from verify.run_state import RunState
from verify.steps import run_steps

if TYPE_CHECKING:
    from verify.finders import FaceFinder

REGRESSION_TOLERANCE = 0.005  # a cosine drop larger than this against the previous run is flagged


def run_id(loaded: LoadedRecipe) -> str:
    """UTC second (ids sort by time) + recipe hash + a random part: two runs of one recipe started in
    the same second must not share (and so replace) one report folder."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{loaded.sha256[:8]}-{secrets.token_hex(3)}"


def verify_artifacts(loaded: LoadedRecipe, artifacts: Artifacts, reports_dir: Path,
                     finder: FaceFinder | None = None, workers: int = 1,
                     ray_address: str | None = None) -> Path:
    """Measure one recipe's artifacts; `finder` (verify.finders) aligns faces for recognizers;
    dataset-sized work runs on `workers` processes (or as that many Ray tasks)."""
    recipe = loaded.recipe
    started = time.perf_counter()
    ident = run_id(loaded)
    final = reports_dir / recipe.name / ident
    with atomic_dir(final) as run_dir:
        log_file = run_dir / "toolkit.log"
        aligner = finder.detector(log_file) if finder else None
        detector_models = (aligner.float, aligner.quantized) if aligner else ()
        runners: dict[str, list[Runner]] = {
            "float": [OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)],
            "quantized": [rknn_runner(artifacts.built, recipe, log_file)],
            "detector": [m.live for m in detector_models if m is not None and m.live is not None]}
        state = RunState(loaded, artifacts, run_dir, workers, ray_address, runners, aligner,
                         metrics=provenance(loaded, artifacts, ident), timings=dict(artifacts.timings))
        run_steps(state)
        if state.overlay is not None:
            draw_overlay(*state.overlay, run_dir / "overlay.jpg")
        metrics = state.metrics
        state.timings["total"] = round(time.perf_counter() - started + sum(artifacts.timings.values()), 3)
        metrics["timings_s"] = state.timings
        earlier = runs_of(reports_dir, recipe.name)
        if earlier:  # the previous run of this recipe is the baseline
            metrics["comparison"] = compare_runs(metrics, run_dir, earlier[-1], REGRESSION_TOLERANCE)
        write_json_atomic(run_dir / "metrics.json", metrics)
        render_report(run_dir)
    render_index(reports_dir)
    return final


def reused_run(loaded: LoadedRecipe, entry: Path, key: str, folders: dict[str, Path], reports_dir: Path) -> Path:
    """A stored run (verify/reuse.py) as a run folder of its own: its folders back in place, its
    measurements compared with this reports folder's previous run, its report and the index rendered."""
    from verify.reuse import restore

    earlier = runs_of(reports_dir, loaded.recipe.name)
    final = restore(entry, key, folders, reports_dir / loaded.recipe.name / run_id(loaded))
    metrics = json.loads((final / "metrics.json").read_text())
    metrics.pop("comparison", None)
    if earlier:
        metrics["comparison"] = compare_runs(metrics, final, earlier[-1], REGRESSION_TOLERANCE)
    write_json_atomic(final / "metrics.json", metrics)
    render_report(final)
    render_index(reports_dir)
    return final


def provenance(loaded: LoadedRecipe, artifacts: Artifacts, ident: str) -> dict[str, object]:
    """Where the run comes from: recipe (path, hash, content), artifacts, tools, calibration set."""
    recipe = loaded.recipe
    metrics: dict[str, object] = {
        "recipe": recipe.name, "run_id": ident, "created_at": utc_now(), "recipe_path": str(loaded.path),
        "recipe_sha256": loaded.sha256, "recipe_content": recipe.model_dump(mode="json"),
        "provenance": artifacts.built.provenance, "tools": tool_versions(),
        "calibration": {k: artifacts.calibration[k] for k in ("requested", "used", "available")}
        | {"images": [e["image"] for e in artifacts.calibration["images"]]},
        "speed": {}}
    if artifacts.native_check:
        metrics["frontend_check"] = {"framework": recipe.source.framework,
                                     "worst_cosine_on_calibration_inputs": artifacts.native_check,
                                     "renamed_params": artifacts.renamed_params}
    return metrics
