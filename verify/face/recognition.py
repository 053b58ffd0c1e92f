"""Face verification, float vs quantized: faces found once, embeddings cached, protocol, flips.

The float recognizer sees faces aligned by the float detector; the quantized recognizer sees
the same faces, or (full_pipeline) faces aligned by the quantized detector, as on a device.
Detections are cached per (detector artifact, image content) in models/cache/ and shared by
every recipe that aligns with that detector; embeddings per (recognizer artifact, alignment,
image content). What is missing is computed by worker processes (verify/face/face_pass.py).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from convert.progress import step
from core.artifacts import atomic_dir, sha256_bytes, sha256_file
from core.compare import cosine
from core.errors import RkverifyError
from core.pixels import PreparedImage, prepare_array, read_bgr, resolve_images
from core.recipe import PROJECT_ROOT, LoadedRecipe, Recipe, Verification
from core.runner import Runner
from verify.engines import memory
from verify.engines.cache import VectorCache
from verify.engines.runners import RunnerSpec
from verify.engines.workers import map_units, shards
from verify.face.box_crop import box_crop_settings
from verify.face.face_pass import FaceSettings, PassJob, PassResult, run_job
from verify.face.faces import face_crop
from verify.face.lfw import PairSet, build_pairs, has_images, read_pairs
from verify.face.verification_metrics import accuracy_at, best_threshold, squared_distance, verification_report

SUBFOLDS = 10  # a single evaluated fold is split this way so a threshold is never tuned on its own test pairs
SOURCES = "sources.json"  # beside aligned calibration faces: the photo each face came from
WORKER_PEAKS = "worker-peak-gb.json"  # in the cache folder: measured peak memory of a face-pass worker per model

PAIRS_CSV = "pairs.csv"  # one row per evaluated pair, a distance column per model (the report plots it)
# full_pipeline's stage split: each model quantized alone, as (recognizer model, faces of the detector side)
STAGES = {"detector_only": ("float", "quantized"), "recognizer_only": ("quantized", "float")}


@dataclass(frozen=True)
class Model:
    """A model the face pass may run: `key` names what its outputs depend on (for caches),
    `spec` lets a worker process make it, `live` is an active runner of this process, if any."""

    key: str
    spec: RunnerSpec | None  # None: runs only in this process (e.g. a hybrid variant under analysis)
    live: Runner | None = None


RowMaker = Callable[[np.ndarray, str], np.ndarray]  # (photo BGR, side) -> (N, 15) rows (verify.face.faces)


@dataclass(frozen=True)
class Detector:
    """What finds and aligns faces, float and quantized (verify.finders makes it from a name):
    a detector recipe whose models the face pass runs in any worker, or a maker of rows that runs
    only in this process (`rows_here`: MTCNN's cascade, whose rows are made before the shards)."""

    recipe: Recipe | None  # None: rows only from `rows_here`, the models' keys are all its rows depend on
    float: Model
    quantized: Model | None  # built only when the quantized run aligns with it (full_pipeline)
    rows_here: RowMaker | None = None

    def side(self, name: str) -> Model:
        model = self.float if name == "float" else self.quantized
        assert model is not None, f"the {name} detector was not built"
        return model

    def rows_key(self, name: str) -> str:
        """What the cached detections of one side depend on: the model and how it is decoded."""
        recipe = self.recipe
        if recipe is None:
            return self.side(name).key
        return sha256_bytes(json.dumps([self.side(name).key, recipe.model_input.model_dump(mode="json"),
                                        recipe.preprocess.model_dump(mode="json"),
                                        recipe.evaluate.detection.model_dump(mode="json")]).encode())


def detect_here(detector: Detector, side: str, images: list[tuple[Path, str]], cache: VectorCache) -> float:
    """Rows of an in-process detector (`rows_here`) for the images missing in `cache`, saved;
    returns the seconds it took. A detector the workers run is left to them (no-op)."""
    missing = set(cache.missing([sha for _, sha in images]))
    if detector.rows_here is None or not missing:
        return 0.0
    started = time.perf_counter()
    with step(f"faces: detector ({side}) on {len(missing)} images in this process"):
        for path, sha in images:
            if sha in missing:
                cache.put(sha, detector.rows_here(read_bgr(path), side))
                missing.discard(sha)
    cache.save()
    return time.perf_counter() - started


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
        return pair_subset(pair_set.first_folds(cfg.max_folds), cfg.max_pairs or len(pair_set.pairs)), dataset.name, root
    raise RkverifyError(where, "evaluate.verification.dataset.root", "no images in the dataset (or fallback) folder",
                        "put LFW (<Name>/<Name>_0001.jpg) there, or pass --set evaluate.verification.dataset.root=DIR")


def pair_subset(pair_set: PairSet, count: int, seed: int = 0) -> PairSet:
    """A fixed, seeded subset of `count` pairs (all of them when there are fewer)."""
    if count >= len(pair_set.pairs):
        return pair_set
    keep = sorted(random.Random(seed).sample(range(len(pair_set.pairs)), count))
    return replace(pair_set, pairs=[pair_set.pairs[i] for i in keep])


def protocol_folds(pair_set: PairSet) -> np.ndarray:
    """Fold of each pair for the threshold protocol: View 2's, or interleaved sub-folds of a lone fold."""
    folds = np.array([p.fold for p in pair_set.pairs])
    if len(np.unique(folds)) == 1:
        return np.arange(len(folds)) % SUBFOLDS
    return folds


def face_settings(cfg: Verification) -> FaceSettings:
    return FaceSettings(cfg.face_choice, cfg.center_crop_fraction, cfg.flip, cfg.template_fit, box_crop_settings(cfg))


class FacePass:
    """Detections and embeddings of a set of images for one recipe's models, from the caches or
    computed by `workers` processes (in this process, with the live runners, for one worker), or by
    `workers` Ray tasks when `ray_address` is given."""

    def __init__(self, loaded: LoadedRecipe, recognizers: dict[str, Model], detector: Detector | None,
                 cache_dir: Path, log_file: Path, workers: int, ray_address: str | None = None,
                 stages: bool = False) -> None:
        self.loaded, self.recognizers, self.cache_dir = loaded, recognizers, cache_dir
        self.log_file, self.workers, self.ray_address = log_file, workers, ray_address
        cfg = loaded.recipe.evaluate.verification
        assert cfg is not None
        self.cfg, self.settings = cfg, face_settings(cfg)
        self.detector = detector if cfg.faces == "align" else None
        quantized_side = "quantized" if cfg.full_pipeline else "float"
        self.align_with = {name: "float" if name == "float" else quantized_side for name in recognizers}
        self.model_of = {name: name for name in recognizers}  # embedding set -> the recognizer that makes it
        if stages and cfg.full_pipeline and self.detector:  # the stage split: each model quantized alone
            self.align_with |= {stage: side for stage, (_, side) in STAGES.items()}
            self.model_of |= {stage: model for stage, (model, _) in STAGES.items()}
        sides = sorted(set(self.align_with.values())) if self.detector else []
        self.rows = {s: VectorCache(cache_dir / f"detections-{self.detector.rows_key(s)[:16]}.npz")
                     for s in sides if self.detector}
        self.embeddings = {name: VectorCache(cache_dir / f"embeddings-{self.embedding_key(name)[:16]}.npz")
                           for name in self.model_of}

    def embedding_key(self, name: str) -> str:
        recipe = self.loaded.recipe
        side = self.align_with[name]
        faces = self.detector.rows_key(side) if self.detector else "centre crop"
        return sha256_bytes(json.dumps([self.recognizers[self.model_of[name]].key, recipe.model_input.model_dump(mode="json"),
                                        recipe.preprocess.model_dump(mode="json"), recipe.embedding_output, faces,
                                        self.settings.choice, self.settings.crop_fraction,
                                        self.settings.flip, self.settings.fit]
                                       + ([asdict(self.settings.box)] if self.settings.box else [])).encode())

    def run(self, images: list[tuple[Path, str]]) -> dict[str, Any]:
        """Fill the caches for `images` ((path, sha256)); return what was computed and how fast."""
        hashes = [sha for _, sha in images]
        here = {f"detector:{side}": detect_here(self.detector, side, images, cache)
                for side, cache in self.rows.items()} if self.detector else {}
        embed = {name: set(cache.missing(hashes)) for name, cache in self.embeddings.items()}
        need_rows = {sha for cache in self.rows.values() for sha in cache.missing(hashes)}
        todo = [(p, sha) for p, sha in images if sha in need_rows or any(sha in e for e in embed.values())]
        started = time.perf_counter()
        in_process_only = any(m.spec is None for m in self.recognizers.values())
        # a worker builds the quantized model itself: as many as the memory holds (verify.engines.memory), at
        # the recipe's declared peak, else a worker's measured one, else this process's (it built the model)
        peaks_file, model_key = self.cache_dir / WORKER_PEAKS, self.recognizers["quantized"].key
        peak_gb = (self.loaded.recipe.target.peak_memory_gb or memory.recorded_peak_gb(peaks_file, model_key)
                   or memory.peak_rss_gb())
        workers = 1 if in_process_only else memory.workers_that_fit(max(1, min(self.workers, len(todo))), peak_gb)
        on_ray = self.ray_address is not None and not in_process_only
        if todo:
            job = PassJob(images=todo, recognizer=self.loaded.recipe,
                          detector=self.detector.recipe if self.detector else None, settings=self.settings,
                          detectors={s: self.detector.side(s).spec for s in self.rows} if self.detector else {},
                          recognizers={m: self.recognizers[m].spec for n, m in self.model_of.items() if embed[n]},
                          align_with=self.align_with, model_of=self.model_of,
                          rows={s: {sha: c.entries[sha] for sha in hashes if sha in c.entries}
                                for s, c in self.rows.items()},
                          embed=embed, log_file=self.log_file)
            where = f"{workers} Ray task(s)" if on_ray else f"{workers} worker(s)"
            with step(f"faces: {len(todo)} of {len(images)} images to compute on {where}"):
                if workers == 1 and not on_ray:
                    results = [run_job(job, self.live_runners())]
                else:
                    jobs = [replace(job, images=shard,
                                    log_file=self.log_file.with_name(f"{self.log_file.stem}-worker{i}.log"))
                            for i, shard in enumerate(shards(todo, workers))]
                    results = map_units(run_job, jobs, workers, self.ray_address if on_ray else None, peak_gb)
                    if not on_ray:
                        memory.record_peak_gb(peaks_file, model_key, [r.peak_rss_gb for r in results])
            self.merge(results)
        else:
            results = []
        engine = {name: seconds for name, seconds in here.items() if seconds}
        for result in results:
            for name, seconds in result.engine_seconds.items():
                engine[name] = engine.get(name, 0.0) + seconds
        return {"workers": workers, "ray": on_ray, "images": len(images), "computed_images": len(todo),
                "wall_seconds": round(time.perf_counter() - started, 3), "engine_seconds": engine,
                "peak_gb_per_worker_assumed": round(peak_gb, 2),
                "worker_peak_rss_gb": [r.peak_rss_gb for r in results]}

    def with_quantized(self, model: Model) -> FacePass:
        """The same pass with another quantized model (a variant), sharing the float side's caches."""
        return FacePass(self.loaded, {"float": self.recognizers["float"], "quantized": model}, self.detector,
                        self.cache_dir, self.log_file, self.workers, self.ray_address)

    def live_runners(self) -> dict[str, Runner]:
        models = {f"recognizer:{n}": m for n, m in self.recognizers.items()}
        if self.detector:
            models |= {f"detector:{s}": self.detector.side(s) for s in self.rows}
        return {key: m.live for key, m in models.items() if m.live is not None}

    def merge(self, results: list[PassResult]) -> None:
        for result in results:
            for side, rows in result.rows.items():
                for sha, value in rows.items():
                    self.rows[side].put(sha, value)
            for name, vectors in result.embeddings.items():
                for sha, value in vectors.items():
                    self.embeddings[name].put(sha, value)
        for cache in [*self.rows.values(), *self.embeddings.values()]:
            cache.save()

    def crop(self, path: Path, sha: str, side: str = "float") -> np.ndarray:
        """The face the recognizer on `side` was fed (from cached detections)."""
        rows = self.rows[side].get(sha) if side in self.rows else None
        crop, _ = face_crop(read_bgr(path), rows, self.settings.choice, self.loaded.recipe.model_input.height_width,
                            self.settings.crop_fraction, self.settings.fit, self.settings.box)
        return crop

    def missed(self, hashes: list[str], side: str) -> int:
        """Images in which the detector of `side` found no face (centre-cropped instead)."""
        if side not in self.rows:
            return 0
        return sum(len(self.rows[side].entries[sha]) == 0 for sha in hashes)


def save_thumbnail(crop: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), crop)


