"""Build a calibration set under calib_data/<name>/ as rknn-toolkit2 expects it: .npy + a list file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.artifacts import atomic_dir, sha256_bytes, sha256_file
from core.errors import RkverifyError
from core.pixels import prepare_array, read_bgr, resolve_images
from core.recipe import LoadedRecipe

LIST_FILE = "dataset.txt"
MANIFEST = "manifest.json"


def calibration_key(images: list[Path], loaded: LoadedRecipe) -> str:
    recipe = loaded.recipe
    parts = [sha256_file(p) for p in images]
    parts.append(recipe.model_input.model_dump_json())
    parts.append(recipe.preprocess.model_dump_json())
    return sha256_bytes("\n".join(parts).encode())


def build_calibration_set(loaded: LoadedRecipe, calib_root: Path) -> Path:
    """Return the list file of the recipe's calibration set, rebuilding it only when inputs changed."""
    recipe = loaded.recipe
    calib = recipe.quantization.calibration
    available = resolve_images(calib.images, loaded.path, "quantization.calibration.images")
    chosen = available[: calib.size]
    key = calibration_key(chosen, loaded)
    final = calib_root / calib.name
    manifest_path = final / MANIFEST
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("key") == key:
        return final / LIST_FILE
    with atomic_dir(final) as tmp:
        entries = []
        for index, path in enumerate(tqdm(chosen, desc="calibration set", unit="img", leave=False)):
            # model input (always NCHW, which is also how rknn-toolkit2 reads calibration .npy)
            bgr = read_bgr(path)
            pixels = prepare_array(bgr, recipe.model_input, recipe.preprocess, path).pixels
            if float(bgr.std()) < 1.0:  # on the photo: a per_image normalisation would hide it
                raise RkverifyError(path, "quantization.calibration.images",
                                    "image is blank (constant pixels) and would skew calibration",
                                    "remove it from the calibration folder")
            name = f"{index:04d}_{path.stem}.npy"
            np.save(tmp / name, pixels)
            entries.append({"file": name, "image": str(path), "sha256": sha256_file(path)})
        (tmp / LIST_FILE).write_text("".join(f"{e['file']}\n" for e in entries))
        manifest = {
            "key": key,
            "recipe_sha256": loaded.sha256,
            "requested": calib.size,
            "used": len(entries),
            "available": len(available),
            "images": entries,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return final / LIST_FILE


def absolute_list(list_file: Path, folder: Path) -> Path:
    """A copy of `list_file` in `folder` naming each .npy by its absolute path: rknn-toolkit2 reads
    the entries relative to its working directory, a scratch folder (see convert.rknn_build)."""
    out = folder / LIST_FILE
    out.write_text("".join(f"{list_file.parent / name}\n" for name in list_file.read_text().split()))
    return out


def calibration_manifest(list_file: Path) -> dict:
    return json.loads((list_file.parent / MANIFEST).read_text())
