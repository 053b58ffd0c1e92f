"""Build the .rknn with rknn-toolkit2 and export it with a provenance sidecar.

The RKNN object is returned live: rknn-toolkit2's simulator can only run a model built in
the same process (a model loaded with load_rknn cannot init_runtime on the simulator).
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx

from convert.calibration import absolute_list
from convert.graph_cut import cut_fix
from convert.toolkit_log import last_error, toolkit_output_to
from core.artifacts import tool_versions
from core.errors import RkverifyError
from core.recipe import LoadedRecipe

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
        from convert.toolkit_arrays import writable_initializers

        writable_initializers()  # before the toolkit reads any graph: it writes into the weights it reads
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
