"""FaceNet as its users build it: per-image standardisation, FaceNet's box crop, memory-aware
workers, and the trained Keras FaceNet measured on LFW with real builds and simulator runs."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import rkverify
from core.errors import RkverifyError
from core.per_image import prewhiten
from core.pixels import prepare_array
from core.recipe import InputSpec, Preprocess, load_recipe
from verify.engines import memory
from verify.engines.workers import map_units, run_units
from verify.face.box_crop import BoxCrop, crop_box
from verify.face.faces import face_crop

# Measured (rknn-toolkit2 2.5.0, rk3588 simulator, RetinaFace box crops + 32 px, flip), asserted with a margin:
# LFW fold 1 (600 pairs): float 99.83%, w8a8 99.83%, embedding cosine 0.9991; prewhitened, on the
# seeded 100-pair subset: float 99.0%, w8a8 99.0%, cosine 0.9982.
FOLD1 = {"float": 0.99, "quantized": 0.99, "cosine": 0.998}
PREWHITEN_PAIRS = 100
PREWHITEN_FIGURES = {"float": 0.97, "quantized": 0.97, "cosine": 0.997}
PREWHITEN = {"preprocess": {"channel_order": "RGB", "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "stretch",
                            "per_image": "prewhiten"}}


def reference_prewhiten(x: np.ndarray) -> np.ndarray:
    """davidsandberg/facenet facenet.prewhiten, written out in numpy."""
    mean, std = np.mean(x), np.std(x)
    std_adj = np.maximum(std, 1.0 / np.sqrt(x.size))
    return np.multiply(np.subtract(x, mean), 1 / std_adj)


# --- per-image standardisation -------------------------------------------------------------

def test_prewhiten_matches_the_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 160, 160, 3)).astype(np.float32)
    assert np.allclose(prewhiten(image), reference_prewhiten(image.astype(np.float64)), atol=1e-5)
    out = prewhiten(image)
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-4
    flat = np.full((1, 8, 8, 3), 77, np.float32)  # std 0: the floor 1/sqrt(n) keeps it finite
    assert np.array_equal(prewhiten(flat), np.zeros_like(flat))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_prepare_prewhitens_the_resized_face_in_either_layout(layout: str) -> None:
    """What calibration and every runner receive: the resized face in the model's channel order,
    prewhitened over the whole image (channel order and layout do not change the statistics)."""
    bgr = np.random.default_rng(1).integers(0, 256, (250, 200, 3)).astype(np.uint8)
    shape = [1, 160, 160, 3] if layout == "NHWC" else [1, 3, 160, 160]
    spec = InputSpec(name="x", shape=shape, layout=layout)
    pre = Preprocess(**PREWHITEN["preprocess"])
    pixels = prepare_array(bgr, spec, pre, Path("face.png")).pixels
    rgb = cv2.resize(bgr, (160, 160), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float64)[None]
    expected = reference_prewhiten(rgb)
    assert np.allclose(pixels, expected if layout == "NHWC" else expected.transpose(0, 3, 1, 2), atol=1e-5)


def test_double_normalisation_is_refused_in_one_line(recipe_copy, capsys) -> None:
    with pytest.raises(RkverifyError) as caught:
        load_recipe("keras-facenet", {"preprocess.per_image": "prewhiten"})
    error = caught.value
    assert error.field == "preprocess.per_image" and "normalise twice" in error.problem
    assert "near-constant embeddings" in error.problem and "std: [1, 1, 1]" in error.fix
    # the same from the command line: exit 2, one line, before any work
    path = recipe_copy(lambda t: t.replace("  resize: stretch", "  resize: stretch\n  per_image: prewhiten"),
                       "keras-facenet")
    code = rkverify.main(["run", str(path), "--reports", str(path.parent / "reports")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rkverify: error:")]
    assert code == 2 and len(lines) == 1 and "[preprocess.per_image]" in lines[0] and "normalise twice" in lines[0]
    assert load_recipe("keras-facenet", PREWHITEN).recipe.preprocess.per_image == "prewhiten"


# --- FaceNet's box crop ------------------------------------------------------------------

def test_box_crop_adds_the_margin_clips_and_resizes() -> None:
    bgr = np.arange(250 * 250 * 3, dtype=np.uint32).reshape(250, 250, 3).astype(np.uint8)
    box = np.array([60.7, 50.2, 180.9, 200.4])
    crop = crop_box(bgr, box, BoxCrop(margin=32, square=False), (160, 160))
    # FaceNet's bounds: int(max(x1 - m/2, 0)) ... int(min(x2 + m/2, w))
    expected = cv2.resize(np.ascontiguousarray(bgr[34:216, 44:196]), (160, 160), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(crop, expected)
    square = crop_box(bgr, box, BoxCrop(margin=0, square=True), (160, 160))
    # the taller side (150.2) about the centre x 120.8: x from 45.7 to 195.9
    assert np.array_equal(square, cv2.resize(np.ascontiguousarray(bgr[50:200, 45:195]), (160, 160),
                                             interpolation=cv2.INTER_LINEAR))
    edge = crop_box(bgr, np.array([-10.0, -5.0, 100.0, 120.0]), BoxCrop(margin=40, square=False), (160, 160))
    assert np.array_equal(edge, cv2.resize(np.ascontiguousarray(bgr[0:140, 0:120]), (160, 160),
                                           interpolation=cv2.INTER_LINEAR))


def test_face_crop_takes_the_chosen_faces_box() -> None:
    """The detector interface is all the box crop needs: rows [box, score, 5 landmarks]."""
    bgr = np.random.default_rng(2).integers(0, 256, (250, 250, 3)).astype(np.uint8)
    rows = np.array([[0, 0, 40, 40, 0.99, *([20] * 10)], [80, 70, 170, 190, 0.9, *([125] * 10)]], np.float32)
    settings = BoxCrop(margin=32, square=False)
    crop, found = face_crop(bgr, rows, "central", (160, 160), 0.55, box=settings)
    assert found and np.array_equal(crop, crop_box(bgr, rows[1, :4], settings, (160, 160)))


def test_box_crop_needs_a_detector() -> None:
    with pytest.raises(RkverifyError) as caught:
        load_recipe("keras-facenet", {"evaluate.verification.faces": "center_crop",
                                      "evaluate.verification.align": "box_crop"})
    assert caught.value.field == "evaluate.verification.align"


# --- memory-aware workers ----------------------------------------------------------------

def test_workers_are_sized_by_memory_as_well_as_cores() -> None:
    assert memory.workers_that_fit(4, 7.5, free_gb=20.0) == 2
    assert memory.workers_that_fit(4, 7.5, free_gb=5.0) == 1  # one always runs
    assert memory.workers_that_fit(2, None, free_gb=1.0) == 2  # nothing declared or measured: cores decide
    assert memory.available_gb() > 0 and memory.peak_rss_gb() > 0


def test_a_measured_worker_peak_sizes_the_next_pool(tmp_path: Path) -> None:
    peaks = tmp_path / "worker-peak-gb.json"
    assert memory.recorded_peak_gb(peaks, "model-a") is None
    memory.record_peak_gb(peaks, "model-a", [1.04, 1.1])
    memory.record_peak_gb(peaks, "model-a", [0.9])  # the largest measured is kept
    assert memory.recorded_peak_gb(peaks, "model-a") == 1.1 and memory.recorded_peak_gb(peaks, "b") is None


def own_peak(_: int) -> float:
    return memory.peak_rss_gb()


def test_a_spawned_worker_reports_its_own_peak_not_its_parents() -> None:
    ballast = np.ones(600 * 1024 ** 2 // 8)  # 600 MB in this process
    assert memory.peak_rss_gb() > 0.5
    assert map_units(own_peak, [0, 1], 2)[0] < memory.peak_rss_gb() - 0.4
    del ballast


def timed_nap(_: int) -> tuple[float, float]:
    start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    time.sleep(0.5)
    return start, time.monotonic()


def test_a_worker_that_would_not_fit_waits_and_none_is_lost() -> None:
    """A unit declaring more memory than the machine has free never runs beside another: the second
    waits for the first to end instead of both being killed, and every unit completes."""
    huge = memory.available_gb() * 2
    outcomes = run_units(timed_nap, [0, 1, 2], 2, peak_gb=huge)
    spans = sorted(o.result for o in outcomes if o.result is not None)
    assert len(spans) == 3 and all(o.error is None for o in outcomes)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))
    together = sorted(o.result for o in run_units(timed_nap, [0, 1], 2, peak_gb=0.01) if o.result)
    assert together[1][0] < together[0][1]  # small enough: side by side


# --- the trained Keras FaceNet: real builds, simulator runs, LFW ----------------------------

def lfw(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["verification"]


def test_trained_facenet_on_lfw_fold_1(fresh_run) -> None:
    """The recipe as shipped (CI: LFW fold 1, 600 pairs, 807 images): the trained network separates
    LFW's people, w8a8 keeps it, and calibration never saw an evaluated photo."""
    v = lfw(fresh_run("keras-facenet"))
    assert v["is_lfw"] and v["folds_used"] == [0] and v["float"]["pairs"] == 600
    assert v["float"]["accuracy"]["mean"] >= FOLD1["float"]
    assert v["quantized"]["accuracy"]["mean"] >= FOLD1["quantized"]
    assert v["embedding_drift"]["cosine_mean"] >= FOLD1["cosine"]
    assert v["calibration_leakage"]["overlap"] == 0
    assert all(0 < peak < 24 for peak in v["pass"]["worker_peak_rss_gb"])


