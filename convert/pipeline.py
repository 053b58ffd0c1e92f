"""Recipe -> artifacts, in order: source, canonical ONNX, calibration set, RKNN build."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.build import RknnBuild, build_rknn
from convert.calibration import build_calibration_set, calibration_manifest
from convert.frontends import FRONTENDS, check_against_native, source_to_onnx
from convert.onnx_prep import GraphCheck, prepare_onnx
from convert.progress import step
from convert.source import SourceFiles, obtain_source
from core import workspace
from core.artifacts import sha256_bytes, sha256_file, tool_versions
from core.recipe import FLOAT16, LoadedRecipe

NATIVE_CHECK_INPUTS = 4  # calibration inputs the frontend's ONNX is checked on against the framework


@dataclass
class Artifacts:
    """What convert produced; the RKNN objects stay live (the simulator needs in-process builds)."""

    model_dir: Path  # models/<recipe>/
    source: SourceFiles
    onnx: Path
    calibration_list: Path
    calibration: dict
    rknn: RknnBuild | None  # None when only the float model is wanted (e.g. a detector that aligns faces)
    native_check: dict[str, float]  # worst cosine per output, framework vs ONNX ({} for ONNX sources)
    renamed_params: dict[str, str]  # parameters the frontend found under another name (graph name: stored name)
    fp16: RknnBuild | None  # unquantized build of the same graph, for stage attribution
    float_key: str  # what the float model's outputs depend on (for caches)
    quant_key: str  # what the quantized model's outputs depend on
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def built(self) -> RknnBuild:
        """The recipe's .rknn build (artifacts made float_only have none)."""
        assert self.rknn is not None, f"{self.model_dir.name} was converted float_only: no .rknn"
        return self.rknn


def convert_recipe(loaded: LoadedRecipe, models_dir: Path | None = None, calib_dir: Path | None = None,
                   float_only: bool = False, check_graph: GraphCheck | None = None) -> Artifacts:
    """The recipe's artifacts; `float_only` stops at the canonical ONNX (no calibration, no .rknn);
    `check_graph` is the recipe's task's check of the canonical ONNX; folders default to the workspace's."""
    models_dir = models_dir or workspace.models_dir()
    calib_dir = calib_dir or workspace.calib_dir()
    recipe = loaded.recipe
    timings: dict[str, float] = {}
    model_dir = models_dir / recipe.name
    with step("obtain source model", timings):
        source = obtain_source(loaded, models_dir)
    framework = recipe.source.framework
    exporter = FRONTENDS[framework].exporter
    raw_onnx, renamed = source.model, dict[str, str]()
    if exporter:
        with step(f"{framework} -> ONNX ({exporter})", timings):
            raw_onnx, renamed = source_to_onnx(loaded, source, model_dir / "source" / f"{recipe.name}.{framework}.onnx")
        if renamed:
            print(f"[rkverify] {len(renamed)} parameters loaded under the params file's spelling, e.g. "
                  f"{next(iter(renamed))} <- {next(iter(renamed.values()))} (listed in the report)", file=sys.stderr, flush=True)
    with step("canonical float ONNX (fixed shape, onnxsim)", timings):
        onnx_path = prepare_onnx(raw_onnx, loaded, model_dir / f"{recipe.name}.onnx", check_graph)
    if float_only:
        return Artifacts(model_dir=model_dir, source=source, onnx=onnx_path, calibration_list=Path(), calibration={},
                         rknn=None, native_check={}, renamed_params=renamed, fp16=None,
                         float_key=sha256_file(onnx_path), quant_key="", timings=timings)
    with step("calibration set", timings):
        list_file = build_calibration_set(loaded, calib_dir)
    native_check: dict[str, float] = {}
    if exporter:
        with step(f"check the ONNX against {framework} on calibration inputs", timings):
            inputs = [np.load(list_file.parent / line) for line in list_file.read_text().split()[:NATIVE_CHECK_INPUTS]]
            native_check = check_against_native(loaded, source, onnx_path, inputs)
    with step(f"rknn build {recipe.quantization.dtype} for {recipe.target.platform}", timings):
        quantized = recipe.quantization.dtype != FLOAT16
        build = build_rknn(loaded, onnx_path, source.sha256, list_file if quantized else None,
                           model_dir / f"{recipe.artifact_stem}.rknn")
    fp16 = None
    if quantized:
        with step(f"rknn build float16 for {recipe.target.platform} (stage attribution)", timings):
            fp16 = build_rknn(loaded, onnx_path, source.sha256, None,
                              model_dir / f"{recipe.name}-{FLOAT16}-{recipe.target.platform}.rknn")
    calibration = calibration_manifest(list_file)
    float_key = sha256_file(onnx_path)
    # by content: the calibration images' bytes are in calibration["key"], so where they lie (an aligned-faces
    # folder in this workspace or another) is left out
    settings = recipe.quantization.model_dump(mode="json", exclude={"calibration": {"images"}})
    quant_key = sha256_bytes(json.dumps([float_key, settings, recipe.target.platform, calibration["key"],
                                         tool_versions()["rknn-toolkit2"]]).encode())
    return Artifacts(model_dir=model_dir, source=source, onnx=onnx_path, native_check=native_check,
                     renamed_params=renamed,
                     calibration_list=list_file, calibration=calibration, rknn=build, fp16=fp16,
                     float_key=float_key, quant_key=quant_key, timings=timings)


def release(artifacts: Artifacts) -> None:
    for build in (artifacts.rknn, artifacts.fp16):
        if build is not None:
            build.rknn.release()
