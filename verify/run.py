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


def checked(recipe: str | LoadedRecipe, overrides: dict[str, object] | None = None) -> tuple[LoadedRecipe,
                                                                                           LoadedRecipe | None]:
    """The recipe and the detector recipe it aligns faces with (as the recognizer's device runs it),
    their paths checked: bad input answers before any lock is waited for or anything is built."""
    loaded = recipe if isinstance(recipe, LoadedRecipe) else load(recipe, overrides)
    check_paths(loaded)
    verification = loaded.recipe.evaluate.verification
    align_with = loaded.recipe.quantization.calibration.align_with
    detector_name = verification.detector if verification and verification.faces == "align" else align_with
    if not detector_name:
        return loaded, None
    plain = load(detector_name)
    detector = variant(plain, detector_overrides(loaded, plain))
    check_paths(detector)
    return loaded, detector


Converted = tuple[LoadedRecipe, "Artifacts", tuple[LoadedRecipe, "Artifacts"] | None]


def convert_all(recipe: str, overrides: dict[str, object] | None = None, models_dir: Path | None = None,
                calib_dir: Path | None = None) -> Converted:
    """Convert a recipe, and first the detector recipe it aligns faces with (if any), into
    `models_dir` (default: the workspace's). Returns (loaded recipe, its artifacts, (detector recipe, its
    artifacts) or None)."""
    return convert_checked(*checked(recipe, overrides), models_dir or workspace.models_dir(),
                           calib_dir or workspace.calib_dir())


def convert_checked(loaded: LoadedRecipe, detector_recipe: LoadedRecipe | None, models_dir: Path,
                    calib_dir: Path) -> Converted:
    """`convert_all` of recipes already loaded and checked. The detector is built in this process
    too: the simulator only runs in-process builds."""
    from convert.pipeline import convert_recipe  # heavy imports (onnx, the toolkit) after every check

    if loaded.recipe.target.runtime == "board":  # before any work: say what stops the board run
        from core.artifacts import tool_versions
        from verify.engines.board import preflight

        preflight(loaded.recipe.target.device_id, tool_versions()["rknn-toolkit2"])
    verification = loaded.recipe.evaluate.verification
    detector = None
    if detector_recipe is not None:  # its quantized build only when the quantized run aligns with it too
        full_pipeline = bool(verification and verification.faces == "align" and verification.full_pipeline)
        # the detector's folders are held while they are written, not for the whole run: recognizers
        # that share a detector run side by side (its files are read, not written, after this)
        shared = recipe_folders(detector_recipe, models_dir, calib_dir)
        with folders_locked(shared), kept_unless_finished(shared):
            detector = (detector_recipe, convert_recipe(detector_recipe, models_dir, float_only=not full_pipeline,
                                                        check_graph=task_of(detector_recipe.recipe).check_graph))
    if loaded.recipe.quantization.calibration.align_with:
        assert detector is not None  # align_with names the detector recipe converted above
        loaded = with_aligned_calibration(loaded, detector, calib_dir)
    return loaded, convert_recipe(loaded, models_dir, calib_dir, check_graph=task_of(loaded.recipe).check_graph), detector


def detector_overrides(loaded: LoadedRecipe, detector: LoadedRecipe) -> dict[str, object]:
    """The detector as the recognizer's device runs it: built for the same platform, at the
    recognizer recipe's detector_input size if it gives one."""
    overrides: dict[str, object] = {}
    if detector.recipe.target.platform != loaded.recipe.target.platform:
        overrides["target.platform"] = loaded.recipe.target.platform
    verification = loaded.recipe.evaluate.verification
    size = verification.detector_input if verification else None
    if size and list(detector.recipe.model_input.height_width) != size:
        spec = detector.recipe.input
        shape = [1, spec.shape[1], *size] if spec.layout == "NCHW" else [1, *size, spec.shape[3]]
        overrides["inputs"] = [spec.model_dump() | {"shape": shape}]
        suffix = f"-{size[0]}x{size[1]}"  # its own models/ and calib_data/ folders
        overrides["name"] = detector.recipe.name + suffix
        overrides["quantization.calibration.name"] = detector.recipe.quantization.calibration.name + suffix
    return overrides


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
    loaded, detector_recipe = checked(recipe, overrides)
    written = recipe_folders(loaded, models_dir, calib_dir)
    detector_written = recipe_folders(detector_recipe, models_dir, calib_dir) if detector_recipe else []
    if fresh or loaded.recipe.target.runtime == "board":
        return measured(loaded, detector_recipe, written, reports_dir, workers, models_dir, calib_dir, ray_address)
    from verify import reuse

    key = reuse.run_key(loaded, detector_recipe)
    folders = {str(f.relative_to(f.parents[1])): f for f in written + detector_written}  # models/<name>, ...
    # an identical run under way: wait for it, then reuse it
    with folders_locked([reuse.entry_of(key)]):
        entry = reuse.stored(key)
        if entry is None:
            run_dir = measured(loaded, detector_recipe, written, reports_dir, workers, models_dir, calib_dir,
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


def measured(loaded: LoadedRecipe, detector_recipe: LoadedRecipe | None, written: list[Path], reports_dir: Path,
             workers: int | None, models_dir: Path, calib_dir: Path, ray_address: str | None) -> Path:
    """Build and measure (what `run` does when it has nothing to reuse)."""
    # two runs that would write the same files take turns; a run that does not finish keeps none of its files
    with folders_locked(written), kept_unless_finished(written):
        loaded, artifacts, detector = convert_checked(loaded, detector_recipe, models_dir, calib_dir)
        from convert.pipeline import release
        from verify.engines.workers import default_workers
        from verify.evaluation import verify_artifacts

        try:
            return verify_artifacts(loaded, artifacts, reports_dir, detector, workers or default_workers(),
                                    ray_address)
        finally:
            release(artifacts)
            if detector is not None:
                release(detector[1])


def recipe_folders(loaded: LoadedRecipe, models_dir: Path, calib_dir: Path) -> list[Path]:
    """models/<name>/ and calib_data/<set>/ (+ the aligned faces' set) a recipe's conversion writes."""
    calib = loaded.recipe.quantization.calibration
    folders = [models_dir / loaded.recipe.name, calib_dir / calib.name]
    if calib.align_with:
        folders.append(calib_dir / f"{calib.name}-faces")
    return folders


def with_aligned_calibration(loaded: LoadedRecipe, detector: tuple[LoadedRecipe, Artifacts],
                             calib_dir: Path) -> LoadedRecipe:
    """The recipe with its calibration photos replaced by their aligned faces."""
    from verify.engines.run_models import detector_of
    from verify.face.recognition import aligned_calibration

    _, detector_artifacts = detector
    aligner = detector_of(detector, detector_artifacts.model_dir / "align.log")
    assert aligner is not None and aligner.float.live is not None
    aligner.float.live.activate()
    try:
        with step("align calibration faces", None):
            folder = aligned_calibration(loaded, aligner, calib_dir, workspace.cache_dir())
    finally:
        aligner.float.live.deactivate()
    images = [{"dir": str(folder), "glob": "*.png"}]
    return variant(loaded, {"quantization.calibration.images": images, "quantization.calibration.align_with": None})