def image_hashes(paths: list[Path]) -> dict[Path, str]:
    return {p: sha256_file(p) for p in paths}


def verification_metrics(loaded: LoadedRecipe, face_pass: FacePass, run_dir: Path, pair_set: PairSet | None = None,
                         faces_for_drift: int = 0, calibration: dict[str, Any] | None = None
                         ) -> tuple[dict[str, Any], list[PreparedImage]]:
    """Figures for the report and gates (every recognizer of `face_pass` against "float"), and
    `faces_for_drift` float-aligned faces for per-output drift. `pair_set`: a subset to measure on;
    `calibration` (the manifest): check its photos are not among the evaluated ones."""
    recipe = loaded.recipe
    cfg = recipe.evaluate.verification
    assert cfg is not None
    started = time.perf_counter()
    full_set, dataset_name, root = choose_pairs(cfg, loaded.path)
    pairs = pair_set or full_set
    paths = sorted({p.first for p in pairs.pairs} | {p.second for p in pairs.pairs})
    sha = image_hashes(paths)
    speed = face_pass.run([(p, sha[p]) for p in paths])

    embeddings = {name: {p: cache.entries[sha[p]] for p in paths} for name, cache in face_pass.embeddings.items()}
    same = np.array([p.same for p in pairs.pairs])
    folds = protocol_folds(pairs)

    def distances(name: str) -> np.ndarray:
        emb = embeddings[name]
        return squared_distance(np.stack([emb[p.first][1] for p in pairs.pairs]),
                                np.stack([emb[p.second][1] for p in pairs.pairs]))

    dist = {name: distances(name) for name in embeddings}
    results = {name: verification_report(dist[name], same, folds, cfg.far) for name in ("float", "quantized")}
    threshold = best_threshold(dist["float"], same)  # what a device ships with: tuned on float
    hashes = [sha[p] for p in paths]
    metrics: dict[str, Any] = {
        "dataset": dataset_name,
        "is_lfw": dataset_name.lower() == "lfw",
        "root": str(root),
        "pairs_source": pairs.source,
        "folds_total": pairs.folds_total,
        "folds_used": pairs.folds_used,
        "folds_incomplete": pairs.folds_incomplete,
        "folds_skipped": pairs.folds_skipped,
        "threshold_folds": "View 2 folds" if len(np.unique([p.fold for p in pairs.pairs])) > 1
        else f"{SUBFOLDS} interleaved sub-folds of the one evaluated fold",
        "subset": pair_set is not None,
        "max_pairs": cfg.max_pairs,
        "pairs": len(pairs.pairs),
        "images": len(paths),
        "faces": cfg.faces,
        "align": cfg.align if cfg.faces == "align" else None,
        "box_crop": asdict(face_pass.settings.box) if face_pass.settings.box else None,
        "face_choice": cfg.face_choice,
        "full_pipeline": cfg.full_pipeline,
        "no_face_found": {"float": face_pass.missed(hashes, "float"),
                          "quantized": face_pass.missed(hashes, face_pass.align_with["quantized"])},
        "flip": cfg.flip,
        **results,
        "accuracy_drop": results["float"]["accuracy"]["mean"] - results["quantized"]["accuracy"]["mean"],
        "float_threshold": threshold,
        "float_accuracy_at_float_threshold": accuracy_at(threshold, dist["float"], same),
        "quantized_accuracy_at_float_threshold": accuracy_at(threshold, dist["quantized"], same),
        "embedding_drift": embedding_drift(embeddings, paths, pairs),
        "pass": speed,
    }
    if set(STAGES) <= set(dist):
        metrics["stage_split"] = stage_split(embeddings, paths, pairs, dist, same, folds, cfg.far, threshold)
    flipped = np.flatnonzero((dist["float"] < threshold) != (dist["quantized"] < threshold))
    metrics["flipped_pairs"] = flipped_pairs(pairs, flipped, dist, face_pass, sha, root, run_dir)
    if pair_set is None:
        write_pairs_csv(run_dir / PAIRS_CSV, pairs, dist, root)
    if calibration is not None:
        metrics["calibration_leakage"] = leakage(calibration, sha)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    faces = [prepare_array(face_pass.crop(p, sha[p]), recipe.model_input, recipe.preprocess, p)
             for p in paths[:faces_for_drift]]
    return metrics, faces


