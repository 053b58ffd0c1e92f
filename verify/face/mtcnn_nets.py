"""MTCNN's three nets, converted and built by the suite from their recipes, as cascade functions:
float (canonical ONNX on ONNX Runtime) and quantized (rknn-toolkit2 simulator, in-process builds).

P-Net meets one input shape per pyramid level and the NPU wants fixed shapes. Two ways:
- per_scale: one recipe variant per level (name and calibration folder suffixed with the shape),
  each converted, calibrated at its own size and built by the suite's pipeline;
- dynamic: one build whose config lists every level's shape (rknn-toolkit2's dynamic_input), from
  the largest level's ONNX with its height and width made symbolic, calibrated at the largest
  shape (the toolkit quantizes at its "MaxShape").
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx

from convert.build import RknnBuild, build_rknn
from convert.calibration import absolute_list, build_calibration_set
from convert.pipeline import Artifacts, convert_recipe
from convert.rknn_build import Toolkit, scratch_dir
from core.artifacts import atomic_path, sha256_file
from core.recipe import LoadedRecipe, load_recipe
from core.workspace import calib_dir, workspace
from verify.engines.runners import OnnxRuntimeRunner, RknnRunner, Runner
from verify.face.mtcnn_cascade import GREY, CascadeConfig, NetFn, pyramid
from verify.face.mtcnn_recipe import CascadeRecipe

Shape = tuple[int, int]


class Finder(Protocol):
    def release(self) -> None: ...


ConvertAll = Callable[[str], tuple[LoadedRecipe, Artifacts, Finder | None]]  # verify.run.convert_all


def cascade_config(recipe: CascadeRecipe) -> CascadeConfig:
    return CascadeConfig(**recipe.thresholds.model_dump())


def level_shapes(recipe: CascadeRecipe) -> list[Shape]:
    """P-Net's input (height, width) at each pyramid level of the recipe's frame."""
    return [shape for _, shape in pyramid(recipe.frame[0], recipe.frame[1], cascade_config(recipe))]


def level_recipe(pnet: str, shape: Shape) -> LoadedRecipe:
    """The P-Net recipe at one pyramid level: its own models/ and calib_data/ folders."""
    base = load_recipe(pnet).recipe
    suffix = f"-{shape[0]}x{shape[1]}"
    spec = base.input.model_dump() | {"shape": [1, shape[0], shape[1], base.input.shape[3]]}
    return load_recipe(pnet, {"name": base.name + suffix, "inputs": [spec],
                              "quantization.calibration.name": base.quantization.calibration.name.rsplit("-", 1)[0]
                              + suffix})


def net_fn(runner: Runner, outputs: list[str]) -> NetFn:
    return lambda pixels: [runner.infer(pixels)[name] for name in outputs]


@dataclass
class Side:
    """One side of the comparison: the three nets as cascade functions, with what it took to build."""

    pnet: dict[Shape, NetFn]
    rnet: NetFn
    onet: NetFn
    runners: list[Runner] = field(default_factory=list)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact -> seconds, bytes

    def pnet_at(self, shape: Shape) -> NetFn:
        return self.pnet[shape]


@dataclass
class Nets:
    recipes: dict[str, LoadedRecipe]  # rnet, onet and each P-Net level ("pnet-HxW")
    float: Side
    quantized: Side
    live: list[RknnBuild | Toolkit] = field(default_factory=list)
    layer_builds: dict[str, Any] = field(default_factory=dict)  # "pnet-HxW" / "rnet" / "onet" -> live RKNN

    def release(self) -> None:
        for runner in self.float.runners + self.quantized.runners:
            runner.deactivate()
        for build in self.live:
            build.rknn.release()


def _float_runner(loaded: LoadedRecipe, artifacts: Artifacts) -> Runner:
    recipe = loaded.recipe
    runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
    runner.activate()
    return runner


def _sim_runner(rknn: Any, outputs: list[str], log_file: Path) -> Runner:
    runner = RknnRunner(lambda: rknn, outputs, "NCHW", log_file)
    runner.activate()
    return runner


def _quantized(loaded: LoadedRecipe, artifacts: Artifacts) -> RknnBuild:
    """The recipe's quantized build on its own calibration set (no float16 twin: not needed here)."""
    recipe = loaded.recipe
    list_file = build_calibration_set(loaded, calib_dir())
    return build_rknn(loaded, artifacts.onnx, artifacts.source.sha256, list_file,
                      artifacts.model_dir / f"{recipe.artifact_stem}.rknn")


