"""One verification run: float vs quantized on the eval images, layers, task metrics, gates.

Everything is written to a temp folder and renamed to reports/<recipe>/<run-id>/ at the
end, so a failed run never leaves a half report and never touches earlier runs.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from convert.artifacts import atomic_dir, sha256_bytes, tool_versions, utc_now, write_json_atomic
from convert.frontends import native_runner
from convert.pipeline import Artifacts
from convert.preprocess import PreparedImage, prepare, resolve_images
from convert.progress import step
from convert.recipe import FLOAT16, LoadedRecipe, Recipe
from convert.rknn_build import RknnBuild
from convert.toolkit_log import toolkit_output_to
from verify import calibration_audit, detection, sensitivity
from verify.cache import SHARED_CACHE_DIR
from verify.compare import agreement_per_input, disagree, input_sensitivity, too_small
from verify.gates import evaluate_gates, gate_dicts
from verify.history import compare_runs, runs_of
from verify.layers import run_accuracy_analysis
from verify.preprocess_check import check_preprocessing
from verify.recognition import Detector, FacePass, Model, choose_pairs, pair_subset, verification_metrics
from verify.report import draw_overlay, render_index, render_report
from verify.runners import OnnxRuntimeRunner, OnnxSpec, RknnRunner, Runner, SimulatorSpec, board_loader
from verify.samples import sample_sizes

REGRESSION_TOLERANCE = 0.005  # a cosine drop larger than this against the previous run is flagged


def run_id(loaded: LoadedRecipe) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{loaded.sha256[:8]}"


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


def rknn_runner(build: RknnBuild, recipe: Recipe, log_file: Path) -> RknnRunner:
    """Simulator runner of an in-process build."""
    return RknnRunner(lambda: build.rknn, recipe.outputs, recipe.model_input.layout, log_file=log_file)


def quantized_spec(loaded: LoadedRecipe, artifacts: Artifacts) -> SimulatorSpec:
    """How a worker process rebuilds the run's quantized model (float16 recipes: no calibration)."""
    quantized = loaded.recipe.quantization.dtype != FLOAT16
    return SimulatorSpec(loaded, artifacts.onnx, artifacts.calibration_list if quantized else None)


def recognizer_models(loaded: LoadedRecipe, artifacts: Artifacts, float_runner: Runner,
                      quant_runner: Runner) -> dict[str, Model]:
    return {"float": Model(artifacts.float_key, OnnxSpec(artifacts.onnx, loaded.recipe), float_runner),
            "quantized": Model(artifacts.quant_key, quantized_spec(loaded, artifacts), quant_runner)}


def detector_of(detector: tuple[LoadedRecipe, Artifacts] | None, log_file: Path) -> Detector | None:
    """The aligning detector's float (ONNX Runtime) and quantized (simulator) models, not yet active."""
    if detector is None:
        return None
    loaded, artifacts = detector
    recipe = loaded.recipe
    float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
    quantized = None
    if artifacts.rknn is not None:
        quantized = Model(artifacts.quant_key, quantized_spec(loaded, artifacts),
                          rknn_runner(artifacts.rknn, recipe, log_file))
    return Detector(recipe, Model(artifacts.float_key, OnnxSpec(artifacts.onnx, recipe), float_runner), quantized)