def stage_split(embeddings: dict[str, dict[Path, np.ndarray]], paths: list[Path], pairs: PairSet,
                dist: dict[str, np.ndarray], same: np.ndarray, folds: np.ndarray, far: float, threshold: float
                ) -> dict[str, dict[str, Any]]:
    """Which model of the pipeline costs the accuracy: the detector quantized alone (float recognizer on
    the quantized detector's faces), the recognizer alone (quantized recognizer on the float detector's
    faces) and both, each against the float pipeline: accuracy, VAL@FAR, embedding cosine, flips."""
    split = {}
    for stage in (*STAGES, "quantized"):
        report = verification_report(dist[stage], same, folds, far)
        drift = embedding_drift({"float": embeddings["float"], "quantized": embeddings[stage]}, paths, pairs)
        split["both" if stage == "quantized" else stage] = {
            "accuracy": report["accuracy"], "val_at_far": report["val_at_far"],
            "accuracy_drop": verification_report(dist["float"], same, folds, far)["accuracy"]["mean"]
            - report["accuracy"]["mean"],
            "cosine_mean": drift["cosine_mean"], "cosine_p1": drift["cosine_p1"],
            "flips": int(np.sum((dist["float"] < threshold) != (dist[stage] < threshold)))}
    return split


def embedding_drift(embeddings: dict[str, dict[Path, np.ndarray]], paths: list[Path], pairs: PairSet) -> dict[str, float]:
    raw_float = {p: embeddings["float"][p][0] for p in paths}
    raw_quant = {p: embeddings["quantized"][p][0] for p in paths}
    cosines = np.array([cosine(raw_float[p], raw_quant[p]) for p in paths])
    norm_ratio = np.array([np.linalg.norm(raw_quant[p]) / (np.linalg.norm(raw_float[p]) + 1e-12) for p in paths])
    different = [(p.first, p.second) for p in pairs.pairs if not p.same]
    return {"cosine_mean": float(cosines.mean()), "cosine_p1": float(np.percentile(cosines, 1)),
            "cosine_worst": float(cosines.min()), "norm_ratio_mean": float(norm_ratio.mean()),
            "cosine_between_different_faces": float(np.mean([cosine(raw_float[a], raw_float[b])
                                                             for a, b in different]))}


