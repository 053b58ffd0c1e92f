"""Figures that say what they rest on: the leakage gate, the preprocessing check's noise threshold.
Arrays and metrics only (the ONNX Runtime check runs on the default recipe's canonical ONNX): quick."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.pixels import PreparedImage
from core.recipe import Gates, load_recipe
from verify.analyses.preprocess_check import CONFIDENT_SHARE, Score, resampled_share
from verify.gates import evaluate_gates, gates_of


def leaky(overlap: int) -> dict:
    return {"verification": {"calibration_leakage": {"overlap": overlap, "calibration_images": 30,
                                                     "evaluated_images": 807, "overlapping": []}}}


@pytest.mark.parametrize("overlap, passed", [(0, True), (2, False)])
def test_calibration_leakage_is_a_gate_on_by_default_for_lfw(overlap: int, passed: bool) -> None:
    recipe = load_recipe("arcface-mobilefacenet").recipe
    assert recipe.gates.max_calibration_overlap is None  # not written in the recipe: on because it is LFW
    gates = gates_of(recipe)
    assert gates.max_calibration_overlap == 0
    (gate,) = evaluate_gates(Gates(max_calibration_overlap=gates.max_calibration_overlap), leaky(overlap))
    assert gate.gate == "max_calibration_overlap" and gate.passed is passed and gate.value == overlap


def test_leakage_gate_stays_off_for_a_detector_and_is_refused_on_one() -> None:
    assert gates_of(load_recipe("retinaface").recipe).max_calibration_overlap is None
    from core.errors import RkverifyError
    from verify.recipes import load

    with pytest.raises(RkverifyError, match="max_calibration_overlap"):
        load("retinaface", {"gates.max_calibration_overlap": 0})  # the recipe as a run reads it (task checks)


def Counted(per_image: list[int]) -> Score:  # noqa: N802  (reads as the scorer it stands for)
    """A detector's score on per-image face counts, as decoded (no model needed to say what they imply)."""
    faces = np.array(per_image, dtype=float)
    return lambda chosen: {"faces found": float(faces[chosen].sum()), "mean confidence": 0.9}


def test_a_difference_resting_on_one_image_cannot_be_told() -> None:
    """The shipped default without ../shared: 'raw pixels' found 10 faces, the recipe 9, on 4 images."""
    share = resampled_share(Counted([6, 1, 1, 1]), Counted([7, 1, 1, 1]), 4, "faces found", 0.02)
    assert share < CONFIDENT_SHARE  # ahead only in draws that hold that one image: ~68%
    assert 0.55 < share < 0.8


def test_a_difference_on_every_image_is_a_verdict() -> None:
    share = resampled_share(Counted([1, 2, 1, 3, 2, 1, 2, 4]), Counted([3, 4, 2, 5, 4, 3, 3, 6]), 8, "faces found",
                            0.02)
    assert share >= CONFIDENT_SHARE


def test_the_default_recipe_without_shared_photos_cannot_tell_instead_of_warning(retinaface_run: Path) -> None:
    """On the 4 package photos the default run is left with, the check gives no verdict from noise."""
    from core.pixels import prepare, resolve_images
    from tests.conftest import workspace_of
    from verify.analyses.preprocess_check import check_preprocessing

    onnx_path = workspace_of(retinaface_run) / "models" / "retinaface" / "retinaface.onnx"
    shipped = load_recipe("retinaface").recipe.evaluate.images
    packaged = [src.model_dump(exclude_defaults=True) for src in shipped if src.package]  # no ../shared/
    loaded = load_recipe("retinaface", {"evaluate.images": packaged})
    found = resolve_images(loaded.recipe.evaluate.images, loaded.path, "evaluate.images")
    assert len(found) == 4
    images: list[PreparedImage] = [prepare(p, loaded.recipe.model_input, loaded.recipe.preprocess) for p in found]
    result = check_preprocessing(loaded, Path(onnx_path), images)
    assert result["warning"] == ""
    if result["best"] != "recipe" and result["resampled_share"] is not None:
        assert result["cannot_tell"].startswith("cannot tell:") and "of the 4 images" in result["cannot_tell"]