def _figures(build: RknnBuild) -> dict[str, Any]:
    return {"build_seconds": build.provenance["build_seconds"], "bytes": build.provenance["artifact_bytes"]}


def symbolic_hw(onnx_path: Path, out_path: Path) -> Path:
    """A copy of a fully convolutional NCHW ONNX whose input and outputs take any height and width."""
    model = onnx.load(str(onnx_path))
    for node in model.graph.node:
        pads = next((a for a in node.attribute if a.name == "pads"), None)
        if node.op_type == "MaxPool" and pads is not None:
            # TensorFlow's SAME pooling pads by the input size, so tf2onnx wrote this size's pads out
            # ([0, 0, 0, 1] at an odd width); for every size that is ONNX's SAME_UPPER
            node.attribute.remove(pads)
            node.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))
        elif pads is not None and any(pads.ints):
            raise ValueError(f"{onnx_path}: {node.op_type} {node.name} pads {list(pads.ints)} depend on the input size")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:  # NHWC maps (tf2onnx keeps TensorFlow's output layout)
        out_dims = output.type.tensor_type.shape.dim
        out_dims[1].dim_param, out_dims[2].dim_param = "out_height", "out_width"
    del model.graph.value_info[:]
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return out_path


def even(shape: Shape) -> Shape:
    return shape[0] + shape[0] % 2, shape[1] + shape[1] % 2


def padded_to_even(fn: NetFn) -> NetFn:
    """P-Net of the dynamic build at an odd level: the level padded with grey to even sides.

    rknn-toolkit2 2.5.0 builds dynamic_input shapes of odd height or width, but its simulator then
    fails at the first one ("maxpooling1 ... Got: 95 Expected: 96"): TensorFlow's SAME pooling pads by
    the input size and the build keeps one padding for every shape. One grey row / column keeps every
    shape even and gives the same output size (conv 3x3 valid, then pool 2/2: ceil((n - 2) / 2) both
    ways); only the last output row / column sees grey where TensorFlow pads with -inf."""
    def run(pixels: np.ndarray) -> list[np.ndarray]:
        height, width = pixels.shape[2:]
        padded = np.pad(pixels, ((0, 0), (0, 0), (0, height % 2), (0, width % 2)), constant_values=GREY)
        return fn(padded)
    return run


def dynamic_pnet(largest: LoadedRecipe, artifacts: Artifacts, shapes: list[Shape]) -> tuple[Toolkit, dict[str, Any]]:
    """One P-Net build for every level (config dynamic_input, odd sides made even: `padded_to_even`),
    calibrated at the largest level."""
    recipe = largest.recipe
    out = artifacts.model_dir.parent / f"{recipe.name.rsplit('-', 1)[0]}-dynamic"
    out.mkdir(parents=True, exist_ok=True)
    model = symbolic_hw(artifacts.onnx, out / "pnet-dynamic.onnx")
    list_file = build_calibration_set(largest, calib_dir())
    log_file = out / "build.log"
    started = time.perf_counter()
    toolkit = Toolkit(largest, log_file, quantized=True)  # config as the recipe says ...
    quant = recipe.quantization
    toolkit.call("config", "pyramid", "list shapes the model accepts",  # ... and again with every level's shape
                 lambda: toolkit.rknn.config(mean_values=[recipe.preprocess.mean], std_values=[recipe.preprocess.std],
                                             quantized_dtype=quant.dtype, quantized_algorithm=quant.algorithm,
                                             quantized_method=quant.method, target_platform=recipe.target.platform,
                                             dynamic_input=[[[1, 3, *even(shape)]] for shape in shapes]))
    toolkit.call("load_onnx", "outputs", "check the ONNX", lambda: toolkit.rknn.load_onnx(model=str(model)))
    with scratch_dir() as scratch:
        dataset = absolute_list(list_file, scratch)
        toolkit.call("build", "quantization.calibration", "see the log",
                     lambda: toolkit.rknn.build(do_quantization=True, dataset=str(dataset)), cwd=scratch)
    seconds = time.perf_counter() - started
    rknn_path = out / f"pnet-dynamic-{quant.dtype}-{recipe.target.platform}.rknn"
    with atomic_path(rknn_path) as tmp:
        toolkit.call("export_rknn", "", "check free disk space", lambda: toolkit.rknn.export_rknn(str(tmp)))
    return toolkit, {"build_seconds": round(seconds, 2), "bytes": rknn_path.stat().st_size,
                     "artifact": str(rknn_path.relative_to(workspace())), "sha256": sha256_file(rknn_path)}