def flipped_pairs(pairs: PairSet, flipped: np.ndarray, dist: dict[str, np.ndarray], face_pass: FacePass,
                  sha: dict[Path, str], root: Path, run_dir: Path) -> list[dict[str, Any]]:
    """The pairs whose decision flips at the float threshold, with thumbnails of their faces."""
    rows = []
    for i in flipped:
        pair = pairs.pairs[i]
        names = [f"flipped/{i}_a.jpg", f"flipped/{i}_b.jpg"]
        save_thumbnail(face_pass.crop(pair.first, sha[pair.first]), run_dir / names[0])
        save_thumbnail(face_pass.crop(pair.second, sha[pair.second]), run_dir / names[1])
        rows.append({"first": str(pair.first.relative_to(root)), "second": str(pair.second.relative_to(root)),
                     "same": bool(pair.same), "float_distance": float(dist["float"][i]),
                     "quantized_distance": float(dist["quantized"][i]), "thumbnails": names})
    return rows


def write_pairs_csv(out: Path, pairs: PairSet, dist: dict[str, np.ndarray], root: Path) -> None:
    table = pd.DataFrame({"fold": [p.fold + 1 for p in pairs.pairs], "same": [p.same for p in pairs.pairs],
                          "first": [str(p.first.relative_to(root)) for p in pairs.pairs],
                          "second": [str(p.second.relative_to(root)) for p in pairs.pairs]})
    for name, values in dist.items():
        table[f"distance_{name}"] = values
    table.to_csv(out, index=False)


