"""Build the .rknn with rknn-toolkit2 and export it with a provenance sidecar.

The RKNN object is returned live: rknn-toolkit2's simulator can only run a model built in
the same process (a model loaded with load_rknn cannot init_runtime on the simulator).
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from convert.artifacts import atomic_path, sha256_file, tool_versions, utc_now, write_json_atomic
from convert.calibration import absolute_list
from convert.errors import RkverifyError
from convert.graph_cut import cut_fix
from convert.recipe import LoadedRecipe
from convert.toolkit_log import last_error, toolkit_output_to


@dataclass
class RknnBuild:
    rknn: Any  # rknn.api.RKNN, built in this process
    path: Path
    provenance: dict[str, Any]


# Toolkit failures whose cause we know: (text in its log or exception, recipe field, fix)
KNOWN_FAILURES = [
    ("_p_fuse_pad_into_conv", "build.disable_rules",
     "add fuse_pad_into_conv to build.disable_rules (the toolkit cannot fuse this Pad, e.g. Keras ZeroPadding2D)"),
    ("manually and try again", "outputs",
     "the NPU cannot run that op: cut the graph before it (outputs: the tensors that feed it) and run "
     "the rest on the host"),
    # an op whose output size depends on the data (NonMaxSuppression, measured with 2.5.0: "The input 0 of
    # NonMaxSuppression(...) need to be constant! It will cause the graph to be a dynamic graph!")
    ("to be a dynamic graph", "outputs",
     "the NPU runs static graphs only: cut the graph before that op (outputs: the tensors that feed it) and run "
     "the rest on the host"),
    ("is wrong, expect", "inputs.0.layout",
     "mean/std apply to dim 1 of an ONNX input: an NHWC model takes layout: NHWC with its own shape [1, H, W, C] "
     "(rkverify then puts a transpose in front)"),
]


NO_SPACE = "No space left on device"  # the toolkit catches the OSError and logs its text


# Builds that kill the process (a segfault cannot be caught and turned into an error), measured:
# (toolkit version, dtype, ONNX op in the graph, platforms, what the toolkit prints before it dies).
# MobileFaceNet w16a16i_dfp with 2.5.0: segfaults on rk3588/rk3568/rk3566/rk3562; builds on rk3576,
# rv1106 and rv1126b (the latter two still print the Relu dtype error, see their build logs).
KNOWN_CRASHES = [("2.5.0", "w16a16i_dfp", "PRelu", ("rk3588", "rk3568", "rk3566", "rk3562"),
                  "Meet unsupported tensor dtype in Relu")]


def refuse_known_crash(loaded: LoadedRecipe, onnx_path: Path) -> None:
    """One clear line instead of a segfault, before the toolkit is called."""
    dtype = loaded.recipe.quantization.dtype
    version = tool_versions()["rknn-toolkit2"]
    ops = {node.op_type for node in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    platform = loaded.recipe.target.platform
    for crash_version, crash_dtype, op, platforms, said in KNOWN_CRASHES:
        if (version, dtype) == (crash_version, crash_dtype) and op in ops and platform in platforms:
            raise RkverifyError(loaded.path, "quantization.dtype", f"rknn-toolkit2 {version} crashes building "
                                f"{dtype} for {platform} of a graph with {op} (\"{said}\", then a "
                                "segmentation fault)",
                                "use float16 (no quantization), or w8a8 with quantization.algorithm: mmse or "
                                "quantization.hybrid float layers")


def known_failure(log_text: str, detail: str, onnx_path: Path | None = None) -> tuple[str, str] | None:
    """(recipe field, fix) for a failure whose cause is known; an op the NPU cannot run gets the
    exact outputs to cut at, read from the graph the toolkit was given."""
    for needle, field, fix in KNOWN_FAILURES:
        if needle in log_text or needle in detail:
            if field == "outputs":
                fix = cut_fix(f"{detail}\n{log_text}", onnx_path) or fix
            return field, fix
    return None


@contextlib.contextmanager
def in_dir(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A folder of its own for toolkit calls, removed afterwards: with verbose=True the build writes
    check*.onnx (up to ~100 MB for a large float16 model) into the working directory, and hybrid
    step 1 writes its outputs there too."""
    with tempfile.TemporaryDirectory(prefix="rkverify-toolkit-") as folder:
        yield Path(folder)


