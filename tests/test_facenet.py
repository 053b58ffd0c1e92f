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
from convert.errors import RkverifyError
from convert.per_image import prewhiten
from convert.preprocess import prepare_array
from convert.recipe import InputSpec, Preprocess, load_recipe
from verify import memory
from verify.box_crop import BoxCrop, crop_box
from verify.faces import face_crop
from verify.workers import run_units

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
