"""Hybrid quantization: keep chosen layers in float16, the rest quantized.

rknn-toolkit2's two steps: step 1 quantizes once and writes <stem>.model/.data/.quantization.cfg;
step 2 builds from them with the cfg's `custom_quantize_layers` ({tensor: float16}). Step 1 runs
once per recipe and calibration set; each step 2 (one per layer set tried) takes about as long
as a plain build.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from convert.calibration import absolute_list
from convert.rknn_build import Toolkit, scratch_dir
from core.artifacts import atomic_dir, sha256_bytes, sha256_file
from core.errors import RkverifyError
from core.recipe import LoadedRecipe

FLOAT = "float16"
PROPOSAL_INPUTS = 4  # calibration inputs the toolkit's proposal search runs on


@dataclass(frozen=True)
class HybridBase:
    """Step 1's output: the quantized graph, its data and per-tensor quantization parameters."""

    model: Path
    data: Path
    cfg: Path
    quantized_layers: list[str]  # tensors step 2 can keep in float16 (int8 in the cfg)


def hybrid_base(loaded: LoadedRecipe, onnx_path: Path, list_file: Path, work_dir: Path, log_file: Path,
                proposal: bool = False) -> HybridBase:
    """Run step 1 into `work_dir` (reused while the ONNX, calibration and settings are unchanged).

    With `proposal`, the toolkit also proposes layers to keep in float16 (its auto-hybrid search on
    a few calibration inputs): they are in the cfg's custom_quantize_layers, see `proposed_layers`.
    """
    recipe = loaded.recipe
    key = sha256_bytes(json.dumps([sha256_file(onnx_path), sha256_file(list_file),
                                   recipe.quantization.model_dump(mode="json", exclude={"hybrid"}),
                                   recipe.preprocess.model_dump(mode="json"), recipe.target.platform,
                                   proposal]).encode())
    folder = work_dir / key[:16]
    stem = onnx_path.stem
    base = HybridBase(folder / f"{stem}.model", folder / f"{stem}.data", folder / f"{stem}.quantization.cfg", [])
    if not base.cfg.is_file():
        toolkit = Toolkit(loaded, log_file, quantized=True)
        toolkit.load(onnx_path)
        # step 1 writes its three files (and check*.onnx debris) into the working directory: a
        # scratch folder, from which only those three files move into the folder
        with scratch_dir() as scratch, atomic_dir(folder) as tmp:
            dataset = absolute_list(list_file, scratch)
            toolkit.call("hybrid_quantization_step1", "quantization.calibration", "check the calibration set",
                         lambda: toolkit.rknn.hybrid_quantization_step1(
                             dataset=str(dataset), proposal=proposal, proposal_dataset_size=PROPOSAL_INPUTS),
                         cwd=scratch)
            for output in (base.model, base.data, base.cfg):
                shutil.move(scratch / output.name, tmp / output.name)
        toolkit.rknn.release()
    parameters = yaml.safe_load(base.cfg.read_text())["quantize_parameters"]
    quantized = [name for name, p in parameters.items() if p.get("dtype") not in (None, "float32", FLOAT)]
    return HybridBase(base.model, base.data, base.cfg, quantized)


def proposed_layers(base: HybridBase) -> list[str]:
    return list(yaml.safe_load(base.cfg.read_text())["custom_quantize_layers"] or {})


def hybrid_build(loaded: LoadedRecipe, base: HybridBase, float_layers: list[str], log_file: Path) -> Toolkit:
    """Step 2 with `float_layers` in float16: a live, built RKNN (the simulator can run it)."""
    unknown = [name for name in float_layers if name not in base.quantized_layers]
    if unknown:
        raise RkverifyError(loaded.path, "quantization.hybrid.float_layers",
                            f"not quantized tensors of this model: {', '.join(unknown)}",
                            "use layer names from the report's sensitivity table or layers.csv")
    cfg = yaml.safe_load(base.cfg.read_text())
    cfg["custom_quantize_layers"] = {name: FLOAT for name in float_layers}
    custom = base.cfg.with_name(f"hybrid-{sha256_bytes(json.dumps(sorted(float_layers)).encode())[:12]}.cfg")
    custom.write_text(yaml.safe_dump(cfg, sort_keys=False))
    toolkit = Toolkit(loaded, log_file, quantized=True)
    toolkit.call("hybrid_quantization_step2", "quantization.hybrid", "see the toolkit log",
                 lambda: toolkit.rknn.hybrid_quantization_step2(model_input=str(base.model), data_input=str(base.data),
                                                                model_quantization_cfg=str(custom)))
    return toolkit