def test_prewhitened_facenet_end_to_end(tmp_path: Path) -> None:
    """per_image: prewhiten on the real model: calibration .npy hold the aligned faces prewhitened as
    at inference, the .rknn (mean 0 / std 1, float input) agrees with ONNX Runtime on LFW pairs, and
    the double normalisation the schema refuses really gives near-constant embeddings."""
    from convert.pipeline import release
    from tests.conftest import CI_VERIFICATION
    from verify.engines.run_models import recognizer_models, rknn_runner
    from verify.engines.runners import OnnxRuntimeRunner, active
    from verify.face.recognition import FacePass, choose_pairs, pair_subset, verification_metrics

    loaded, artifacts, finder = rkverify.convert_all("keras-facenet", CI_VERIFICATION | PREWHITEN)
    recipe = loaded.recipe
    log = tmp_path / "toolkit.log"
    try:
        entries = artifacts.calibration["images"]
        assert len(entries) == recipe.quantization.calibration.size
        for entry in entries[:8]:
            face = cv2.imread(entry["image"])  # the aligned face the .npy was made from
            rgb = cv2.resize(face, (160, 160), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float64)[None]
            stored = np.load(artifacts.calibration_list.parent / entry["file"])
            assert np.allclose(stored, reference_prewhiten(rgb).transpose(0, 3, 1, 2), atol=1e-5)

        float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
        quant_runner = rknn_runner(artifacts.built, recipe, log)
        assert finder is not None
        aligner = finder.detector(log)
        subset = pair_subset(choose_pairs(recipe.evaluate.verification, loaded.path)[0], PREWHITEN_PAIRS)
        with active(float_runner, quant_runner, aligner.float.live):
            face_pass = FacePass(loaded, recognizer_models(loaded, artifacts, float_runner, quant_runner), aligner,
                                 tmp_path / "cache", log, 1)
            figures, faces = verification_metrics(loaded, face_pass, tmp_path / "run", subset, faces_for_drift=12)
            fixed = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input,
                                      load_recipe("keras-facenet").recipe.preprocess)
            fixed.activate()
            doubled = np.stack([fixed.infer(face.pixels)["Identity:0"].ravel() for face in faces])
    finally:
        release(artifacts)
        if finder is not None:
            finder.release()
    assert figures["float"]["accuracy"]["mean"] >= PREWHITEN_FIGURES["float"]
    assert figures["quantized"]["accuracy"]["mean"] >= PREWHITEN_FIGURES["quantized"]
    assert figures["embedding_drift"]["cosine_mean"] >= PREWHITEN_FIGURES["cosine"]
    unit = doubled / np.linalg.norm(doubled, axis=1, keepdims=True)
    between_faces = (unit @ unit.T)[np.triu_indices(len(faces), 1)]
    assert between_faces.min() > 0.999  # every face, the same embedding: what the refusal prevents
    assert figures["embedding_drift"]["cosine_between_different_faces"] < 0.5
