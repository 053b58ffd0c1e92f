"""rkverify command line: `python rkverify.py run <recipe>` converts, verifies and reports."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from convert.errors import RkverifyError
from convert.progress import step
from convert.recipe import PROJECT_ROOT, LoadedRecipe, load_recipe

if TYPE_CHECKING:  # onnx/onnxsim and friends load only when a run starts
    from convert.pipeline import Artifacts

REPORTS_DIR = PROJECT_ROOT / "reports"


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RkverifyError("command line", "--set", f"'{pair}' is not key=value",
                                "write e.g. --set quantization.dtype=w16a16i")
        overrides[key] = yaml.safe_load(value)
    return overrides


def convert_all(recipe: str, overrides: dict[str, object] | None = None
                ) -> tuple[LoadedRecipe, Artifacts, tuple[LoadedRecipe, Artifacts] | None]:
    """Convert a recipe, and first the detector recipe it aligns faces with (if any).

    Returns (loaded recipe, its artifacts, (detector recipe, detector artifacts) or None).
    The detector is built in this process too: the simulator only runs in-process builds.
    """
    from convert.pipeline import convert_recipe  # heavy imports after argument checks

    loaded = load_recipe(recipe, overrides)
    if loaded.recipe.target.runtime == "board":  # before any work: say what stops the board run
        from convert.artifacts import tool_versions
        from verify.board import preflight

        preflight(loaded.recipe.target.device_id, tool_versions()["rknn-toolkit2"])
    verification = loaded.recipe.evaluate.verification
    align_with = loaded.recipe.quantization.calibration.align_with
    detector_name = verification.detector if verification and verification.faces == "align" else align_with
    detector = None
    if detector_name:
        detector_recipe = load_recipe(detector_name, detector_overrides(loaded, load_recipe(detector_name)))
        detector = (detector_recipe, convert_recipe(detector_recipe))
    if align_with:
        loaded = with_aligned_calibration(loaded, recipe, overrides or {}, detector)
    return loaded, convert_recipe(loaded), detector


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


def run(recipe: str, overrides: dict[str, object] | None = None, reports_dir: Path = REPORTS_DIR) -> Path:
    """Convert and verify one recipe; return the run directory."""
    from convert.pipeline import release
    from verify.evaluation import verify_artifacts

    loaded, artifacts, detector = convert_all(recipe, overrides)
    try:
        return verify_artifacts(loaded, artifacts, reports_dir, detector)
    finally:
        release(artifacts)
        if detector is not None:
            release(detector[1])


def with_aligned_calibration(loaded: LoadedRecipe, recipe: str, overrides: dict[str, object],
                             detector: tuple[LoadedRecipe, Artifacts]) -> LoadedRecipe:
    """The recipe with its calibration photos replaced by their aligned faces."""
    from verify.evaluation import detectors
    from verify.recognition import aligned_calibration

    _, detector_artifacts = detector
    float_detector, _ = detectors(detector, detector_artifacts.rknn.path.with_suffix(".log"))
    float_detector.runner.activate()
    try:
        with step("align calibration faces", None):
            folder = aligned_calibration(loaded, float_detector, PROJECT_ROOT / "calib_data",
                                         detector_artifacts.model_dir / "cache")
    finally:
        float_detector.runner.deactivate()
    images = [{"dir": str(folder), "glob": "*.png"}]
    return load_recipe(recipe, {**overrides, "quantization.calibration.images": images,
                                "quantization.calibration.align_with": None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rkverify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="convert a recipe, run float vs quantized, write the report")
    run_cmd.add_argument("recipe", help="recipe name (convert/recipes/<name>.yaml) or a path to a .yaml")
    run_cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                         help="override a recipe field, e.g. quantization.calibration.size=8")
    run_cmd.add_argument("--target", metavar="PLATFORM", help="run the quantized model on this board (e.g. rk3588)")
    run_cmd.add_argument("--device-id", help="adb serial of the board (see 'adb devices')")
    run_cmd.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where run folders go")
    render_cmd = sub.add_parser("render", help="re-render report.html of a run from its data")
    render_cmd.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            from verify.report import render_report

            print(render_report(args.run_dir))
            return 0
        overrides = parse_overrides(args.overrides)
        if args.target:
            overrides |= {"target.platform": args.target, "target.runtime": "board", "target.device_id": args.device_id}
        run_dir = run(args.recipe, overrides, args.reports)
    except RkverifyError as exc:
        print(f"rkverify: error: {exc}", file=sys.stderr)
        return 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for gate in metrics["gates"]:
        status = "pass" if gate["passed"] else "FAIL"
        op = "<=" if gate["gate"].startswith("max_") else ">="
        print(f"gate {gate['gate']}: {gate['value']:.4f} ({op} {gate['threshold']}) {status}")
    print(f"report: {run_dir / 'report.html'}")
    return 0 if metrics["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
