"""The identification step of a recognition run: the protocol's images from the face pass (the
evaluated pairs' images are embedded already; only distractors may be new), the three galleries
compared through the recipe's index, the gallery-size curve, and the flipped probes' faces."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import utc_now
from core.recipe import Identification
from verify.engines.cache import VectorCache
from verify.engines.run_models import hybrid_model
from verify.face.identification.enrolled import ENROLLED, GALLERY_FILE, SavedGallery, aligned, load_gallery, save_gallery
from verify.face.identification.galleries import (
    REFERENCE,
    Embedded,
    Search,
    changed,
    compare,
    gallery_size_curve,
    setting_name,
)
from verify.face.identification.index import IndexSettings
from verify.face.identification.protocol import DESCRIPTION, Split, build_split, choose_distractors, person
from verify.face.recognition import FacePass, calibration_sources, choose_pairs, image_hashes, leakage, save_thumbnail
from verify.face.verification_metrics import l2_normalise
from verify.run_state import RunState

# (gallery model, probe model): the model's own figure, a device that enrols itself, a server-enrolled
# (float) database searched by the device
SETTINGS = [("float", "float"), ("quantized", "quantized"), ("float", "quantized")]
THUMBS = "flipped"  # the report shows every .jpg there (verify/report.py)


def calibration_people(calibration: dict[str, Any], root: Path) -> set[str]:
    """People of the dataset whose photos calibrated the model (never enrolled nor searched for)."""
    return {person(Path(p)) for p in calibration_sources(calibration).values()
            if Path(p).resolve().is_relative_to(root)} if calibration else set()


def index_settings(cfg: Identification) -> IndexSettings:
    return IndexSettings(cfg.index, nprobe=cfg.nprobe, ef_search=cfg.ef_search, ef_construction=cfg.ef_construction,
                         codes=cfg.codes)


def embedded(split: Split, distractors: list[Path], caches: dict[str, VectorCache], sha: dict[Path, str]
             ) -> tuple[Embedded, list[Path]]:
    """The protocol's images as arrays, rows in the order gallery, distractors, known, unknown."""
    paths = [*split.gallery, *distractors, *split.known_probes, *split.unknown_probes]
    names = {name: number for number, name in enumerate(sorted({person(p) for p in paths}))}
    vectors = {model: l2_normalise(np.stack([cache.entries[sha[p]][1] for p in paths]))
               for model, cache in caches.items()}
    enrolled, known = len(split.gallery) + len(distractors), len(split.known_probes)
    data = Embedded(vectors, np.array([names[person(p)] for p in paths]), np.arange(enrolled),
                    np.arange(enrolled, enrolled + known), np.arange(enrolled + known, len(paths)))
    return data, paths


def gallery_provenance(state: RunState, protocol: dict[str, Any]) -> dict[str, Any]:
    """What a saved gallery was enrolled with, for the run that reads it later."""
    metrics, built = state.metrics, state.metrics["provenance"]
    return {"run_id": metrics["run_id"], "recipe": metrics["recipe"], "recipe_sha256": metrics["recipe_sha256"],
            "source_sha256": built.get("source_sha256"), "artifact": built.get("artifact"),
            "artifact_sha256": built.get("artifact_sha256"), "platform": built.get("platform"),
            "dtype": built.get("dtype"), "float_layers": built.get("float_layers", []),
            "rknn_toolkit2": metrics["tools"].get("rknn-toolkit2"), "saved_at": utc_now(),
            "protocol": {k: protocol[k] for k in ("dataset", "seed", "folds_used", "enrolled_people",
                                                  "distractors", "gallery_size")}}


def with_enrolled(data: Embedded, earlier: SavedGallery, keys: list[str]) -> Embedded:
    """`data` plus the earlier run's quantized gallery as the gallery model ENROLLED (gallery rows
    come first, so its rows are the gallery's)."""
    vectors = aligned(earlier, keys, data.vectors["quantized"].shape[1])
    return Embedded(data.vectors | {ENROLLED: vectors}, data.labels, data.gallery, data.known, data.unknown)


