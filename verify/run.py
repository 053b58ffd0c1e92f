"""What `rkverify.py run` does for one recipe (variant), as a library call: convert (the aligning
detector first, then aligned calibration faces), verify, report. Sweeps and worker processes call
`run` exactly as the command line does."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from convert.preflight import check_paths
from convert.progress import step
from convert.recipe import PROJECT_ROOT, LoadedRecipe, load_recipe
from convert.run_guard import folders_locked, kept_unless_finished

if TYPE_CHECKING:  # onnx/onnxsim and friends load only when a run starts
    from convert.pipeline import Artifacts

REPORTS_DIR = PROJECT_ROOT / "reports"
MODELS_DIR = PROJECT_ROOT / "models"
CALIB_DIR = PROJECT_ROOT / "calib_data"


def convert_all(recipe: str, overrides: dict[str, object] | None = None, models_dir: Path = MODELS_DIR,
                calib_dir: Path = CALIB_DIR) -> tuple[LoadedRecipe, Artifacts, tuple[LoadedRecipe, Artifacts] | None]:
    """Convert a recipe, and first the detector recipe it aligns faces with (if any), into
    `models_dir`. Returns (loaded recipe, its artifacts, (detector recipe, its artifacts) or None).
    The detector is built in this process too: the simulator only runs in-process builds.
    """
    loaded = load_recipe(recipe, overrides)
    check_paths(loaded)
    from convert.pipeline import convert_recipe  # heavy imports (onnx, the toolkit) after every check

    if loaded.recipe.target.runtime == "board":  # before any work: say what stops the board run
        from convert.artifacts import tool_versions
        from verify.board import preflight

        preflight(loaded.recipe.target.device_id, tool_versions()["rknn-toolkit2"])
    verification = loaded.recipe.evaluate.verification
    align_with = loaded.recipe.quantization.calibration.align_with
    detector_name = verification.detector if verification and verification.faces == "align" else align_with
    detector = None
    if detector_name:  # its quantized build only when the quantized run aligns with it too
        detector_recipe = load_recipe(detector_name, detector_overrides(loaded, load_recipe(detector_name)))
        check_paths(detector_recipe)
        full_pipeline = bool(verification and verification.faces == "align" and verification.full_pipeline)
        detector = (detector_recipe, convert_recipe(detector_recipe, models_dir, float_only=not full_pipeline))
    if align_with:
        assert detector is not None  # align_with names the detector recipe converted above
        loaded = with_aligned_calibration(loaded, recipe, overrides or {}, detector, calib_dir)
    return loaded, convert_recipe(loaded, models_dir, calib_dir), detector


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


def run(recipe: str, overrides: dict[str, object] | None = None, reports_dir: Path = REPORTS_DIR,
        workers: int | None = None, models_dir: Path = MODELS_DIR, calib_dir: Path = CALIB_DIR,
        ray_address: str | None = None) -> Path:
    """Convert and verify one recipe; return the run directory. Dataset-sized work runs on
    `workers` processes (default: one per core), or as that many Ray tasks with `ray_address`;
    artifacts go to `models_dir` (a sweep gives each variant its own, and its own calibration folder)."""
    check_paths(load_recipe(recipe, overrides))  # bad input answers before any lock is waited for
    written = folders_written(recipe, overrides, models_dir, calib_dir)
    # two runs that would write the same files take turns; a run that does not finish keeps none of its files
    with folders_locked(written), kept_unless_finished(written):
        loaded, artifacts, detector = convert_all(recipe, overrides, models_dir, calib_dir)
        from convert.pipeline import release
        from verify.evaluation import verify_artifacts
        from verify.workers import default_workers

        try:
            return verify_artifacts(loaded, artifacts, reports_dir, detector, workers or default_workers(),
                                    ray_address)
        finally:
            release(artifacts)
            if detector is not None:
                release(detector[1])


def folders_written(recipe: str, overrides: dict[str, object] | None, models_dir: Path, calib_dir: Path) -> list[Path]:
    """models/<name>/ and calib_data/<set>/ (+ the aligned faces' set) of the recipe and of its detector."""
    loaded = load_recipe(recipe, overrides)
    calib = loaded.recipe.quantization.calibration
    folders = [models_dir / loaded.recipe.name, calib_dir / calib.name]
    if calib.align_with:
        folders.append(calib_dir / f"{calib.name}-faces")
    verification = loaded.recipe.evaluate.verification
    detector_name = verification.detector if verification and verification.faces == "align" else calib.align_with
    if detector_name:
        detector = load_recipe(detector_name, detector_overrides(loaded, load_recipe(detector_name)))
        folders += [models_dir / detector.recipe.name, calib_dir / detector.recipe.quantization.calibration.name]
    return folders


def with_aligned_calibration(loaded: LoadedRecipe, recipe: str, overrides: dict[str, object],
                             detector: tuple[LoadedRecipe, Artifacts], calib_dir: Path) -> LoadedRecipe:
    """The recipe with its calibration photos replaced by their aligned faces."""
    from verify.cache import SHARED_CACHE_DIR
    from verify.recognition import aligned_calibration
    from verify.run_models import detector_of

    _, detector_artifacts = detector
    aligner = detector_of(detector, detector_artifacts.model_dir / "align.log")
    assert aligner is not None and aligner.float.live is not None
    aligner.float.live.activate()
    try:
        with step("align calibration faces", None):
            folder = aligned_calibration(loaded, aligner, calib_dir, SHARED_CACHE_DIR)
    finally:
        aligner.float.live.deactivate()
    images = [{"dir": str(folder), "glob": "*.png"}]
    return load_recipe(recipe, {**overrides, "quantization.calibration.images": images,
                                "quantization.calibration.align_with": None})
