"""Face verification, float vs quantized: faces prepared, embeddings (cached), protocol, flips.

The float recognizer sees faces aligned by the float detector; the quantized recognizer sees
the same faces, or (full_pipeline) faces aligned by the quantized detector, as on a device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from convert.artifacts import atomic_dir, sha256_bytes, sha256_file
from convert.errors import RkverifyError
from convert.preprocess import PreparedImage, prepare, prepare_array, read_bgr, resolve_images
from convert.recipe import PROJECT_ROOT, LoadedRecipe, Recipe, Verification
from verify import detection
from verify.align import align, center_crop, main_face
from verify.cache import VectorCache
from verify.compare import cosine
from verify.lfw import PairSet, build_pairs, has_images, read_pairs
from verify.runners import Runner
from verify.verification_metrics import accuracy_at, best_threshold, squared_distance, verification_report


@dataclass
class Detector:
    """A detector recipe with a running runner, used to align faces; `key` names its outputs' cache."""

    recipe: Recipe
    runner: Runner
    key: str


def choose_pairs(cfg: Verification, where: Path) -> tuple[PairSet, str, Path]:
    """The dataset's pairs, or the fallback's when the dataset folder holds no images."""
    for dataset in (cfg.dataset, cfg.fallback):
        if dataset is None:
            continue
        root = (PROJECT_ROOT / dataset.root).resolve()
        if not has_images(root):
            continue
        if dataset.pairs:
            pairs_file = (PROJECT_ROOT / dataset.pairs).resolve()
            pair_set = read_pairs(root, pairs_file)
        else:
            pair_set = build_pairs(root, cfg.folds)
        if not pair_set.pairs:
            raise RkverifyError(where, "evaluate.verification.dataset", f"no complete fold in {root}",
                                "give the folder every image its pairs file names")
        return pair_set.first_folds(cfg.max_folds), dataset.name, root
    raise RkverifyError(where, "evaluate.verification.dataset.root", "no images in the dataset (or fallback) folder",
                        "put LFW (<Name>/<Name>_0001.jpg) there, or pass --set evaluate.verification.dataset.root=DIR")


def landmarks_of(path: Path, detector: Detector, cache: VectorCache) -> np.ndarray | None:
    key = sha256_file(path)
    cached = cache.get(key)
    if cached is None:
        found = main_face_landmarks(path, detector)
        cached = found if found is not None else np.zeros((0, 2))
        cache.put(key, cached)
    return cached if len(cached) else None


def main_face_landmarks(path: Path, detector: Detector) -> np.ndarray | None:
    """The 5 landmarks of the largest face the detector finds in `path`, None when it finds none."""
    det = detector.recipe
    image = prepare(path, det.model_input, det.preprocess)
    faces = detection.decode(detector.runner.infer(image.pixels), det.outputs, det.evaluate.detection,
                             det.model_input.height_width, image.scale)
    index = main_face(faces)
    return faces.landmarks[index] if index is not None else None


def face_crops(paths: list[Path], crop_fraction: float, size: tuple[int, int], detector: Detector | None,
               cache_dir: Path, fit: str = "shorter_side") -> tuple[dict[Path, np.ndarray], int]:
    """Aligned (or centre-cropped) BGR face per image; images without a detected face are centre-cropped."""
    crops, missed = {}, 0
    cache = VectorCache(cache_dir / f"landmarks-{detector.key[:16]}.npz") if detector else None
    label = f"align ({detector.runner.name})" if detector else "centre crop"
    for path in tqdm(paths, desc=label, unit="img", leave=False):
        bgr = read_bgr(path)
        points = landmarks_of(path, detector, cache) if detector and cache else None
        if points is None:
            missed += detector is not None
            crops[path] = center_crop(bgr, crop_fraction, size)
        else:
            crops[path] = align(bgr, points, size, fit)
    if cache:
        cache.save()
    return crops, missed


def embed_all(runner: Runner, recipe: Recipe, crops: dict[Path, np.ndarray], flip: bool,
              cache: VectorCache) -> tuple[dict[Path, np.ndarray], dict[Path, np.ndarray], float]:
    """(final embeddings, raw embeddings, images/s over computed ones); cached by crop content."""
    final, raw, computed, seconds = {}, {}, 0, 0.0
    axis = 3 if recipe.model_input.layout == "NCHW" else 2
    output = recipe.outputs[0]
    for path, crop in tqdm(crops.items(), desc=f"embed ({runner.name})", unit="img", leave=False):
        pixels = prepare_array(crop, recipe.model_input, recipe.preprocess, path).pixels
        key = sha256_bytes(pixels.tobytes() + bytes([flip]))
        stored = cache.get(key)
        if stored is None:
            start = time.perf_counter()
            vector = runner.infer(pixels)[output].reshape(-1)
            both = vector + runner.infer(np.ascontiguousarray(np.flip(pixels, axis)))[output].reshape(-1) if flip else vector
            seconds += time.perf_counter() - start
            computed += 1
            stored = np.stack([vector, both])
            cache.put(key, stored)
        raw[path], final[path] = stored[0], stored[1]
    cache.save()
    return final, raw, (computed / seconds if seconds else float("nan"))


SUBFOLDS = 10  # a single evaluated fold is split this way so a threshold is never tuned on its own test pairs


def protocol_folds(pair_set: PairSet) -> np.ndarray:
    """Fold of each pair for the threshold protocol: View 2's, or interleaved sub-folds of a lone fold."""
    folds = np.array([p.fold for p in pair_set.pairs])
    if len(np.unique(folds)) == 1:
        return np.arange(len(folds)) % SUBFOLDS
    return folds


def save_thumbnail(crop: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), crop)