def build_nets(recipe: CascadeRecipe, convert: ConvertAll | None = None) -> Nets:
    """Float and (given `convert`) quantized nets of the cascade, P-Net as `recipe.pyramid` says.
    R-Net and O-Net are converted as `rkverify.py run` converts them: `convert` is verify.run.convert_all
    (their calibration faces aligned by the align_with detector first), handed in by the caller."""
    quantize = convert is not None
    shapes = level_shapes(recipe)
    recipes: dict[str, LoadedRecipe] = {}
    float_side = Side(pnet={}, rnet=lambda _: [], onet=lambda _: [])
    quant_side = Side(pnet={}, rnet=lambda _: [], onet=lambda _: [])
    nets = Nets(recipes, float_side, quant_side)
    level_artifacts = {}
    for shape in shapes:
        loaded = level_recipe(recipe.nets.pnet, shape)
        recipes[f"pnet-{shape[0]}x{shape[1]}"] = loaded
        artifacts = level_artifacts[shape] = convert_recipe(loaded, float_only=True)
        runner = _float_runner(loaded, artifacts)
        float_side.runners.append(runner)
        float_side.pnet[shape] = net_fn(runner, loaded.recipe.outputs)
        if quantize and recipe.pyramid == "per_scale":
            build = _quantized(loaded, artifacts)
            nets.live.append(build)
            quant_side.builds[build.path.name] = _figures(build)
            sim = _sim_runner(build.rknn, loaded.recipe.outputs, artifacts.model_dir / "simulator.log")
            quant_side.runners.append(sim)
            quant_side.pnet[shape] = net_fn(sim, loaded.recipe.outputs)
            nets.layer_builds[f"pnet-{shape[0]}x{shape[1]}"] = build.rknn
    if quantize and recipe.pyramid == "dynamic":
        largest = recipes[f"pnet-{shapes[0][0]}x{shapes[0][1]}"]
        toolkit, figures = dynamic_pnet(largest, level_artifacts[shapes[0]], shapes)
        nets.live.append(toolkit)
        quant_side.builds[Path(figures["artifact"]).name] = figures
        sim = _sim_runner(toolkit.rknn, largest.recipe.outputs, toolkit.log_file)
        quant_side.runners.append(sim)
        quant_side.pnet = dict.fromkeys(shapes, padded_to_even(net_fn(sim, largest.recipe.outputs)))
        nets.layer_builds |= {f"pnet-{h}x{w}": toolkit.rknn for h, w in shapes}
    for role in ("rnet", "onet"):
        name = getattr(recipe.nets, role)
        if quantize:
            assert convert is not None
            loaded, artifacts, finder = convert(name)
            if finder is not None:
                finder.release()
        else:
            loaded = load_recipe(name)
            artifacts = convert_recipe(loaded, float_only=True)
        recipes[role] = loaded
        runner = _float_runner(loaded, artifacts)
        float_side.runners.append(runner)
        setattr(float_side, role, net_fn(runner, loaded.recipe.outputs))
        if quantize:
            build = artifacts.built
            nets.live.extend(b for b in (artifacts.rknn, artifacts.fp16) if b is not None)
            quant_side.builds[build.path.name] = _figures(build)
            sim = _sim_runner(build.rknn, loaded.recipe.outputs, artifacts.model_dir / "simulator.log")
            quant_side.runners.append(sim)
            setattr(quant_side, role, net_fn(sim, loaded.recipe.outputs))
            nets.layer_builds[role] = build.rknn
    return nets