def flipped_probes(data: Embedded, paths: list[Path], found: dict[str, Search], threshold: float, face_pass: FacePass,
                   sha: dict[Path, str], root: Path, run_dir: Path, limit: int) -> dict[str, list[dict[str, Any]]]:
    """Per setting, the probes whose answer (identity, or nobody at the float threshold) differs from
    REFERENCE's, with thumbnails of the probe and of each answer's enrolled face (the first `limit`)."""
    probes = np.concatenate([data.known, data.unknown])
    out: dict[str, list[dict[str, Any]]] = {}
    for name, result in found.items():
        if name == REFERENCE:
            continue
        rows = []
        for i in changed(found[REFERENCE], result, threshold)["answer"][:limit]:
            probe = paths[probes[i]]
            slug = name.replace("/", "-")
            row: dict[str, Any] = {"probe": str(probe.relative_to(root)), "enrolled": bool(i < len(data.known)),
                                   "thumbnails": {}}
            save_thumbnail(face_pass.crop(probe, sha[probe]), run_dir / THUMBS / f"id-{slug}-{i}-probe.jpg")
            row["thumbnails"]["probe"] = f"{THUMBS}/id-{slug}-{i}-probe.jpg"
            for side, search in (("float", found[REFERENCE]), ("this", result)):
                score, entry = float(search.scores[i, 0]), paths[data.gallery[search.ids[i, 0]]]
                accepted = score > threshold
                row[f"{side}_answer"] = str(entry.relative_to(root).parent) if accepted else "nobody"
                row[f"{side}_score"] = score
                row[f"{side}_correct"] = (person(entry) == person(probe)) if accepted else not row["enrolled"]
                if accepted:
                    thumb = f"{THUMBS}/id-{slug}-{i}-{side}.jpg"
                    save_thumbnail(face_pass.crop(entry, sha[entry]), run_dir / thumb)
                    row["thumbnails"][side] = thumb
            rows.append(row)
        out[name] = rows
    return out


def identification(state: RunState, caches: dict[str, VectorCache], face_pass: FacePass,
                   pairs: list[tuple[str, str]], thumbnails: bool = True, earlier: SavedGallery | None = None,
                   gallery_file: Path | None = None) -> dict[str, Any]:
    """Every figure of the identification section for `pairs` of the models in `caches`; with
    `earlier`, also its gallery searched by this run's quantized model; `gallery_file`: where this
    run's gallery is saved."""
    recipe = state.recipe
    cfg, verification = recipe.evaluate.identification, recipe.evaluate.verification
    assert verification is not None
    started = time.perf_counter()
    pair_set, dataset_name, root = choose_pairs(verification, state.loaded.path)
    images = sorted({p.first for p in pair_set.pairs} | {p.second for p in pair_set.pairs})
    excluded = calibration_people(state.artifacts.calibration, root)
    split = build_split(images, cfg.seed, frozenset(excluded))
    if not split.gallery or not split.known_probes:
        return {"skipped": f"no person with two or more images among the {len(images)} evaluated ones",
                "protocol": split.counts()}
    distractors = choose_distractors(root, images, excluded, cfg.distractors, cfg.seed)
    used = [*split.gallery, *distractors, *split.known_probes, *split.unknown_probes]
    sha = image_hashes(used)
    speed = face_pass.run([(p, sha[p]) for p in used])  # only distractors can be new
    data, paths = embedded(split, distractors, caches, sha)
    keys = [sha[p] for p in paths[:len(data.gallery)]]
    if earlier is not None:
        data, pairs = with_enrolled(data, earlier, keys), [*pairs, (ENROLLED, "quantized")]
    settings = index_settings(cfg)
    table, found = compare(data, pairs, settings, cfg.fars, cfg.max_rank)
    shipped = table[REFERENCE]["dir_at_far"]
    threshold = shipped[0]["threshold"] if shipped else -np.inf
    result: dict[str, Any] = {
        "protocol": {"description": DESCRIPTION.format(folds="View 2 folds " + ", ".join(
            str(f + 1) for f in pair_set.folds_used)), "dataset": dataset_name, "seed": cfg.seed,
            **split.counts(), "distractors": len(distractors), "distractors_asked": cfg.distractors,
            "gallery_size": len(data.gallery), "folds_used": pair_set.folds_used, "fars": cfg.fars,
            "max_rank": cfg.max_rank},
        "index": {"kind": settings.kind, "nprobe": settings.nprobe, "ef_search": settings.ef_search,
                  "ef_construction": settings.ef_construction, "codes": settings.codes,
                  "metric": "inner product of L2-normalised embeddings (cosine)", "library": "faiss"},
        "settings": table,
        "flipped_probes": flipped_probes(data, paths, found, threshold, face_pass, sha, root, state.run_dir,
                                         cfg.flipped_thumbnails) if thumbnails else {},
        "gallery_size_curve": gallery_size_curve(data, pairs, len(split.gallery), settings, cfg.fars, cfg.max_rank),
        "leakage": leakage(state.artifacts.calibration, {p: sha[p] for p in used})
        if state.artifacts.calibration else None,
        "pass": speed,
    }
    if earlier is not None:
        result["enrolled_with"] = {"file": str(earlier.path), **earlier.provenance}
    if gallery_file is not None:
        save_gallery(gallery_file, keys, {m: data.vectors[m][data.gallery] for m in ("float", "quantized")},
                     gallery_provenance(state, result["protocol"]))
        result["saved_gallery"] = gallery_file.name
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    return result


