"""Benchmark: images/s of face alignment and embedding, float (ONNX Runtime) vs RKNN simulator.

Writes reports/benchmarks/verification_speed.json. Caches are bypassed (every image is run),
and the share of wall time spent outside the engines (preprocessing, decoding, alignment
maths, Python) is reported beside the engine time.

    python benchmarks/verification_speed.py [recipe] [--repeat N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from convert.pipeline import release  # noqa: E402
from convert.preprocess import prepare_array, read_bgr  # noqa: E402
from convert.recipe import PROJECT_ROOT  # noqa: E402
from rkverify import convert_all  # noqa: E402
from verify.align import align  # noqa: E402
from verify.evaluation import active, detectors, rknn_runner  # noqa: E402
from verify.recognition import choose_pairs, main_face_landmarks  # noqa: E402
from verify.runners import OnnxRuntimeRunner, Runner  # noqa: E402


def timed(label: str, runner: Runner, items: list, work, repeat: int) -> dict[str, float]:
    engine = 0.0
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            work(item)
            engine += runner.inference_time
    wall = time.perf_counter() - start
    count = len(items) * repeat
    print(f"{label:32s} {count / wall:8.1f} img/s   engine {engine / wall:5.1%} of wall", file=sys.stderr)
    return {"images": count, "images_per_second": count / wall, "wall_seconds": wall,
            "engine_seconds": engine, "outside_engine_share": 1 - engine / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="arcface-mobilefacenet")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    loaded, artifacts, detector = convert_all(args.recipe)
    recipe = loaded.recipe
    if detector is None:
        raise SystemExit(f"{args.recipe}: the benchmark needs a recipe that aligns faces with a detector")
    detector_loaded, detector_artifacts = detector
    pairs, dataset, _ = choose_pairs(recipe.evaluate.verification, loaded.path)
    paths = sorted({p.first for p in pairs.pairs} | {p.second for p in pairs.pairs})
    log = PROJECT_ROOT / "reports" / "benchmarks" / "toolkit.log"
    float_det, quant_det = detectors(detector, log)
    float_rec = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
    quant_rec = rknn_runner(artifacts.rknn, recipe, log)
    figures = {}
    crops = []
    with active(float_det.runner, quant_det.runner, float_rec, quant_rec):
        for d in (float_det, quant_det):
            def align_one(path: Path, d=d) -> None:
                points = main_face_landmarks(path, d)
                if points is not None and d is float_det:
                    crops.append(align(read_bgr(path), points, recipe.model_input.height_width))
            figures[f"detect+align {d.runner.name}"] = timed(f"detect+align ({d.runner.name})", d.runner, paths,
                                                               align_one, 1)
        for runner in (float_rec, quant_rec):
            figures[f"embed {runner.name}"] = timed(
                f"embed ({runner.name})", runner, crops,
                lambda crop, r=runner: r.infer(prepare_array(crop, recipe.model_input, recipe.preprocess, Path("-")).pixels),
                args.repeat)
    for built in (artifacts, detector_artifacts):
        release(built)
    out = PROJECT_ROOT / "reports" / "benchmarks" / "verification_speed.json"
    write_json_atomic(out, {"recipe": recipe.name, "dataset": dataset, "images": len(paths), "measured_at": utc_now(),
                            "tools": tool_versions(), "figures": figures})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
