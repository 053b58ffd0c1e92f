"""MTCNN float vs quantized on the eval photos, and which net loses the most.

- cascade: all three nets quantized vs all float: faces matched, IoU, landmark error, score drift;
- attribution: each net quantized alone, the other two in float, against the float cascade;
- per net: its own outputs, float vs quantized, on the very inputs the float cascade handed it
  (P-Net's pyramid levels, R-Net's and O-Net's candidate crops), and its per-layer drift
  (rknn-toolkit2 accuracy_analysis on a few of those inputs).

    python -m verify.face.mtcnn_agreement [mtcnn] [--pyramid per_scale|dynamic] [--images N]
writes reports/<cascade>/<run-id>/cascade.json and prints the gates (not metrics.json: the reports index
reads those as single-recipe runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import tool_versions, utc_now, write_json_atomic
from core.compare import output_agreement
from core.pixels import read_bgr, resolve_images
from verify.face import detection
from verify.face.mtcnn_cascade import Faces
from verify.face.mtcnn_recipe import CascadeRecipe, load_cascade
from verify.face.mtcnn_sides import NETS, Recorder, cascade_of, frame_of

LAYER_INPUTS = 2  # inputs per net given to accuracy_analysis


def as_detections(faces: Faces) -> detection.Detections:
    return detection.Detections(faces.boxes, faces.scores, faces.landmarks)


def net_drift(nets: Any, recorded: dict[str, Recorder]) -> dict[str, dict[str, Any]]:
    """Each net's outputs float vs quantized on the inputs the float cascade gave it (pooled)."""
    result: dict[str, dict[str, Any]] = {}
    for role in NETS:
        keys = [k for k in recorded if k.split("@")[0] == role]
        pairs = []  # (float outputs, quantized outputs) per input
        for key in keys:
            if role == "pnet":
                shape = tuple(int(v) for v in key.split("@")[1].split("x"))
                ref_fn, test_fn = nets.float.pnet_at(shape), nets.quantized.pnet_at(shape)
            else:
                ref_fn, test_fn = getattr(nets.float, role), getattr(nets.quantized, role)
            pairs += [(ref_fn(x), test_fn(x)) for x in recorded[key].inputs]
        if not pairs:
            continue
        outputs = nets.recipes[role if role != "pnet" else next(k for k in nets.recipes if k.startswith("pnet"))
                               ].recipe.outputs
        result[role] = {"inputs": len(pairs)}
        for index, name in enumerate(outputs):
            ref = np.concatenate([p[0][index].ravel() for p in pairs])
            test = np.concatenate([p[1][index].ravel() for p in pairs])
            figures = output_agreement(ref, test)
            result[role][name] = {k: figures[k] for k in ("cosine", "sqnr_db", "max_abs_error")}
    return result


