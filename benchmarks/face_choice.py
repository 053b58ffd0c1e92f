"""Benchmark: a recognizer's float LFW accuracy for each way of choosing the labelled face.

LFW labels the face nearest the image centre; a photo often holds more than one face. This runs
the recipe's float model (ONNX Runtime) over every complete fold once per `face_choice`
(central, largest, score), with the recipe's detector, alignment and flip, and writes
reports/benchmarks/face_choice-<recipe>.json: accuracy per choice, and how many images the
choices disagree on. Detections come from (and go to) the shared cache.

    python benchmarks/face_choice.py [recipe]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from convert.pipeline import convert_recipe  # noqa: E402
from convert.signals import terminate_as_interrupt  # noqa: E402
from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.pixels import read_bgr  # noqa: E402
from core.workspace import cache_dir, reports_dir  # noqa: E402
from verify.engines.cache import VectorCache  # noqa: E402
from verify.engines.runners import OnnxSpec  # noqa: E402
from verify.face.face_pass import FaceSettings, PassJob, run_job  # noqa: E402
from verify.face.faces import FaceChoice, choose  # noqa: E402
from verify.face.recognition import choose_pairs, image_hashes, protocol_folds  # noqa: E402
from verify.face.verification_metrics import squared_distance, verification_report  # noqa: E402
from verify.finders import RecipeFinder  # noqa: E402
from verify.recipes import load  # noqa: E402

CHOICES: tuple[FaceChoice, ...] = ("central", "largest", "score")


def main() -> int:
    terminate_as_interrupt()  # SIGTERM (timeout, CI) stops the workers and cleans up, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="arcface-mobilefacenet")
    args = parser.parse_args()
    loaded = load(args.recipe)
    recipe = loaded.recipe
    cfg = recipe.evaluate.verification
    assert cfg is not None and cfg.faces == "align", "a recipe that aligns faces with a detector"
    artifacts = convert_recipe(loaded, float_only=True)
    detector_loaded = load(cfg.detector)
    detector = RecipeFinder(detector_loaded, convert_recipe(detector_loaded, float_only=True)).detector(Path("/dev/null"))
    pairs, dataset, _ = choose_pairs(cfg, loaded.path)
    paths = sorted({p.first for p in pairs.pairs} | {p.second for p in pairs.pairs})
    sha = image_hashes(paths)
    rows = VectorCache(cache_dir() / f"detections-{detector.rows_key('float')[:16]}.npz")
    same = np.array([p.same for p in pairs.pairs])
    folds = protocol_folds(pairs)
    log = reports_dir() / "benchmarks" / "face_choice.log"
    results = {}
    for choice in CHOICES:
        job = PassJob(images=[(p, sha[p]) for p in paths], recognizer=recipe, detector=detector.recipe,
                      settings=FaceSettings(choice, cfg.center_crop_fraction, cfg.flip),
                      detectors={"float": detector.float.spec}, recognizers={"float": OnnxSpec(artifacts.onnx, recipe)},
                      align_with={"float": "float"}, rows={"float": rows.entries},
                      embed={"float": set(sha.values())}, log_file=log)
        result = run_job(job)
        for key, value in result.rows["float"].items():
            rows.put(key, value)
        rows.save()
        emb = result.embeddings["float"]
        dist = squared_distance(np.stack([emb[sha[p.first]][1] for p in pairs.pairs]),
                                np.stack([emb[sha[p.second]][1] for p in pairs.pairs]))
        report = verification_report(dist, same, folds, cfg.far)
        results[choice] = {"accuracy": report["accuracy"]["mean"], "std": report["accuracy"]["std"],
                           "val_at_far": report["val_at_far"]["val"], "auc": report["auc"]}
        print(choice, results[choice], file=sys.stderr)
    several = [p for p in paths if len(rows.entries[sha[p]]) > 1]
    differ = 0
    for path in several:
        height, width = read_bgr(path).shape[:2]
        central = choose(rows.entries[sha[path]], "central", (height, width))
        largest = choose(rows.entries[sha[path]], "largest", (height, width))
        same_face = (central is None and largest is None) or (
            central is not None and largest is not None and np.array_equal(central, largest))
        differ += not same_face
    out = reports_dir() / "benchmarks" / f"face_choice-{recipe.name}.json"
    write_json_atomic(out, {"recipe": recipe.name, "dataset": dataset, "folds": [f + 1 for f in pairs.folds_used],
                            "pairs": len(pairs.pairs), "images": len(paths), "images_with_several_faces": len(several),
                            "central_is_not_largest": differ, "float": results, "measured_at": utc_now(),
                            "tools": tool_versions()})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