def calibration_sources(calibration: dict[str, Any]) -> dict[str, str]:
    """sha256 -> path of the photos the calibration set was made from (aligned faces map back to
    their photo through the folder's sources.json)."""
    sources: dict[str, str] = {}
    for entry in calibration["images"]:
        image = Path(entry["image"])
        mapping = image.parent / SOURCES
        if mapping.is_file():
            origin = json.loads(mapping.read_text())[image.name]
            sources[origin["sha256"]] = origin["image"]
        else:
            sources[entry["sha256"]] = str(image)
    return sources


def leakage(calibration: dict[str, Any], evaluated: dict[Path, str]) -> dict[str, Any]:
    """Calibration photos that are also evaluated (`evaluated`: path -> sha256), by content: must be none."""
    sources = calibration_sources(calibration)
    overlap = sorted(sources[h] for h in set(sources) & set(evaluated.values()))
    return {"calibration_images": len(sources), "evaluated_images": len(evaluated), "overlap": len(overlap),
            "overlapping": overlap[:20]}


def aligned_calibration(loaded: LoadedRecipe, detector: Detector, calib_root: Path, cache_dir: Path) -> Path:
    """Align the faces of the recipe's calibration photos (float detector, largest face) into
    calib_data/<name>-faces/, with sources.json naming the photo of each face.

    A recognizer meets aligned faces on the device; calibrating it on whole photos would
    set its int8 ranges on data it never sees.
    """
    recipe = loaded.recipe
    calib = recipe.quantization.calibration
    faces = recipe.evaluate.verification
    crop_fraction = faces.center_crop_fraction if faces else Verification.model_fields["center_crop_fraction"].default
    fit = faces.template_fit if faces else Verification.model_fields["template_fit"].default
    box = box_crop_settings(faces) if faces else None  # calibrated on faces cut as the evaluated ones
    photos = resolve_images(calib.images, loaded.path, "quantization.calibration.images")[: calib.size]
    rows = VectorCache(cache_dir / f"detections-{detector.rows_key('float')[:16]}.npz")
    sha = image_hashes(photos)
    detect_here(detector, "float", [(p, sha[p]) for p in photos], rows)
    job = PassJob(images=[(p, sha[p]) for p in photos], recognizer=recipe, detector=detector.recipe,
                  settings=FaceSettings("largest", crop_fraction, False, fit, box), detectors={"float": detector.float.spec},
                  recognizers={}, align_with={}, rows={"float": rows.entries}, embed={},
                  log_file=cache_dir / "calibration-faces.log")
    live = {"detector:float": detector.float.live} if detector.float.live else None
    for found_sha, value in run_job(job, live).rows["float"].items():
        rows.put(found_sha, value)
    rows.save()
    final = calib_root / f"{calib.name}-faces"
    with atomic_dir(final) as tmp:
        sources = {}
        for index, path in enumerate(photos):
            crop, _ = face_crop(read_bgr(path), rows.get(sha[path]), "largest", recipe.model_input.height_width,
                                crop_fraction, fit, box)
            name = f"{index:04d}_{path.stem}.png"
            cv2.imwrite(str(tmp / name), crop)
            sources[name] = {"image": str(path), "sha256": sha[path]}
        (tmp / SOURCES).write_text(json.dumps(sources, indent=1) + "\n")
    return final