def layer_drift(nets: Any, recorded: dict[str, Recorder], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Worst layers of R-Net's and O-Net's quantized builds (and P-Net's at its busiest level),
    accuracy_analysis on the first LAYER_INPUTS inputs the float cascade gave each."""
    from verify.analyses.layers import run_accuracy_analysis

    result = {}
    pnet_keys = sorted((k for k in recorded if k.startswith("pnet@")), key=lambda k: -len(recorded[k].inputs))
    for key in ([pnet_keys[0]] if pnet_keys else []) + ["rnet", "onet"]:
        role = key.split("@")[0]
        name = f"pnet-{key.split('@')[1]}" if role == "pnet" else role
        build = nets.layer_builds.get(name)
        inputs = recorded[key].inputs[:LAYER_INPUTS] if key in recorded else []
        if build is None or not inputs:
            continue
        table = run_accuracy_analysis(build, inputs, out_dir / name, out_dir / f"{name}-analysis.log")
        worst = table.nsmallest(3, "entire_cos_mean")
        result[name] = {"layers": int(len(table)), "images": len(inputs),
                        "worst": [{"layer": r.layer, "op": r.op, "entire_cos": float(r.entire_cos_mean),
                                   "single_cos": float(r.single_cos_mean)} for r in worst.itertuples()]}
    return result


def agreement(reference: list[Faces], test: list[Faces], match_iou: float) -> dict[str, Any]:
    per_image = [detection.agreement(as_detections(r), as_detections(t), match_iou) for r, t in zip(reference, test)]
    return detection.summarise(per_image)


def gates(recipe: CascadeRecipe, figures: dict[str, Any]) -> list[dict[str, Any]]:
    checks = [("min_match_rate", "match_rate", True), ("min_mean_iou", "mean_iou", True),
              ("max_mean_landmark_error", "mean_landmark_error", False)]
    result = []
    for gate, metric, at_least in checks:
        threshold = getattr(recipe.gates, gate)
        if threshold is None:
            continue
        value = figures[metric]
        passed = bool(value >= threshold) if at_least else bool(value <= threshold)
        result.append({"gate": gate, "metric": metric, "value": value, "threshold": threshold, "passed": passed})
    return result


def measure(recipe: CascadeRecipe, nets: Any, photos: list[Path], out_dir: Path, layers: bool = True
            ) -> dict[str, Any]:
    """Every figure of this module on `photos` (nets built by verify.mtcnn_nets.build_nets)."""
    from verify.face.mtcnn_nets import cascade_config

    config = cascade_config(recipe)
    frames = [frame_of(read_bgr(p), recipe.frame)[0] for p in photos]
    recorded: dict[str, Recorder] = {}
    reference_cascade = cascade_of(nets, config, set(), recorded)
    reference = [reference_cascade.detect(f) for f in frames]
    variants = {"all": set(NETS)} | {f"{net}_only": {net} for net in NETS}
    results: dict[str, Any] = {}
    for variant, quantized in variants.items():
        cascade = cascade_of(nets, config, quantized)
        started = time.perf_counter()
        found = [cascade.detect(f) for f in frames]
        results[variant] = agreement(reference, found, recipe.evaluate.match_iou) | {
            "seconds_per_image": (time.perf_counter() - started) / len(frames),
            "candidates": {net: int(np.sum([f.stages[net] for f in found])) for net in NETS}}
    losses = {net: 1 - results[f"{net}_only"]["mean_iou"] + results[f"{net}_only"]["mean_landmark_error"]
              + (1 - results[f"{net}_only"]["match_rate"]) for net in NETS}
    figures: dict[str, Any] = {
        "images": [str(p) for p in photos],
        "float_faces": int(sum(len(r.boxes) for r in reference)),
        "float_candidates": {net: int(np.sum([r.stages[net] for r in reference])) for net in NETS},
        "cascade": results,
        "most_loss": max(losses, key=lambda n: losses[n]),
        "net_outputs": net_drift(nets, recorded),
    }
    if layers:
        figures["net_layers"] = layer_drift(nets, recorded, out_dir / "layers")
    figures["gates"] = gates(recipe, results["all"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cascade", nargs="?", default="mtcnn")
    parser.add_argument("--pyramid", choices=["per_scale", "dynamic"], default=None)
    parser.add_argument("--images", type=int, default=None, help="first N eval photos (default: the recipe's count)")
    parser.add_argument("--no-layers", action="store_true", help="skip accuracy_analysis")
    args = parser.parse_args(argv)
    from core.recipe import PROJECT_ROOT
    from core.workspace import reports_dir
    from verify.face.mtcnn_nets import build_nets
    from verify.run import convert_all

    recipe, path, digest = load_cascade(args.cascade, args.pyramid)
    photos = resolve_images(recipe.evaluate.images, path, "evaluate.images")[: args.images or recipe.evaluate.count]
    run_dir = reports_dir() / recipe.name / time.strftime("%Y%m%d-%H%M%S")
    nets = build_nets(recipe, convert_all)
    try:
        figures = measure(recipe, nets, photos, run_dir, layers=not args.no_layers)
    finally:
        nets.release()
    metrics = {"recipe": str(path.relative_to(PROJECT_ROOT)), "recipe_sha256": digest, "pyramid": recipe.pyramid,
               "frame": recipe.frame, "net_recipes_sha256": {key: loaded.sha256 for key, loaded in nets.recipes.items()},
               "builds": nets.quantized.builds, "tools": tool_versions(), "measured_at": utc_now(),
               **figures}
    write_json_atomic(run_dir / "cascade.json", metrics)
    for gate in figures["gates"]:
        print(f"gate {gate['gate']}: {gate['value']:.4f} ({gate['threshold']}) {'PASS' if gate['passed'] else 'FAIL'}")
    print(f"figures: {run_dir / 'cascade.json'}")
    return 0 if all(g["passed"] for g in figures["gates"]) else 1


if __name__ == "__main__":
    sys.exit(main())
