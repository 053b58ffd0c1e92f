"""An unchanged re-run of a recipe reuses the run before it, keyed by content as the embedding caches are.

The key: the recipe (and its aligning detector's) as loaded, overrides applied (it holds the source's
sha256); every file and folder the recipe names (calibration and evaluation photos, datasets, pairs,
local sources) by path, size and modification time; the versions of the packages it takes photos or
models from; the tool versions; and the sha256 of rkverify's own code (core/, convert/, verify/,
rkverify.py), so a changed measurement never answers from an old one.

The simulator runs only builds made in the same process (a .rknn loaded with load_rknn cannot run in
it), so a build alone cannot be reused: what is kept under <cache>/runs/<key>/ is the whole finished
run, its report folder (the measurements) and the folders it wrote (models/<name>/, calib_data/<set>/,
the detector's). A reused run gets a run folder of its own whose metrics.json says `reused` (from
which run and entry); `rkverify.py run --fresh` measures again.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import atomic_dir, sha256_bytes, sha256_file, tool_versions, utc_now, write_json_atomic
from core.recipe import PROJECT_ROOT, LoadedRecipe, load_recipe
from core.workspace import cache_dir

if TYPE_CHECKING:
    from verify.finders import Plan

PATH_FIELDS = ("dir", "not_in_pairs", "path", "params", "root", "pairs")  # relative to the project root
PACKAGE_FIELDS = ("package", "wheel")
CODE = ("core", "convert", "verify", "rkverify.py")
RUN = "run"  # the entry's copy of the run folder
DONE = "done.json"  # written last: an entry without it is not used


def entry_of(key: str) -> Path:
    return cache_dir() / "runs" / key


def run_key(loaded: LoadedRecipe, detector: Plan | None) -> str:
    recipes = [loaded.recipe.model_dump(mode="json")] + detector_recipes(detector)
    paths: set[str] = set()
    packages: set[str] = set()
    for recipe in recipes:
        _named(recipe, paths, packages)
    payload = {"recipes": recipes, "inputs": {p: _fingerprint(PROJECT_ROOT / p) for p in sorted(paths)},
               "packages": {p: _version(p) for p in sorted(packages)}, "tools": tool_versions(), "code": code_sha256()}
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode())


def detector_recipes(detector: Plan | None) -> list[dict[str, Any]]:
    """The detector's content: a recipe's, or a cascade's and its three nets' (their sources included)."""
    if detector is None:
        return []
    if isinstance(detector, LoadedRecipe):
        return [detector.recipe.model_dump(mode="json")]
    nets = detector.recipe.nets
    return [detector.recipe.model_dump(mode="json")] + [load_recipe(name).recipe.model_dump(mode="json")
                                                        for name in (nets.pnet, nets.rnet, nets.onet)]


def _named(value: Any, paths: set[str], packages: set[str]) -> None:
    """The path and package strings anywhere in a recipe's content."""
    if isinstance(value, dict):
        for field, item in value.items():
            if isinstance(item, str) and field in PATH_FIELDS:
                paths.add(item)
            elif isinstance(item, str) and field in PACKAGE_FIELDS:
                packages.add(item)
            else:
                _named(item, paths, packages)
    elif isinstance(value, list):
        for item in value:
            _named(item, paths, packages)


def _fingerprint(path: Path) -> list[tuple[str, int, int]]:
    """(file, size, mtime) of a file, or of every file under a folder (LFW: ~13,000 stats, ~0.1 s)."""
    if path.is_file():
        stat = path.stat()
        return [("", stat.st_size, stat.st_mtime_ns)]
    found = []
    for folder, _, files in os.walk(path, followlinks=True):
        for name in files:
            file = Path(folder) / name
            size, mtime = (file.stat().st_size, file.stat().st_mtime_ns) if file.exists() else (-1, -1)  # a broken link
            found.append((str(file.relative_to(path)), size, mtime))
    return sorted(found)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return package  # a wheel file's name carries its version


def code_sha256() -> str:
    files = sorted(p for part in CODE for p in ([PROJECT_ROOT / part] if part.endswith(".py")
                   else (PROJECT_ROOT / part).rglob("*")) if p.is_file() and "__pycache__" not in p.parts)
    return sha256_bytes("\n".join(f"{p.relative_to(PROJECT_ROOT)} {sha256_file(p)}" for p in files).encode())


def _link_or_copy(src: Path, dst: Path) -> None:
    """`dst` becomes `src`'s content through a rename: a file hard-linked elsewhere is never written in place."""
    tmp = dst.with_name(f".{dst.name}.reuse-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _put(src: Path, dst: Path) -> None:
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / file.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(file, target)


def store(key: str, run_dir: Path, folders: dict[str, Path]) -> None:
    """Keep a finished run under its key: `folders` maps a name in the entry (models/<name>, ...) to the
    folder the run wrote."""
    entry = entry_of(key)
    with atomic_dir(entry) as staged:
        shutil.copytree(run_dir, staged / RUN)
        for name, folder in folders.items():
            if folder.is_dir():
                _put(folder, staged / name)
        write_json_atomic(staged / DONE, {"run": str(run_dir), "stored_at": utc_now(), "folders": sorted(folders)})


def stored(key: str) -> Path | None:
    entry = entry_of(key)
    return entry if (entry / DONE).is_file() else None


def restore(entry: Path, key: str, folders: dict[str, Path], final: Path) -> Path:
    """Put a stored run's folders back in place and write its measurements as the run folder `final`,
    marked as reused."""
    started = time.perf_counter()
    for name, folder in folders.items():
        if (entry / name).is_dir():
            _put(entry / name, folder)
    done = json.loads((entry / DONE).read_text())
    with atomic_dir(final) as run_dir:
        shutil.copytree(entry / RUN, run_dir, dirs_exist_ok=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics["reused"] = {"run_id": metrics["run_id"], "created_at": metrics["created_at"], "run": done["run"],
                             "entry": str(entry), "key": key, "seconds": round(time.perf_counter() - started, 3)}
        metrics |= {"run_id": final.name, "created_at": utc_now()}
        write_json_atomic(run_dir / "metrics.json", metrics)
    return final
