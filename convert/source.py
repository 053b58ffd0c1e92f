"""Obtain a recipe's source model reproducibly and check its sha256 before anything uses it."""
from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

from convert.artifacts import sha256_bytes, write_bytes_atomic
from convert.errors import RkverifyError
from convert.recipe import PROJECT_ROOT, LoadedRecipe, Source

SOURCE_SUFFIX = {"onnx": ".onnx", "pytorch-onnx": ".onnx"}


def package_dir(distribution: str) -> Path:
    """Folder of an installed distribution's files (its site-packages root), without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RkverifyError("environment", "", f"package '{distribution}' is not installed",
                            f"pip install {distribution} (tox.ini installs it for the recipes here)") from None
    return Path(str(dist.locate_file("")))


def read_source_bytes(source: Source, recipe_path: Path) -> bytes:
    path = package_dir(source.package) / source.file if source.package else PROJECT_ROOT / source.path
    field = "source.file" if source.package else "source.path"
    if not path.is_file():
        raise RkverifyError(recipe_path, field, f"model file {path} does not exist", "point at an existing model file")
    if source.literal is None:
        return path.read_bytes()
    return _bytes_literal(path, source.literal, recipe_path)


def _bytes_literal(py_file: Path, name: str, recipe_path: Path) -> bytes:
    """The bytes literal assigned to `name` in a .py file, read without importing (running) it."""
    for node in ast.parse(py_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise RkverifyError(recipe_path, "source.literal", f"no bytes literal '{name}' in {py_file}",
                        "name the variable that holds the model bytes")


def obtain_source(loaded: LoadedRecipe, models_dir: Path) -> Path:
    """Copy the source model to models/<name>/source/, verified against recipe's sha256."""
    recipe = loaded.recipe
    data = read_source_bytes(recipe.source, loaded.path)
    actual = sha256_bytes(data)
    if actual != recipe.source.sha256:
        raise RkverifyError(loaded.path, "source.sha256",
                            f"model sha256 is {actual}, recipe expects {recipe.source.sha256}",
                            "check you have the intended model; if it is, put its sha256 in the recipe")
    target = models_dir / recipe.name / "source" / f"{recipe.name}{SOURCE_SUFFIX[recipe.source.framework]}"
    if not target.is_file() or sha256_bytes(target.read_bytes()) != actual:
        write_bytes_atomic(target, data)
    return target
