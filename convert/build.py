"""A recipe's model built by rknn-toolkit2: plain, or hybrid with the recipe's float16 layers, live
in this process (the simulator runs only in-process builds) and exported with its provenance."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.hybrid import hybrid_base, hybrid_build
from convert.rknn_build import Toolkit, quantized_build, refuse_known_crash
from core.artifacts import atomic_path, sha256_file, tool_versions, utc_now, write_json_atomic
from core.recipe import LoadedRecipe


@dataclass
class RknnBuild:
    rknn: Any  # rknn.api.RKNN, built in this process
    path: Path
    provenance: dict[str, Any]


def live_build(loaded: LoadedRecipe, onnx_path: Path, list_file: Path | None, log_file: Path) -> Toolkit:
    """A live build, not exported: quantized on `list_file` (with the recipe's hybrid float layers,
    if any), or float16 without one. Worker processes call this to simulate in-process."""
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
    try:
        toolkit = live_build(loaded, onnx_path, list_file, partial_log)
        build_seconds = time.perf_counter() - started
        with atomic_path(out_path) as tmp:
            toolkit.call("export_rknn", "", "check free disk space", lambda: toolkit.rknn.export_rknn(str(tmp)))
            artifact_sha256, artifact_bytes = sha256_file(tmp), tmp.stat().st_size
            os.replace(partial_log, log_file)  # atomic_path renames the model right after
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: nothing half-written stays (a failed build's log does: its
        partial_log.unlink(missing_ok=True)  # error line names it)
        raise
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