def verification_metrics(loaded: LoadedRecipe, float_runner: Runner, quant_runner: Runner,
                         float_detector: Detector | None, quant_detector: Detector | None,
                         float_key: str, quant_key: str, cache_dir: Path, run_dir: Path
                         ) -> tuple[dict[str, Any], list[PreparedImage]]:
    """Figures for the report and gates, and the float-aligned faces for per-output drift."""
    recipe = loaded.recipe
    cfg = recipe.evaluate.verification
    assert cfg is not None
    pair_set, dataset_name, root = choose_pairs(cfg, loaded.path)
    paths = sorted({p.first for p in pair_set.pairs} | {p.second for p in pair_set.pairs})
    size = recipe.model_input.height_width
    started = time.perf_counter()

    float_crops, float_missed = face_crops(paths, cfg.center_crop_fraction, size, float_detector, cache_dir,
                                           cfg.template_fit)
    if cfg.full_pipeline and quant_detector is not None:
        quant_crops, quant_missed = face_crops(paths, cfg.center_crop_fraction, size, quant_detector, cache_dir,
                                               cfg.template_fit)
    else:
        quant_crops, quant_missed = float_crops, float_missed
    float_emb, float_raw, float_ips = embed_all(float_runner, recipe, float_crops, cfg.flip,
                                                VectorCache(cache_dir / f"embeddings-float-{float_key[:16]}.npz"))
    quant_emb, quant_raw, quant_ips = embed_all(quant_runner, recipe, quant_crops, cfg.flip,
                                                VectorCache(cache_dir / f"embeddings-quant-{quant_key[:16]}.npz"))

    same = np.array([p.same for p in pair_set.pairs])
    folds = protocol_folds(pair_set)

    def distances(emb: dict[Path, np.ndarray]) -> np.ndarray:
        return squared_distance(np.stack([emb[p.first] for p in pair_set.pairs]),
                                np.stack([emb[p.second] for p in pair_set.pairs]))

    float_dist, quant_dist = distances(float_emb), distances(quant_emb)
    float_result = verification_report(float_dist, same, folds, cfg.far)
    quant_result = verification_report(quant_dist, same, folds, cfg.far)
    threshold = best_threshold(float_dist, same)  # what a device ships with: tuned on float
    flipped = np.flatnonzero((float_dist < threshold) != (quant_dist < threshold))
    flipped_rows = []
    for i in flipped:
        pair = pair_set.pairs[i]
        names = [f"flipped/{i}_a.jpg", f"flipped/{i}_b.jpg"]
        save_thumbnail(float_crops[pair.first], run_dir / names[0])
        save_thumbnail(float_crops[pair.second], run_dir / names[1])
        flipped_rows.append({"first": str(pair.first.relative_to(root)), "second": str(pair.second.relative_to(root)),
                             "same": bool(pair.same), "float_distance": float(float_dist[i]),
                             "quantized_distance": float(quant_dist[i]), "thumbnails": names})

    cosines = np.array([cosine(float_raw[p], quant_raw[p]) for p in paths])
    norm_ratio = np.array([np.linalg.norm(quant_raw[p]) / (np.linalg.norm(float_raw[p]) + 1e-12) for p in paths])
    different = [(p.first, p.second) for p in pair_set.pairs if not p.same]
    between_people = float(np.mean([cosine(float_raw[a], float_raw[b]) for a, b in different]))
    metrics = {
        "dataset": dataset_name,
        "is_lfw": dataset_name.lower() == "lfw",
        "root": str(root),
        "pairs_source": pair_set.source,
        "folds_total": pair_set.folds_total,
        "folds_used": pair_set.folds_used,
        "images": len(paths),
        "faces": cfg.faces,
        "full_pipeline": cfg.full_pipeline,
        "no_face_found": {"float": float_missed, "quantized": quant_missed},
        "flip": cfg.flip,
        "float": float_result,
        "quantized": quant_result,
        "accuracy_drop": float_result["accuracy"]["mean"] - quant_result["accuracy"]["mean"],
        "float_threshold": threshold,
        "float_accuracy_at_float_threshold": accuracy_at(threshold, float_dist, same),
        "quantized_accuracy_at_float_threshold": accuracy_at(threshold, quant_dist, same),
        "flipped_pairs": flipped_rows,
        "embedding_drift": {"cosine_mean": float(cosines.mean()), "cosine_p1": float(np.percentile(cosines, 1)),
                            "cosine_worst": float(cosines.min()), "norm_ratio_mean": float(norm_ratio.mean()),
                            "cosine_between_different_faces": between_people},
        "images_per_second": {"float": float_ips, "simulator": quant_ips},
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    faces = [prepare_array(float_crops[p], recipe.model_input, recipe.preprocess, p) for p in paths]
    return metrics, faces


def aligned_calibration(loaded: LoadedRecipe, detector: Detector, calib_root: Path, cache_dir: Path) -> Path:
    """Align the faces of the recipe's calibration photos (float detector) into calib_data/<name>-faces/.

    A recognizer meets aligned faces on the device; calibrating it on whole photos would
    set its int8 ranges on data it never sees.
    """
    recipe = loaded.recipe
    calib = recipe.quantization.calibration
    faces = recipe.evaluate.verification or Verification.model_construct()  # defaults without a dataset
    photos = resolve_images(calib.images, loaded.path, "quantization.calibration.images")[: calib.size]
    crops, _ = face_crops(photos, faces.center_crop_fraction, recipe.model_input.height_width, detector, cache_dir,
                          faces.template_fit)
    final = calib_root / f"{calib.name}-faces"
    with atomic_dir(final) as tmp:
        for index, (path, crop) in enumerate(crops.items()):
            cv2.imwrite(str(tmp / f"{index:04d}_{path.stem}.png"), crop)
    return final
