"""MTCNN as a recognizer's detector (evaluate.verification.detector: mtcnn): the face pass's rows against
the `mtcnn` package's own detector on real LFW photos, then the FaceNet pipeline recipe on LFW with its
stage split (real builds of the three nets and FaceNet, simulator runs: heavy, run under the lock).

    /work/heavy.sh python -m pytest tests/test_mtcnn_faces.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.pixels import read_bgr
from core.recipe import PROJECT_ROOT
from tests.conftest import CI_MAX_PAIRS
from verify.recipes import load

PIPELINE = "facenet-mtcnn-pipeline"
LFW = PROJECT_ROOT / "../shared/lfw/lfw-deepfunneled"
PHOTOS = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
          "Serena_Williams/Serena_Williams_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg"]
# LFW fold 1 (600 pairs), measured with the recipe as shipped (README "FaceNet"): floors a pair or two below
FOLD1 = {"float": 0.99, "both": 0.985, "cosine_recognizer_only": 0.99}


def test_an_unknown_detector_is_refused_naming_recipes_and_cascades() -> None:
    from core.errors import RkverifyError
    from verify.run import checked

    with pytest.raises(RkverifyError) as error:
        checked(PIPELINE, {"evaluate.verification.detector": "mtcnnn"})
    assert error.value.field == "evaluate.verification.detector"
    assert "mtcnn" in error.value.fix and "retinaface" in error.value.fix


@pytest.mark.skipif(not LFW.is_dir(), reason="LFW is not in ../shared/lfw")
def test_face_pass_rows_are_the_packages_mtcnn_faces(tmp_path: Path) -> None:
    """The rows the face pass caches for a recognizer (float cascade, the recipe's 250x250 frame: the
    LFW photo itself) are the package's MTCNN.detect_faces faces: same count, boxes, landmarks and
    scores within a pixel or two; the box crop takes the central face's box."""
    import cv2
    from mtcnn import MTCNN

    from verify.engines.cache import VectorCache
    from verify.face.faces import chosen_row, face_crop
    from verify.face.mtcnn_nets import build_nets
    from verify.face.recognition import detect_here, face_settings
    from verify.finders import CascadeFinder, plan

    cascade = plan("mtcnn", load(PIPELINE))
    assert not isinstance(cascade, type(load(PIPELINE))) and cascade.recipe.frame == [250, 250]
    finder = CascadeFinder(cascade, build_nets(cascade.recipe), quantized=False)
    try:
        detector = finder.detector(tmp_path / "nets.log")
        paths = [LFW / photo for photo in PHOTOS]
        cache = VectorCache(tmp_path / "rows.npz")
        detect_here(detector, "float", [(p, p.name) for p in paths], cache)
    finally:
        finder.release()
    package = MTCNN()
    settings = face_settings(load(PIPELINE).recipe.evaluate.verification)
    for path in paths:
        bgr = read_bgr(path)
        ours = cache.entries[path.name]
        theirs = package.detect_faces(np.ascontiguousarray(bgr[..., ::-1]), box_format="xyxy", output_type="numpy")
        theirs = theirs[np.argsort(-theirs[:, 5])]
        assert len(ours) == len(theirs) >= 1, path
        their_boxes = theirs[:, 1:5].copy()
        their_boxes[:, [0, 2]] = their_boxes[:, [0, 2]].clip(0, bgr.shape[1] - 1)
        their_boxes[:, [1, 3]] = their_boxes[:, [1, 3]].clip(0, bgr.shape[0] - 1)
        assert np.abs(ours[:, :4] - their_boxes).max() <= 2.0, path
        their_points = np.stack([theirs[:, 6:11], theirs[:, 11:16]], axis=2).reshape(len(theirs), 10)
        assert np.abs(ours[:, 5:] - their_points).max() <= 2.0, path
        assert np.abs(ours[:, 4] - theirs[:, 5]).max() < 1e-2, path
        row = chosen_row(ours, "central", bgr.shape[:2])
        assert row is not None
        crop, found = face_crop(bgr, ours, "central", (160, 160), 0.55, box=settings.box)
        x1, y1, x2, y2 = (int(v) for v in (max(row[0] - 16, 0), max(row[1] - 16, 0), min(row[2] + 16, 250),
                                            min(row[3] + 16, 250)))
        expected = cv2.resize(bgr[y1:y2, x1:x2], (160, 160), interpolation=cv2.INTER_LINEAR)
        assert found and np.array_equal(crop, expected)


@pytest.mark.skipif(not LFW.is_dir(), reason="LFW is not in ../shared/lfw")
def test_facenet_mtcnn_pipeline_on_lfw_pairs(fresh_run) -> None:
    """The pipeline recipe as shipped, CI-sized (a seeded subset of LFW fold 1's pairs): MTCNN's rows made in this process, FaceNet's
    shards in the workers; the stage split says what each quantized model costs."""
    metrics = json.loads((fresh_run(PIPELINE) / "metrics.json").read_text())
    v = metrics["verification"]
    assert v["is_lfw"] and v["folds_used"] == [0] and v["pairs"] == v["max_pairs"] == CI_MAX_PAIRS[PIPELINE]
    assert v["full_pipeline"] and v["align"] == "box_crop"
    assert v["float"]["accuracy"]["mean"] >= FOLD1["float"]
    assert v["quantized"]["accuracy"]["mean"] >= FOLD1["both"]
    assert v["no_face_found"]["float"] <= 2 and v["no_face_found"]["quantized"] <= 2
    split = v["stage_split"]
    assert set(split) == {"detector_only", "recognizer_only", "both"}
    assert split["both"]["accuracy"] == v["quantized"]["accuracy"]
    assert split["recognizer_only"]["cosine_mean"] >= FOLD1["cosine_recognizer_only"]
    for stage in split.values():  # each quantized model alone moves the embedding, and both move it more
        assert stage["cosine_mean"] < 1.0 and stage["flips"] >= 0
    assert split["both"]["cosine_mean"] <= min(split["detector_only"]["cosine_mean"],
                                               split["recognizer_only"]["cosine_mean"]) + 0.002
    engine = v["pass"]["engine_seconds"]
    assert engine["detector:float"] > 0 and engine["detector:quantized"] > 0  # rows made in this process
    assert v["calibration_leakage"]["overlap"] == 0
    assert metrics["gates"] and all(g["passed"] for g in metrics["gates"] if g.get("passed") is not None)