def summarise_outputs(per_image: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in per_image[0]:
        values = {k: np.array([img[name][k] for img in per_image]) for k in per_image[0][name]}
        summary[name] = {k: {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
                         for k, v in values.items() if k != "nonfinite"}
        summary[name]["nonfinite"] = int(values["nonfinite"].sum())
        summary[name]["cos_norm_disagree"] = disagree(summary[name]["cosine"]["mean"], summary[name]["norm_ratio"]["mean"])
        summary[name]["too_small"] = too_small(summary[name]["reference_rms"]["mean"])
    return summary


def verify_artifacts(loaded: LoadedRecipe, artifacts: Artifacts, reports_dir: Path,
                     detector: tuple[LoadedRecipe, Artifacts] | None = None, workers: int = 1) -> Path:
    """Measure one recipe's artifacts; `detector` (recipe, artifacts) aligns faces for recognizers;
    dataset-sized work runs on `workers` processes."""
    recipe = loaded.recipe
    started = time.perf_counter()
    timings = dict(artifacts.timings)
    ident = run_id(loaded)
    final = reports_dir / recipe.name / ident
    with atomic_dir(final) as run_dir:
        log_file = run_dir / "toolkit.log"
        float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
        quant_runner = rknn_runner(artifacts.built, recipe, log_file)
        aligner = detector_of(detector, log_file)
        detector_runners = [m.live for m in (aligner.float, aligner.quantized) if m] if aligner else []
        face_pass = None
        verification = None
        with active(float_runner, quant_runner, *detector_runners):
            if recipe.evaluate.task == "recognition":
                face_pass = FacePass(loaded, recognizer_models(loaded, artifacts, float_runner, quant_runner),
                                     aligner, SHARED_CACHE_DIR, log_file, workers)
                with step("face verification, float vs quantized", timings):
                    verification, images = verification_metrics(loaded, face_pass, run_dir,
                                                                faces_for_drift=recipe.evaluate.count,
                                                                calibration=artifacts.calibration)
            else:
                with step("prepare eval images", timings):
                    found = resolve_images(recipe.evaluate.images, loaded.path, "evaluate.images")
                    images = [prepare(p, recipe.model_input, recipe.preprocess) for p in found[: recipe.evaluate.count]]
            paths = [im.path for im in images]
            with step(f"float on ONNX Runtime, {len(images)} inputs", timings):
                float_out, float_s = run_all(float_runner, images)
            with step(f"quantized on the RKNN simulator, {len(images)} inputs", timings):
                quant_out, quant_s = run_all(quant_runner, images)
            native_out = None
            native = native_runner(loaded, artifacts.source)
            if native is not None:
                with step(f"float on {native.name} (the source framework), {len(images)} inputs", timings), \
                        active(native):
                    native_out, _ = run_all(native, images)
            fp16_out = None
            if artifacts.fp16 is not None:
                fp16_runner = rknn_runner(artifacts.fp16, recipe, log_file)
                with step(f"float16 build on the RKNN simulator, {len(images)} inputs", timings), active(fp16_runner):
                    fp16_out, _ = run_all(fp16_runner, images)

        per_image = agreement_per_input(recipe.outputs, float_out, quant_out)
        metrics: dict[str, Any] = {
            "recipe": recipe.name,
            "run_id": ident,
            "created_at": utc_now(),
            "recipe_path": str(loaded.path),
            "recipe_sha256": loaded.sha256,
            "recipe_content": recipe.model_dump(mode="json"),
            "provenance": artifacts.built.provenance,
            "tools": tool_versions(),
            "calibration": {k: artifacts.calibration[k] for k in ("requested", "used", "available")}
            | {"images": [e["image"] for e in artifacts.calibration["images"]]},
            "eval_images": [str(p) for p in paths],
            "outputs": summarise_outputs(per_image),
            "per_image": [{"image": str(p), "outputs": o} for p, o in zip(paths, per_image)],
            "input_sensitivity_cosine": input_sensitivity(float_out),
            "speed": {"onnxruntime_ms_per_image": round(float_s * 1e3, 2),
                      "simulator_ms_per_image": round(quant_s * 1e3, 2)},
        }

        if artifacts.native_check:
            metrics["frontend_check"] = {"framework": recipe.source.framework,
                                         "worst_cosine_on_calibration_inputs": artifacts.native_check,
                                         "renamed_params": artifacts.renamed_params}
        if verification is not None:
            metrics["verification"] = verification
        if recipe.evaluate.task == "detection":
            metrics["detection"] = detection_metrics(loaded, images, float_out, quant_out, run_dir)

        metrics["calibration"]["audit"] = calibration_audit.audit(loaded, artifacts.calibration)
        # rebuilt variants (calibration resamples, hybrid candidates) are measured like the run itself
        measure = variant_measure(loaded, images, float_out, face_pass)
        float_side = [float_runner, *detector_runners]
        if recipe.analysis.calibration_resamples and recipe.target.runtime == "simulator":
            with step(f"calibration stability: {recipe.analysis.calibration_resamples} builds on random halves",
                      timings), active(*float_side):
                metrics["calibration"]["stability"] = calibration_audit.resampled_stability(
                    loaded, artifacts, measure, recipe.analysis.calibration_resamples, metrics, log_file)
        if recipe.analysis.preprocess_check and recipe.evaluate.task != "drift":  # drift: no task metric to judge by
            with step("preprocessing contract check (float model, alternative channel order / mean / std)", timings):
                metrics["preprocess_check"] = check_preprocessing(loaded, artifacts.onnx, images)
        k = min(recipe.evaluate.layer_analysis_images, len(images))
        layers = None
        if k:
            with step(f"per-layer accuracy_analysis on {k} images", timings):
                metrics["layers"], layers = layer_metrics(artifacts, recipe, images[:k], run_dir, log_file)
        if recipe.analysis.sensitivity_layers and layers is not None and recipe.target.runtime == "simulator":
            with step(f"sensitivity: {recipe.analysis.sensitivity_layers} layers in float16, one at a time"
                      + (" + proposed fix" if recipe.analysis.propose_fix else ""), timings), active(*float_side):
                whole_set = fix_on_every_pair(loaded, artifacts, face_pass, run_dir) if face_pass else None
                metrics["sensitivity"] = sensitivity.analyse(loaded, artifacts, layers, metrics, measure, log_file,
                                                             whole_set)
        board_out = None
        if recipe.target.runtime == "board":
            with step(f"quantized on board {recipe.target.device_id or ''}", timings):
                metrics["board"], board_out = board_metrics(artifacts, recipe, images, quant_out, log_file)
        chain = [(f"{recipe.source.framework} (native {native.name})", native_out)] if native_out else []
        chain += [("ONNX Runtime float32", float_out)]
        chain += [("RKNN float16 (compiler, no quantization)", fp16_out)] if fp16_out else []
        chain += [(f"RKNN {recipe.quantization.dtype} (quantization)", quant_out)]
        chain += [(f"board {recipe.target.platform} (runtime)", board_out)] if board_out else []
        if len(chain) > 2:
            metrics["stages"] = stage_attribution(recipe, chain)
        metrics["sample_sizes"] = sample_sizes(metrics)
        gates = evaluate_gates(recipe.gates, metrics)
        metrics["gates"] = gate_dicts(gates)
        metrics["passed"] = all(g.passed for g in gates)
        timings["total"] = round(time.perf_counter() - started + sum(artifacts.timings.values()), 3)
        metrics["timings_s"] = timings
        earlier = runs_of(reports_dir, recipe.name)
        if earlier:  # the previous run of this recipe is the baseline
            metrics["comparison"] = compare_runs(metrics, run_dir, earlier[-1], REGRESSION_TOLERANCE)
        write_json_atomic(run_dir / "metrics.json", metrics)
        render_report(run_dir)
    render_index(reports_dir)
    return final


def variant_measure(loaded: LoadedRecipe, images: list[PreparedImage], float_out: list[dict],
                    face_pass: FacePass | None) -> sensitivity.Measure:
    """How a rebuilt variant (e.g. hybrid) is measured: the run's inputs and task figures, verification
    on the recipe's fixed subset of pairs (analyses rank many variants: they must not each cost a
    whole dataset)."""
    recipe = loaded.recipe
    cfg = recipe.evaluate.verification
    subset = pair_subset(choose_pairs(cfg, loaded.path)[0], cfg.analysis_pairs) if cfg and face_pass else None

    def measure(runner: Runner, variant: str, scratch: Path, verification: bool = True) -> dict[str, Any]:
        out, _ = run_all(runner, images)
        metrics: dict[str, Any] = {"outputs": summarise_outputs(agreement_per_input(recipe.outputs, float_out, out))}
        if recipe.evaluate.task == "detection":
            metrics["detection"] = detection_metrics(loaded, images, float_out, out, scratch)
        if face_pass is not None and verification:
            key = sha256_bytes(f"{face_pass.recognizers['quantized'].key}:{variant}".encode())
            variant_pass = face_pass.with_quantized(Model(key, None, runner))
            metrics["verification"], _ = verification_metrics(loaded, variant_pass, scratch, subset)
        return metrics

    return measure


def fix_on_every_pair(loaded: LoadedRecipe, artifacts: Artifacts, face_pass: FacePass,
                      run_dir: Path) -> sensitivity.WholeSet:
    """Verification of a hybrid variant on every pair, its builds and embeddings in the workers."""

    def whole_set(float_layers: list[str]) -> dict[str, Any]:
        recipe = loaded.recipe
        quantization = recipe.quantization.model_copy(
            update={"hybrid": recipe.quantization.hybrid.model_copy(update={"float_layers": float_layers})})
        variant = loaded.model_copy(update={"recipe": recipe.model_copy(update={"quantization": quantization})})
        key = sha256_bytes(json.dumps([face_pass.recognizers["quantized"].key, sorted(float_layers)]).encode())
        model = Model(key, SimulatorSpec(variant, artifacts.onnx, artifacts.calibration_list))
        with tempfile.TemporaryDirectory(prefix="rkverify-fix-") as scratch:
            figures, _ = verification_metrics(variant, face_pass.with_quantized(model), Path(scratch))
        return {k: figures[k] for k in ("quantized", "accuracy_drop", "quantized_accuracy_at_float_threshold",
                                        "embedding_drift", "pass")} | {"flipped_pairs": len(figures["flipped_pairs"])}

    return whole_set


def detection_metrics(loaded: LoadedRecipe, images: list[PreparedImage], float_out: list[dict],
                      quant_out: list[dict], run_dir: Path) -> dict[str, Any]:
    recipe = loaded.recipe
    cfg = recipe.evaluate.detection
    hw = recipe.model_input.height_width
    per_image, foreground, decoded = [], [], []
    for image, f, q in zip(images, float_out, quant_out):
        ref = detection.decode(f, recipe.outputs, cfg, hw, image.scale)
        test = detection.decode(q, recipe.outputs, cfg, hw, image.scale)
        decoded.append((image.path, ref, test))
        per_image.append({"image": str(image.path)} | detection.agreement(ref, test, cfg.match_iou))
        foreground.append(detection.foreground_agreement(f, q, recipe.outputs, cfg))
    busiest = max(decoded, key=lambda d: len(d[1].boxes))  # the image with most float faces
    if len(busiest[1].boxes):
        draw_overlay(*busiest, run_dir / "overlay.jpg")
    with_faces = [fg for fg in foreground if next(iter(fg.values()))["anchors"]]
    foreground_cosine = {name: float(np.mean([fg[name]["cosine"] for fg in with_faces])) if with_faces else float("nan")
                         for name in foreground[0]}
    return detection.summarise(per_image) | {"foreground_cosine": foreground_cosine, "per_image": per_image}


def board_metrics(artifacts: Artifacts, recipe: Recipe, images: list[PreparedImage],
                  simulator_out: list[dict[str, np.ndarray]], log_file: Path
                  ) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """The board column: board vs simulator per output, the board's time and memory (+ its outputs)."""
    runner = RknnRunner(board_loader(artifacts.built.path, log_file), recipe.outputs, recipe.model_input.layout,
                        log_file=log_file, target=recipe.target.platform, device_id=recipe.target.device_id)
    with active(runner):
        board_out, board_s = run_all(runner, images)
        with toolkit_output_to(log_file):
            perf = runner.rknn.eval_perf(is_print=False)
            memory = runner.rknn.eval_memory(is_print=False)
    per_image = agreement_per_input(recipe.outputs, simulator_out, board_out)
    return {"device_id": recipe.target.device_id, "outputs_vs_simulator": summarise_outputs(per_image),
            "host_ms_per_image": round(board_s * 1e3, 2), "eval_perf": perf, "eval_memory": memory}, board_out


def layer_metrics(artifacts: Artifacts, recipe: Recipe, images: list[PreparedImage], run_dir: Path,
                  log_file: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """accuracy_analysis on `images` (on the board too when the recipe targets one); writes layers.csv.
    Returns the summary for metrics.json and the whole table."""
    on_board = recipe.target.runtime == "board"
    layers = run_accuracy_analysis(artifacts.built.rknn, [im.pixels for im in images], run_dir / "accuracy_analysis",
                                   log_file, target=recipe.target.platform if on_board else None,
                                   device_id=recipe.target.device_id,
                                   with_tensor_stats=recipe.analysis.layer_tensor_stats)
    layers.to_csv(run_dir / "layers.csv", index=False)
    # NaN where a layer had no dump to read: eq(True) leaves it unflagged
    flagged = layers[layers["cos_norm_disagree"].eq(True)] if "cos_norm_disagree" in layers else layers.iloc[:0]
    summary = {"count": len(layers), "images": len(images),
            "cos_norm_disagree": flagged.to_dict(orient="records"),
            "tensor_stats": "cos_norm_disagree" in layers,
            "worst_single_cos": float(layers["single_cos_worst"].min()),
            "worst_entire_cos": float(layers["entire_cos_worst"].min()),
            "worst_single_sim_cos": float(layers["single_sim_cos_worst"].min()) if on_board else None,
            "worst10": layers.nsmallest(10, "single_cos_worst").to_dict(orient="records")}
    return summary, layers


def stage_attribution(recipe: Recipe, chain: list[tuple[str, list[dict]]]) -> dict[str, Any]:
    """Agreement of each neighbouring stage of `chain` (label, outputs per input), e.g.
    native framework -> ONNX float32 -> RKNN float16 -> RKNN quantized.

    The stage that loses the most cosine (worst output) is where the drift starts; outputs too small
    to compare rank nothing (their cosines are noise), and with none left no stage is named.
    """
    stages: list[dict[str, Any]] = []
    for (before, a), (after, b) in zip(chain, chain[1:]):
        outputs = summarise_outputs(agreement_per_input(recipe.outputs, a, b))
        losses = [1 - o["cosine"]["mean"] for o in outputs.values() if not o["too_small"]]
        stages.append({"from": before, "to": after, "outputs": outputs, "cosine_loss": max(losses, default=None)})
    ranked = [st for st in stages if st["cosine_loss"] is not None]
    worst = max(ranked, key=lambda st: float(st["cosine_loss"]))["to"] if ranked else None
    return {"stages": stages, "drift_starts_at": worst}
