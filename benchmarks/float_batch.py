"""Benchmark: would the face pass's float side gain from batching? Measured before building it.

The face pass embeds one face at a time (verify/face/face_pass.py `embed`: the face, then its
mirror). This runs the recipe's canonical ONNX the way the face pass does (OnnxRuntimeRunner, one
face per call) and a copy whose batch dimension is free (input/output dim 0 symbolic, a constant
Reshape's leading batch size -> -1: keras-facenet's flatten to [1, 1792]) on `--batch` faces and
their mirrors per call, over `--images` LFW photos (centre crops: speed does not depend on
content), at 1 thread (what each of two workers on two cores gets) and at 2. Writes
reports/benchmarks/float_batch-<recipe>.json: ms per face (face + mirror) each way, the
speed-up, and the largest difference between batched and one-at-a-time embeddings.

    python benchmarks/float_batch.py [recipe] [--images 200] [--batch 16] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from convert.pipeline import convert_recipe  # noqa: E402
from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.pixels import prepare_array, read_bgr  # noqa: E402
from core.recipe import PROJECT_ROOT, Recipe  # noqa: E402
from core.workspace import reports_dir  # noqa: E402
from verify.engines.runners import OnnxRuntimeRunner  # noqa: E402
from verify.engines.workers import CORES_VARIABLE  # noqa: E402
from verify.recipes import load  # noqa: E402

LFW = PROJECT_ROOT.parent / "shared" / "lfw" / "lfw-deepfunneled"
ROUNDS = 2  # each way timed twice, interleaved; the faster round counts (the machine is shared)


def free_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with a symbolic batch dimension: input/output dim 0 'N', constant Reshape shapes
    that start with the fixed batch size start with -1 instead (in place)."""
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "N"
    del model.graph.value_info[:]
    constants = {t.name: t for t in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "Reshape" and n.input[1] in constants):
        shape = numpy_helper.to_array(constants[node.input[1]]).copy()
        if shape[0] == batch and -1 not in shape:
            shape[0] = -1
            free = numpy_helper.from_array(shape, f"{node.input[1]}__free_batch")
            model.graph.initializer.append(free)
            node.input[1] = free.name
    return model


def faces(recipe: Recipe, count: int) -> list[np.ndarray]:
    """Model-input pixels of `count` LFW photos, centre 160 px cropped."""
    paths = sorted(LFW.glob("*/*.jpg"))[:count]
    return [prepare_array(read_bgr(p)[45:205, 45:205], recipe.model_input, recipe.preprocess, p).pixels for p in paths]


def embed_all(runner: OnnxRuntimeRunner, pixels: list[np.ndarray], batch: int, axis: int) -> np.ndarray:
    """Embeddings of every face, then of every mirror: at batch 1 as the face pass calls (the face,
    then its mirror), else `batch` faces and their mirrors in one call."""
    faces_out, mirrors_out = [], []
    for start in range(0, len(pixels), batch):
        chunk = np.concatenate(pixels[start:start + batch])
        mirror = np.ascontiguousarray(np.flip(chunk, axis))
        calls = [chunk, mirror] if batch == 1 else [np.concatenate([chunk, mirror])]
        value = np.concatenate([next(iter(runner.infer(c).values())) for c in calls])
        faces_out.append(value[:len(chunk)])
        mirrors_out.append(value[len(chunk):])
    return np.concatenate(faces_out + mirrors_out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="keras-facenet")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    loaded = load(args.recipe)
    recipe = loaded.recipe
    onnx_path = convert_recipe(loaded, float_only=True).onnx
    pixels = faces(recipe, args.images)
    axis = 3 if recipe.model_input.layout == "NCHW" else 2  # width
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        batched_path = Path(scratch) / "batched.onnx"
        onnx.save(free_batch(onnx.load(str(onnx_path))), str(batched_path))
        for threads in args.threads:
            os.environ[CORES_VARIABLE] = str(threads)  # what OnnxRuntimeRunner gives its session
            one = OnnxRuntimeRunner(onnx_path, recipe.model_input, recipe.preprocess)
            many = OnnxRuntimeRunner(batched_path, recipe.model_input, recipe.preprocess)
            one.activate()
            many.activate()
            best = {1: float("inf"), args.batch: float("inf")}
            values: dict[int, np.ndarray] = {}
            for _ in range(ROUNDS):
                for batch, runner in ((1, one), (args.batch, many)):
                    started = time.perf_counter()
                    values[batch] = embed_all(runner, pixels, batch, axis)
                    best[batch] = min(best[batch], time.perf_counter() - started)
            rows.append({"threads": threads,
                         "ms_per_face_batch_1": round(best[1] / len(pixels) * 1000, 1),
                         f"ms_per_face_batch_{args.batch}": round(best[args.batch] / len(pixels) * 1000, 1),
                         "speedup": round(best[1] / best[args.batch], 2),
                         "max_abs_diff": float(np.abs(values[1] - values[args.batch]).max()),
                         "max_abs_value": float(np.abs(values[1]).max())})
            print(rows[-1], file=sys.stderr)
    out = reports_dir() / "benchmarks" / f"float_batch-{args.recipe}.json"
    write_json_atomic(out, {"recipe": args.recipe, "measured_at": utc_now(), "tools": tool_versions(),
                            "images": len(pixels), "batch": args.batch, "faces_per_call": "batch faces + mirrors",
                            "cpu_count": os.cpu_count(), "rows": rows})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
