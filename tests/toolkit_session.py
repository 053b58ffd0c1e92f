"""Real rknn-toolkit2 calls as a run makes them, in a process of their own so a test can see its
console at the fd level: a hybrid build (step 1 + step 2), a float16 build, and a simulator
inference on each. Run from the project root: `python -m tests.toolkit_session <out-dir>`;
every artifact goes under <out-dir>, the toolkit's console to <out-dir>/toolkit.log.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from convert.build import build_rknn
from convert.calibration import build_calibration_set
from convert.hybrid import hybrid_base
from convert.onnx_prep import prepare_onnx
from convert.source import obtain_source
from core.packages import package_dir
from core.pixels import prepare
from core.recipe import load_recipe
from verify.engines.runners import RknnRunner

CALIBRATION = {"quantization.calibration.size": 4}


def main(out: Path) -> None:
    loaded = load_recipe("retinaface", CALIBRATION)
    recipe = loaded.recipe
    model_dir = out / "models" / recipe.name
    source = obtain_source(loaded, out / "models")
    onnx_path = prepare_onnx(source.model, loaded, model_dir / f"{recipe.name}.onnx")
    list_file = build_calibration_set(loaded, out / "calib_data")
    log_file = out / "toolkit.log"
    # a real tensor to keep in float16: the last one step 1 quantized
    float_layer = hybrid_base(loaded, onnx_path, list_file, model_dir / "hybrid", log_file).quantized_layers[-1]
    hybrid = load_recipe("retinaface", CALIBRATION | {"quantization.hybrid.float_layers": [float_layer]})
    builds = {"hybrid": build_rknn(hybrid, onnx_path, source.sha256, list_file, model_dir / "hybrid.rknn"),
              "float16": build_rknn(loaded, onnx_path, source.sha256, None, model_dir / "float16.rknn")}
    image = prepare(package_dir("insightface") / "insightface/data/images/t1.jpg", recipe.model_input, recipe.preprocess)
    for name, build in builds.items():
        runner = RknnRunner(lambda b=build: b.rknn, recipe.outputs, "NCHW", log_file)
        runner.activate()
        outputs = runner.infer(image.pixels)
        print(f"[session] {name} on the simulator: {', '.join(f'{k} {v.shape}' for k, v in outputs.items())}",
              file=sys.stderr, flush=True)
        build.rknn.release()
    (out / "session.json").write_text(json.dumps({"float_layer": float_layer, "log": str(log_file)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
