"""One pass over a dataset's photos: detect, choose the labelled face, align, embed (+ flip).

A `PassJob` is one shard of that work, run in a worker process (or in this one): it builds the
runners it needs from their specs, or uses live ones handed to it, and returns what it computed
as arrays keyed by image content hash. The caller owns the caches and merges the results.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.pixels import prepare_array, read_bgr
from core.recipe import Recipe
from core.runner import Runner
from verify.engines import memory
from verify.engines.runners import RunnerSpec
from verify.face.box_crop import BoxCrop
from verify.face.faces import FaceChoice, detect_rows, face_crop


@dataclass(frozen=True)
class FaceSettings:
    choice: FaceChoice
    crop_fraction: float  # centre crop when no detector is used or no face is found
    flip: bool
    fit: str = "shorter_side"  # the template on a non-square input (Verification.template_fit)
    box: BoxCrop | None = None  # crop the box with a margin instead of the landmark warp (Verification.align)


@dataclass
class PassJob:
    """Images of one shard and what to compute for each.

    detectors / recognizers: name -> spec ("float", "quantized", ...); `align_with` names the
    detector side whose faces each embedding set is fed, `model_of` the recognizer that makes it;
    `rows` holds detections already cached (a detector runs only for images missing there);
    `embed` the image hashes to embed per embedding set.
    """

    images: list[tuple[Path, str]]  # (path, sha256 of its bytes)
    recognizer: Recipe
    detector: Recipe | None  # runs where rows are missing (None: every row is given in `rows`)
    settings: FaceSettings
    detectors: dict[str, RunnerSpec | None]  # None: only a live runner of the calling process will do
    recognizers: dict[str, RunnerSpec | None]
    align_with: dict[str, str]
    rows: dict[str, dict[str, np.ndarray]]
    embed: dict[str, set[str]]
    log_file: Path
    model_of: dict[str, str] = field(default_factory=dict)  # embedding set -> its recognizer (default: the same name)


@dataclass
class PassResult:
    rows: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    engine_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    peak_rss_gb: float = 0.0  # the process's peak resident memory when the shard ended


def embed(runner: Runner, pixels: np.ndarray, output: str, flip: bool, layout: str) -> tuple[np.ndarray, float]:
    """(rows [raw embedding, raw + flipped-face embedding], engine seconds)."""
    vector = runner.infer(pixels)[output].reshape(-1)
    seconds = runner.inference_time
    both = vector
    if flip:
        axis = 3 if layout == "NCHW" else 2
        both = vector + runner.infer(np.ascontiguousarray(np.flip(pixels, axis)))[output].reshape(-1)
        seconds += runner.inference_time
    return np.stack([vector, both]).astype(np.float32), seconds


def run_job(job: PassJob, live: dict[str, Runner] | None = None) -> PassResult:
    """Run one shard; `live` ("detector:float", "recognizer:quantized", ...) are active runners of
    this process to use instead of building from the specs."""
    result = PassResult()
    recipe = job.recognizer
    size = recipe.model_input.height_width
    with contextlib.ExitStack() as stack:
        runners: dict[str, Runner] = dict(live or {})

        def runner(kind: str, name: str) -> Runner:
            key = f"{kind}:{name}"
            if key not in runners:
                spec = (job.detectors if kind == "detector" else job.recognizers)[name]
                assert spec is not None, f"{key}: no live runner and no spec to build one"
                runners[key] = stack.enter_context(spec.running(job.log_file))
            return runners[key]

        for path, sha in job.images:
            wanted = [name for name, hashes in job.embed.items() if sha in hashes]
            sides = set(job.detectors)
            missing_rows = [s for s in sides if sha not in job.rows.get(s, {})]
            if not wanted and not missing_rows:
                continue
            bgr = read_bgr(path)
            rows: dict[str, np.ndarray] = {}
            for side in sides:
                known = job.rows.get(side, {}).get(sha)
                if known is None:
                    assert job.detector is not None
                    det = runner("detector", side)
                    known = detect_rows(bgr, job.detector, det)
                    result.rows[side][sha] = known
                    result.engine_seconds[f"detector:{side}"] += det.inference_time
                rows[side] = known
            crops: dict[str, np.ndarray] = {}
            for name in wanted:
                side = job.align_with[name]
                if side not in crops:
                    crops[side], _ = face_crop(bgr, rows.get(side), job.settings.choice, size,
                                               job.settings.crop_fraction, job.settings.fit, job.settings.box)
                pixels = prepare_array(crops[side], recipe.model_input, recipe.preprocess, path).pixels
                model = runner("recognizer", job.model_of.get(name, name))
                vectors, seconds = embed(model, pixels, recipe.embedding_output, job.settings.flip,
                                         recipe.model_input.layout)
                result.embeddings[name][sha] = vectors
                result.engine_seconds[f"recognizer:{name}"] += seconds
    result.peak_rss_gb = round(memory.peak_rss_gb(), 2)
    return result