def enrolled_with(state: RunState) -> SavedGallery | None:
    """The earlier run's saved gallery named by the recipe (refused, one line, when it cannot be read)."""
    value = state.recipe.evaluate.identification.enrolled_with
    return load_gallery(value, state.reports_dir, state.recipe.name) if value else None


def step(state: RunState) -> None:
    face_pass = state.face_pass
    assert face_pass is not None  # the face verification step ran first
    result = identification(state, face_pass.embeddings, face_pass, SETTINGS, earlier=enrolled_with(state),
                            gallery_file=state.run_dir / GALLERY_FILE)
    state.metrics["identification"] = result
    if "skipped" in result:
        return
    table = result["settings"]
    result["rank1_drop"] = table[REFERENCE]["rank1"] - table[setting_name("quantized", "quantized")]["rank1"]
    result["cross_enrolment_drop"] = table[REFERENCE]["rank1"] - table[setting_name("float", "quantized")]["rank1"]


# the proposed fix beside the plain build: its own figure, a float-enrolled database and a database
# enrolled with the plain w8a8 build (last year's .rknn) searched by the fix
BUILD_SETTINGS = [("float", "float"), ("fix", "fix"), ("float", "fix"), ("quantized", "fix")]


def proposed_fix(state: RunState) -> list[str]:
    fix = state.metrics.get("sensitivity", {}).get("fix", {})
    measured = "settings" in state.metrics.get("identification", {})
    return list(fix.get("float_layers", [])) if "whole_set" in fix and measured else []


def builds_step(state: RunState) -> None:
    """Two builds: the plain quantized build and the proposed hybrid fix (embedded on every pair by
    the sensitivity step, so only distractors may be new), searched across each other."""
    face_pass = state.face_pass
    assert face_pass is not None
    layers = proposed_fix(state)
    _, model = hybrid_model(state, layers)
    fix_pass = face_pass.with_quantized(model)
    caches = {"float": face_pass.embeddings["float"], "quantized": face_pass.embeddings["quantized"],
              "fix": fix_pass.embeddings["quantized"]}
    result = identification(state, caches, fix_pass, BUILD_SETTINGS, thumbnails=False)
    assert "settings" in result  # the same split measured the plain build
    state.metrics["identification"].setdefault("builds", {})["fix"] = {
        "title": f"{state.recipe.quantization.dtype} vs the proposed fix ({len(layers)} layer(s) in float16)",
        "note": "quantized/fix: a gallery enrolled with the plain build (an older .rknn) searched by the fix build.",
        "float_layers": layers, "settings": result["settings"], "gallery_size_curve": result["gallery_size_curve"]}
