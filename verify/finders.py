"""What finds the faces a recognizer is fed, from the name in `evaluate.verification.detector`: the
one place that maps a detector name to what makes the face pass's (N, 15) rows.

- a detector recipe (convert/recipes/<name>.yaml, e.g. RetinaFace): converted like any recipe, for the
  recognizer's platform and `detector_input`; the face pass runs its float and quantized models in
  every worker process (verify.face.face_pass);
- a cascade (convert/cascades/<name>.yaml, MTCNN): its three nets are built in this process (the
  simulator runs only in-process builds), `detector_input` being its frame; its rows are made here,
  before the recognizer's shards go to the workers, and cached by content like a recipe's.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convert.preflight import check_paths
from core.artifacts import sha256_bytes
from core.errors import RkverifyError
from core.recipe import RECIPES_DIR, LoadedRecipe, load_recipe
from verify.face.mtcnn_recipe import CASCADES_DIR, CascadeRecipe, load_cascade
from verify.recipes import load, variant

if TYPE_CHECKING:  # the models' modules (onnx, the toolkit, TensorFlow) load when a detector is built
    from convert.pipeline import Artifacts
    from verify.face.mtcnn_nets import ConvertAll, Nets
    from verify.face.recognition import Detector


@dataclass(frozen=True)
class Cascade:
    """A cascade named as a recognizer's detector, loaded and checked, at the recognizer's frame."""

    recipe: CascadeRecipe
    path: Path
    sha256: str


Plan = LoadedRecipe | Cascade  # a detector to convert: a recipe, or a cascade of nets


class RecipeFinder:
    """A converted detector recipe: its float (ONNX Runtime) and quantized (simulator) models."""

    def __init__(self, loaded: LoadedRecipe, artifacts: Artifacts) -> None:
        self.loaded, self.artifacts = loaded, artifacts

    def detector(self, log_file: Path) -> Detector:
        """The face pass's Detector, its live runners not yet active."""
        from verify.engines.run_models import quantized_spec, rknn_runner
        from verify.engines.runners import OnnxRuntimeRunner, OnnxSpec
        from verify.face.recognition import Detector, Model

        loaded, artifacts = self.loaded, self.artifacts
        recipe = loaded.recipe
        float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
        quantized = None
        if artifacts.rknn is not None:
            quantized = Model(artifacts.quant_key, quantized_spec(loaded, artifacts),
                              rknn_runner(artifacts.rknn, recipe, log_file))
        return Detector(recipe, Model(artifacts.float_key, OnnxSpec(artifacts.onnx, recipe), float_runner), quantized)

    def release(self) -> None:
        from convert.pipeline import release

        release(self.artifacts)


class CascadeFinder:
    """A cascade's nets built in this process; rows come from MtcnnDetector, float or quantized."""

    def __init__(self, cascade: Cascade, nets: Nets, quantized: bool) -> None:
        from convert.build import RknnBuild

        # the nets are keyed by what their ONNX is made from, as the cascade's own recipe states it
        self.nets_made_from = sorted(json.dumps([r.recipe.source.sha256, r.recipe.model_input.model_dump(mode="json"),
                                                 r.recipe.preprocess.model_dump(mode="json"), r.recipe.outputs])
                                     for r in nets.recipes.values())
        self.builds = sorted(build_key(b.provenance) for b in nets.live if isinstance(b, RknnBuild))
        self.cascade, self.nets, self.quantized = cascade, nets, quantized

    def key(self, side: str) -> str:
        """What one side's rows depend on, by content: the cascade (frame, pyramid, thresholds), what the
        nets are made from (source bytes, input, preprocessing) and (quantized) what every build is made
        from. A float-only and a full-pipeline run share the float rows."""
        return sha256_bytes(json.dumps(["cascade", self.cascade.recipe.model_dump(mode="json"), self.nets_made_from,
                                        self.builds if side == "quantized" else []]).encode())

    def detector(self, log_file: Path) -> Detector:
        """The face pass's Detector: rows made in this process (`log_file`: the nets log where they were built)."""
        from verify.face.mtcnn_detector import MtcnnDetector
        from verify.face.recognition import Detector, Model

        mtcnn = MtcnnDetector(self.nets, self.cascade.recipe)
        quantized = Model(self.key("quantized"), None) if self.quantized else None
        return Detector(None, Model(self.key("float"), None), quantized, rows_here=mtcnn.rows)

    def release(self) -> None:
        self.nets.release()


FaceFinder = RecipeFinder | CascadeFinder


def build_key(provenance: dict[str, Any]) -> str:
    """What a build's outputs depend on (as convert.pipeline's quant_key): its source, settings,
    calibration content and toolkit version (the .rknn bytes are not reproducible, nor tf2onnx's)."""
    from convert.calibration import calibration_manifest

    listed = provenance["calibration_list"]
    calibration = calibration_manifest(Path(listed))["key"] if listed else None
    return json.dumps([provenance[k] for k in ("source_sha256", "dtype", "algorithm", "method", "float_layers",
                                               "platform")] + [calibration, provenance["tools"]["rknn-toolkit2"]])


def plan(name: str, recognizer: LoadedRecipe) -> Plan:
    """The detector `name` as the recognizer's device runs it, its paths checked (bad input answers
    before anything is built): a recipe of that name, else a cascade of that name."""
    if (RECIPES_DIR / f"{name}.yaml").is_file() or name.endswith((".yaml", ".yml")):
        plain = load(name)
        detector = variant(plain, detector_overrides(recognizer, plain))
        check_paths(detector)
        return detector
    if not (CASCADES_DIR / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) + sorted(p.stem for p in CASCADES_DIR.glob("*.yaml"))
        raise RkverifyError(recognizer.path, "evaluate.verification.detector", f"no detector recipe or cascade "
                            f"named {name!r}", f"use a recipe of convert/recipes/ or a cascade of convert/cascades/: "
                            f"{', '.join(known)}")
    recipe, path, digest = load_cascade(name)
    verification = recognizer.recipe.evaluate.verification
    frame = verification.detector_input if verification else None
    if frame:
        recipe = recipe.model_copy(update={"frame": list(frame)})
    platform = recognizer.recipe.target.platform
    net_platform = load_recipe(recipe.nets.pnet).recipe.target.platform
    if net_platform != platform:
        raise RkverifyError(recognizer.path, "target.platform", f"the {name} cascade's nets are built for "
                            f"{net_platform}, the recognizer for {platform}",
                            f"use target.platform: {net_platform}, or a detector recipe (e.g. retinaface)")
    return Cascade(recipe, path, digest)


def build(detector: Plan, full_pipeline: bool, convert_detector: Callable[[LoadedRecipe], Artifacts],
          convert_all: ConvertAll) -> FaceFinder:
    """Convert the planned detector (the quantized side only with `full_pipeline`): a recipe with
    `convert_detector`, a cascade's nets in this process (R-Net and O-Net through `convert_all`)."""
    if isinstance(detector, Cascade):
        from verify.face.mtcnn_nets import build_nets

        return CascadeFinder(detector, build_nets(detector.recipe, convert_all if full_pipeline else None),
                             full_pipeline)
    return RecipeFinder(detector, convert_detector(detector))


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
