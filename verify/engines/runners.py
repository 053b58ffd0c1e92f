"""The runners (core/runner.py's interface) of ONNX Runtime, the RKNN simulator and a board, the
specs a worker process rebuilds them from, and running one over many inputs."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from convert.toolkit_log import last_error, toolkit_output_to
from core.pixels import PreparedImage, normalize
from core.recipe import InputSpec, LoadedRecipe, Preprocess, Recipe
from core.runner import Runner
from verify.engines.workers import available_cores


class OnnxRuntimeRunner:
    """Float reference: the canonical ONNX on ONNX Runtime (CPU), normalising as the recipe says."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, spec: InputSpec, pre: Preprocess) -> None:
        self.onnx_path, self.spec, self.pre = onnx_path, spec, pre
        self.session: ort.InferenceSession | None = None
        self.inference_time = 0.0

    def activate(self) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = available_cores()  # a worker process: its share of the cores
        # idle pool threads must not spin: between two ONNX Runtime calls the simulator runs on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        assert self.session is not None, "activate() first"
        feed = {self.spec.name: normalize(pixels, self.pre, self.spec.layout)}
        start = time.perf_counter()
        outputs = self.session.run(None, feed)
        self.inference_time = time.perf_counter() - start
        return {meta.name: value for meta, value in zip(self.session.get_outputs(), outputs)}

    def deactivate(self) -> None:
        self.session = None


class RknnRunner:
    """A built RKNN model on the simulator (target=None) or on a board (target='rk3588', device_id)."""

    def __init__(self, load: Callable[[], Any], output_names: list[str], layout: str, log_file: Path,
                 target: str | None = None, device_id: str | None = None) -> None:
        self.load, self.output_names, self.layout, self.log_file = load, output_names, layout, log_file
        self.target, self.device_id = target, device_id
        self.name = f"rknn-{target}" if target else "rknn-simulator"
        self.rknn: Any = None
        self.inference_time = 0.0

    def activate(self) -> None:
        self.rknn = self.load()
        try:
            with toolkit_output_to(self.log_file):
                ret = self.rknn.init_runtime(target=self.target, device_id=self.device_id)
        except Exception:  # the toolkit raises (e.g. RuntimeError from get_board_info) when no board answers
            ret = -1
        if ret != 0:
            raise RuntimeError(f"{self.name}: init_runtime failed: {last_error(self.log_file)} (log: {self.log_file})")

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        # the toolkit prints its own progress bars (GraphPreparing, SessionPreparing) on fd 2
        with toolkit_output_to(self.log_file):
            start = time.perf_counter()
            outputs = self.rknn.inference(inputs=[pixels], data_format=self.layout.lower())
            self.inference_time = time.perf_counter() - start
        if outputs is None:
            raise RuntimeError(f"{self.name}: inference returned nothing (log: {self.log_file})")
        return dict(zip(self.output_names, outputs))

    def deactivate(self) -> None:
        self.rknn = None  # the owner of the build releases it


def board_loader(rknn_path: Path, log_file: Path) -> Callable[[], Any]:
    """A loader for the board: unlike the simulator, a board runs an exported .rknn."""

    def load() -> Any:
        from rknn.api import RKNN

        with toolkit_output_to(log_file):
            rknn = RKNN(verbose=True)
            ret = rknn.load_rknn(str(rknn_path))
        if ret != 0:
            raise RuntimeError(f"load_rknn({rknn_path}) failed: {last_error(log_file)}")
        return rknn

    return load


@dataclass(frozen=True)
class OnnxSpec:
    """How to make a float runner in any process: the canonical ONNX and its recipe."""

    onnx: Path
    recipe: Recipe

    @contextlib.contextmanager
    def running(self, log_file: Path) -> Iterator[Runner]:
        runner = OnnxRuntimeRunner(self.onnx, self.recipe.model_input, self.recipe.preprocess)
        runner.activate()
        try:
            yield runner
        finally:
            runner.deactivate()


@dataclass(frozen=True)
class SimulatorSpec:
    """How to make a simulator runner in any process: build the recipe there (the simulator runs
    only in-process builds). `calibration_list` None builds float16."""

    loaded: LoadedRecipe
    onnx: Path
    calibration_list: Path | None

    @contextlib.contextmanager
    def running(self, log_file: Path) -> Iterator[Runner]:
        from convert.build import live_build

        toolkit = live_build(self.loaded, self.onnx, self.calibration_list, log_file)
        recipe = self.loaded.recipe
        runner = RknnRunner(lambda: toolkit.rknn, recipe.outputs, recipe.model_input.layout, log_file)
        try:
            runner.activate()
            yield runner
        finally:
            runner.deactivate()
            toolkit.rknn.release()


RunnerSpec = OnnxSpec | SimulatorSpec


def run_all(runner: Runner, images: list[PreparedImage]) -> tuple[list[dict[str, np.ndarray]], float]:
    """Outputs per image and mean seconds per inference (engine time only); runner already active."""
    outputs, seconds = [], []
    for image in tqdm(images, desc=runner.name, unit="img", leave=False):
        outputs.append(runner.infer(image.pixels))
        seconds.append(runner.inference_time)
    return outputs, float(np.mean(seconds))


@contextlib.contextmanager
def active(*runners: Runner | None) -> Iterator[None]:
    started = []
    try:
        for runner in runners:
            if runner is not None:
                runner.activate()
                started.append(runner)
        yield
    finally:
        for runner in started:
            runner.deactivate()