class Toolkit:
    """One RKNN object, configured and loaded for a recipe; its console goes to `log_file` and
    every failing call (return code or exception) becomes one RkverifyError naming a field."""

    def __init__(self, loaded: LoadedRecipe, log_file: Path, quantized: bool) -> None:
        from rknn.api import RKNN  # heavy import (torch); only when building

        self.loaded, self.log_file = loaded, log_file
        self.onnx_path: Path | None = None  # the graph given to load_onnx, for error messages
        with toolkit_output_to(log_file):
            self.rknn = RKNN(verbose=True)
        recipe = loaded.recipe
        quant = recipe.quantization
        self.call("config", "quantization", "use a dtype/algorithm/method the target supports",
                  lambda: self.rknn.config(mean_values=[recipe.preprocess.mean], std_values=[recipe.preprocess.std],
                                           quantized_dtype=quant.dtype if quantized else "w8a8",  # unused if float
                                           quantized_algorithm=quant.algorithm, quantized_method=quant.method,
                                           target_platform=recipe.target.platform,
                                           disable_rules=recipe.build.disable_rules))

    def load(self, onnx_path: Path) -> None:
        spec, outputs = self.loaded.recipe.model_input, self.loaded.recipe.outputs
        self.onnx_path = onnx_path
        self.call("load_onnx", "outputs", "check input/output names and shapes against the model",
                  lambda: self.rknn.load_onnx(model=str(onnx_path), inputs=[spec.name],
                                              input_size_list=[spec.shape], outputs=outputs))

    def call(self, step: str, field: str, fix: str, action: Callable[[], int], cwd: Path | None = None) -> None:
        """Run `action` in `cwd` (default: a scratch folder) with the console going to the log."""
        try:
            with (contextlib.nullcontext(cwd) if cwd else scratch_dir()) as folder, in_dir(folder), \
                    toolkit_output_to(self.log_file):
                ret = action()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the machine's fault, not the recipe's: exit 3, not "fix field X"
                self.rknn.release()
                raise
            ret, detail = -1, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the toolkit raises bare ValueError/AttributeError on bad input
            # the toolkit wraps its traceback into the message; keep the last statement, whole
            traceback = str(exc)
            lines = [line.strip() for line in traceback.strip().splitlines()]
            tail = [line for line in lines if line and not line.startswith(("File ", "Traceback"))][-2:]
            ret, detail = -1, " ".join(tail) or type(exc).__name__
        else:
            traceback, detail = "", last_error(self.log_file)
        if ret != 0:
            self.rknn.release()
            if NO_SPACE in detail or NO_SPACE in self.log_file.read_text(errors="replace"):
                raise OSError(errno.ENOSPC, f"rknn-toolkit2 {step}: {NO_SPACE} (toolkit log: {self.log_file})")
            # the failing rule is named in the wrapped traceback, not always in the log
            seen = self.log_file.read_text(errors="replace") + traceback
            blamed, remedy = known_failure(seen, detail, self.onnx_path) or (field, fix)
            raise RkverifyError(self.loaded.path, blamed, f"rknn-toolkit2 {step} failed: {detail}",
                                f"{remedy} (toolkit log: {self.log_file})")


def quantized_build(loaded: LoadedRecipe, onnx_path: Path, list_file: Path, log_file: Path) -> Toolkit:
    """A live quantized build calibrated on `list_file` (not exported)."""
    toolkit = Toolkit(loaded, log_file, quantized=True)
    toolkit.load(onnx_path)
    with scratch_dir() as scratch:
        dataset = absolute_list(list_file, scratch)
        toolkit.call("build", "quantization.calibration", "check the calibration set and the log for the failing op",
                     lambda: toolkit.rknn.build(do_quantization=True, dataset=str(dataset)), cwd=scratch)
    return toolkit


def live_build(loaded: LoadedRecipe, onnx_path: Path, list_file: Path | None, log_file: Path) -> Toolkit:
    """A live build, not exported: quantized on `list_file` (with the recipe's hybrid float layers,
    if any), or float16 without one. Worker processes call this to simulate in-process."""
    from convert.hybrid import hybrid_base, hybrid_build

    float_layers = loaded.recipe.quantization.hybrid.float_layers if list_file is not None else []
    if float_layers:
        assert list_file is not None
        base = hybrid_base(loaded, onnx_path, list_file, onnx_path.parent / "hybrid", log_file)
        return hybrid_build(loaded, base, float_layers, log_file)
    if list_file is not None:
        return quantized_build(loaded, onnx_path, list_file, log_file)
    toolkit = Toolkit(loaded, log_file, quantized=False)
    toolkit.load(onnx_path)
    toolkit.call("build", "", "see the log for the op that failed", lambda: toolkit.rknn.build(do_quantization=False))
    return toolkit


def build_rknn(loaded: LoadedRecipe, onnx_path: Path, source_sha256: str, list_file: Path | None,
               out_path: Path) -> RknnBuild:
    """Configure, load, build (quantized when `list_file` is given; with the recipe's
    quantization.hybrid float layers, if any) and export to `out_path`."""
    recipe = loaded.recipe
    quant = recipe.quantization
    # the log is written beside the model under another name and renamed with it: an interrupted
    # or failed build leaves the previous .rknn and its .build.log a matching pair
    if list_file is not None:
        refuse_known_crash(loaded, onnx_path)
    log_file = out_path.with_suffix(".build.log")
    partial_log = out_path.with_suffix(".build.log.partial")
    partial_log.unlink(missing_ok=True)
    started = time.perf_counter()
    float_layers = quant.hybrid.float_layers if list_file is not None else []
    toolkit = live_build(loaded, onnx_path, list_file, partial_log)
    build_seconds = time.perf_counter() - started
    with atomic_path(out_path) as tmp:
        toolkit.call("export_rknn", "", "check free disk space", lambda: toolkit.rknn.export_rknn(str(tmp)))
        artifact_sha256, artifact_bytes = sha256_file(tmp), tmp.stat().st_size
        os.replace(partial_log, log_file)  # atomic_path renames the model right after
    provenance = {
        "artifact": out_path.name,
        "artifact_sha256": artifact_sha256,
        "artifact_bytes": artifact_bytes,
        "recipe": str(loaded.path),
        "recipe_sha256": loaded.sha256,
        "source_sha256": source_sha256,
        "onnx_sha256": sha256_file(onnx_path),
        "quantized": list_file is not None,
        "dtype": quant.dtype if list_file is not None else "float16",
        "algorithm": quant.algorithm,
        "method": quant.method,
        "float_layers": float_layers,
        "platform": recipe.target.platform,
        "calibration_list": str(list_file) if list_file else None,
        "build_seconds": round(build_seconds, 2),
        "built_at": utc_now(),
        "tools": tool_versions(),
    }
    write_json_atomic(out_path.with_suffix(".json"), provenance)
    return RknnBuild(rknn=toolkit.rknn, path=out_path, provenance=provenance)
