"""Bad model / layer names / calibration data: one clear error, earlier artifacts untouched."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import rkverify
from convert.calibration import build_calibration_set
from convert.onnx_prep import prepare_onnx
from convert.source import obtain_source
from core.errors import RkverifyError
from core.recipe import load_recipe


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    """A models/ folder that already holds a good source and canonical ONNX."""
    loaded = load_recipe("retinaface")
    root = tmp_path / "models"
    source = obtain_source(loaded, root)
    prepare_onnx(source.model, loaded, root / "retinaface" / "retinaface.onnx")
    return root


def test_sha256_mismatch_is_refused_and_keeps_the_good_copy(recipe_copy, models_dir: Path) -> None:
    before = snapshot(models_dir)
    path = recipe_copy(lambda t: t.replace("sha256: b7a7acab", "sha256: 00a7acab"))
    with pytest.raises(RkverifyError) as err:
        obtain_source(load_recipe(str(path)), models_dir)
    message = str(err.value)
    assert "[source.sha256]" in message and "b7a7acab55e104dc" in message and "Fix:" in message
    assert snapshot(models_dir) == before


def test_wrong_output_name_suggests_the_real_ones(recipe_copy, models_dir: Path) -> None:
    before = snapshot(models_dir)
    path = recipe_copy(lambda t: t.replace("outputs: [loc, conf, landmarks]", "outputs: [loc, confidence, landmarks]"))
    loaded = load_recipe(str(path))
    with pytest.raises(RkverifyError) as err:
        prepare_onnx(models_dir / "retinaface" / "source" / "retinaface.onnx", loaded,
                     models_dir / "retinaface" / "retinaface.onnx")
    message = str(err.value)
    assert "[outputs.1]" in message and "'confidence'" in message
    assert message.split("closest real names: ")[1].startswith("conf")
    assert snapshot(models_dir) == before


def test_wrong_input_name_through_the_cli(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("  - name: input ", "  - name: data "))
    assert rkverify.main(["run", str(path), "--reports", str(path.parent / "reports")]) == 2
    err = capsys.readouterr().err
    assert "[inputs.0.name]" in err and "use one of: input" in err


@pytest.fixture()
def calib_recipe_for(recipe_copy):
    """The shipped recipe with its calibration images replaced by one folder."""

    def make(images: Path):
        def edit(text: str) -> str:
            start = text.index("    images:\n", text.index("calibration:"))
            return text[:start] + f"    images:\n      - {{dir: {images}, glob: '*.jpg'}}\n" + text[text.index("\ntarget:"):]

        return load_recipe(str(recipe_copy(edit)))

    return make


@pytest.fixture()
def calib_root(tmp_path: Path, calib_recipe_for) -> Path:
    """calib_data/ already holding a good set under the recipe's calibration name."""
    good = tmp_path / "good"
    good.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(good / "a.jpg"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    root = tmp_path / "calib_data"
    build_calibration_set(calib_recipe_for(good), root)
    return root


@pytest.mark.parametrize("case", ["empty", "unreadable", "blank"])
def test_bad_calibration_set(case: str, tmp_path: Path, calib_root: Path, calib_recipe_for) -> None:
    before = snapshot(calib_root)
    assert before, "the earlier set exists"
    images = tmp_path / case
    images.mkdir()
    if case == "unreadable":
        (images / "broken.jpg").write_bytes(b"not a jpeg")
    if case == "blank":
        cv2.imwrite(str(images / "grey.jpg"), np.full((48, 48, 3), 128, np.uint8))
    with pytest.raises(RkverifyError) as err:
        build_calibration_set(calib_recipe_for(images), calib_root)
    message = str(err.value)
    expected = {"empty": "no images found", "unreadable": "broken.jpg", "blank": "grey.jpg"}[case]
    assert expected in message and "Fix:" in message
    assert snapshot(calib_root) == before
