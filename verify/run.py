"""What `rkverify.py run` does for one recipe (variant), as a library call: convert (the aligning
detector first, then aligned calibration faces), verify, report. Sweeps and worker processes call
`run` exactly as the command line does. The recipe is loaded once, here, and handed down."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from convert.preflight import check_paths
from convert.progress import step
from convert.run_guard import folders_locked, kept_unless_finished
from core import workspace
from core.recipe import LoadedRecipe
from verify.recipes import load, variant
from verify.tasks import task_of

if TYPE_CHECKING:  # onnx/onnxsim and friends load only when a run starts
    from convert.pipeline import Artifacts
    from verify.finders import FaceFinder, Plan


def checked(recipe: str | LoadedRecipe, overrides: dict[str, object] | None = None
            ) -> tuple[LoadedRecipe, Plan | None]:
    """The recipe and the detector it aligns faces with (as the recognizer's device runs it: a detector
    recipe or a cascade, verify.finders), their paths checked: bad input answers before any lock is
    waited for or anything is built."""
    loaded = recipe if isinstance(recipe, LoadedRecipe) else load(recipe, overrides)
    check_paths(loaded)
    verification = loaded.recipe.evaluate.verification
    align_with = loaded.recipe.quantization.calibration.align_with
    detector_name = verification.detector if verification and verification.faces == "align" else align_with
    if not detector_name:
        return loaded, None
    from verify.finders import plan

    return loaded, plan(detector_name, loaded)


Converted = tuple[LoadedRecipe, "Artifacts", "FaceFinder | None"]


def convert_all(recipe: str, overrides: dict[str, object] | None = None, models_dir: Path | None = None,
                calib_dir: Path | None = None) -> Converted:
    """Convert a recipe, and first the detector it aligns faces with (if any), into
    `models_dir` (default: the workspace's). Returns (loaded recipe, its artifacts, the detector's finder or None)."""
    return convert_checked(*checked(recipe, overrides), models_dir or workspace.models_dir(),
                           calib_dir or workspace.calib_dir())


def convert_checked(loaded: LoadedRecipe, detector_plan: Plan | None, models_dir: Path,
                    calib_dir: Path) -> Converted:
    """`convert_all` of recipes already loaded and checked. The detector is built in this process
    too: the simulator only runs in-process builds."""
    from convert.pipeline import convert_recipe  # heavy imports (onnx, the toolkit) after every check
    from verify import finders

    if loaded.recipe.target.runtime == "board":  # before any work: say what stops the board run
        from core.artifacts import tool_versions
        from verify.engines.board import preflight

        preflight(loaded.recipe.target.device_id, tool_versions()["rknn-toolkit2"])
    verification = loaded.recipe.evaluate.verification
    finder = None
    if detector_plan is not None:  # its quantized build only when the quantized run aligns with it too
        full_pipeline = bool(verification and verification.faces == "align" and verification.full_pipeline)

        def convert_detector(detector: LoadedRecipe) -> Artifacts:
            # the detector's folders are held while they are written, not for the whole run: recognizers
            # that share a detector run side by side (its files are read, not written, after this)
            shared = recipe_folders(detector, models_dir, calib_dir)
            with folders_locked(shared), kept_unless_finished(shared):
                return convert_recipe(detector, models_dir, float_only=not full_pipeline,
                                      check_graph=task_of(detector.recipe).check_graph)

        finder = finders.build(detector_plan, full_pipeline, convert_detector, convert_all)
    if loaded.recipe.quantization.calibration.align_with:
        assert finder is not None  # align_with names the detector converted above
        loaded = with_aligned_calibration(loaded, finder, calib_dir)
    return loaded, convert_recipe(loaded, models_dir, calib_dir, check_graph=task_of(loaded.recipe).check_graph), finder


def run(recipe: str, overrides: dict[str, object] | None = None, reports_dir: Path | None = None,
        workers: int | None = None, models_dir: Path | None = None, calib_dir: Path | None = None,
        ray_address: str | None = None, fresh: bool = False) -> Path:
    """Convert and verify one recipe; return the run directory. Dataset-sized work runs on
    `workers` processes (default: one per core), or as that many Ray tasks with `ray_address`;
    artifacts go to `models_dir` (a sweep gives each variant its own, and its own calibration folder);
    folders default to the workspace's (core/workspace.py). An unchanged re-run reuses the stored
    run (verify/reuse.py) unless `fresh`; board runs are always measured."""
    reports_dir = reports_dir or workspace.reports_dir()
    models_dir = models_dir or workspace.models_dir()
    calib_dir = calib_dir or workspace.calib_dir()
    loaded, detector_plan = checked(recipe, overrides)
    written = recipe_folders(loaded, models_dir, calib_dir)
    # a detector recipe's folders are kept and restored with the run; a cascade's nets are rebuilt when needed
    detector_written = recipe_folders(detector_plan, models_dir, calib_dir) \
        if isinstance(detector_plan, LoadedRecipe) else []
    if fresh or loaded.recipe.target.runtime == "board":
        return measured(loaded, detector_plan, written, reports_dir, workers, models_dir, calib_dir, ray_address)
    from verify import reuse

    key = reuse.run_key(loaded, detector_plan)
    folders = {str(f.relative_to(f.parents[1])): f for f in written + detector_written}  # models/<name>, ...
    # an identical run under way: wait for it, then reuse it
    with folders_locked([reuse.entry_of(key)]):
        entry = reuse.stored(key)
        if entry is None:
            run_dir = measured(loaded, detector_plan, written, reports_dir, workers, models_dir, calib_dir,
                               ray_address)
            reuse.store(key, run_dir, folders)
            return run_dir
        from verify.evaluation import reused_run

        # the recognizer's folders, then the detector's: the order a measured run takes them in
        with folders_locked(written), folders_locked(detector_written), \
                kept_unless_finished(written + detector_written):
            run_dir = reused_run(loaded, entry, key, folders, reports_dir)
        print(f"[rkverify] reused run {json.loads((run_dir / 'metrics.json').read_text())['reused']['run_id']} "
              f"({entry}): recipe, inputs, code and tools unchanged; --fresh measures again", file=sys.stderr,
              flush=True)
        return run_dir


def measured(loaded: LoadedRecipe, detector_plan: Plan | None, written: list[Path], reports_dir: Path,
             workers: int | None, models_dir: Path, calib_dir: Path, ray_address: str | None) -> Path:
    """Build and measure (what `run` does when it has nothing to reuse)."""
    # two runs that would write the same files take turns; a run that does not finish keeps none of its files
    with folders_locked(written), kept_unless_finished(written):
        loaded, artifacts, finder = convert_checked(loaded, detector_plan, models_dir, calib_dir)
        from convert.pipeline import release
        from verify.engines.workers import default_workers
        from verify.evaluation import verify_artifacts

        try:
            return verify_artifacts(loaded, artifacts, reports_dir, finder, workers or default_workers(),
                                    ray_address)
        finally:
            release(artifacts)
            if finder is not None:
                finder.release()


def recipe_folders(loaded: LoadedRecipe, models_dir: Path, calib_dir: Path) -> list[Path]:
    """models/<name>/ and calib_data/<set>/ (+ the aligned faces' set) a recipe's conversion writes."""
    calib = loaded.recipe.quantization.calibration
    folders = [models_dir / loaded.recipe.name, calib_dir / calib.name]
    if calib.align_with:
        folders.append(calib_dir / f"{calib.name}-faces")
    return folders


def with_aligned_calibration(loaded: LoadedRecipe, finder: FaceFinder, calib_dir: Path) -> LoadedRecipe:
    """The recipe with its calibration photos replaced by their aligned faces."""
    from verify.face.recognition import aligned_calibration

    aligner = finder.detector(calib_dir / f"{loaded.recipe.quantization.calibration.name}-faces.log")
    live = aligner.float.live
    if live is not None:
        live.activate()
    try:
        with step("align calibration faces", None):
            folder = aligned_calibration(loaded, aligner, calib_dir, workspace.cache_dir())
    finally:
        if live is not None:
            live.deactivate()
    images = [{"dir": str(folder), "glob": "*.png"}]
    return variant(loaded, {"quantization.calibration.images": images, "quantization.calibration.align_with": None})
