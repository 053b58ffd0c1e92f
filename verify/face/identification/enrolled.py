"""A gallery as a device keeps it: stored embeddings. An older `.rknn` cannot run again in the
simulator (a loaded .rknn does not run there), but what a device enrolled with it last year is just
vectors. Every identification run saves its enrolled images' embeddings (float and quantized,
keyed by image content hash, with the run's provenance) in its report folder; a later run given
`evaluate.identification.enrolled_with` searches that gallery with its own quantized model, as a
device updated to a new build searches the database its old build enrolled.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import write_bytes_atomic
from core.errors import RkverifyError

GALLERY_FILE = "gallery.npz"
ENROLLED = "enrolled"  # the earlier run's gallery, as a gallery model of the settings table
FIELD = "evaluate.identification.enrolled_with"
MODELS = ("float", "quantized")


@dataclass(frozen=True)
class SavedGallery:
    path: Path
    keys: list[str]  # sha256 of each enrolled image, in gallery order
    vectors: dict[str, np.ndarray]  # "float", "quantized" -> (images, dim), rows L2-normalised
    provenance: dict[str, Any]


def save_gallery(path: Path, keys: list[str], vectors: dict[str, np.ndarray], provenance: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array(keys), provenance=np.array(json.dumps(provenance)),
             **{m: vectors[m].astype(np.float32) for m in MODELS})
    write_bytes_atomic(path, buffer.getvalue())


def gallery_path(value: str, reports_dir: Path, recipe: str) -> Path:
    """`value`: a run folder or its gallery file (a path), or a run id of reports/<recipe>/, or
    <recipe>/<run id> under the reports folder."""
    given = Path(value).expanduser()
    candidates = [given] if given.is_absolute() else [given, reports_dir / recipe / value, reports_dir / value]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate / GALLERY_FILE
        if candidate.is_file():
            return candidate
    raise RkverifyError(value, FIELD, f"no run folder or gallery file of that name (looked in {reports_dir / recipe} "
                        f"and {reports_dir})", "give a run folder (reports/<recipe>/<run id>), its run id, or its "
                        f"{GALLERY_FILE}")


def load_gallery(value: str, reports_dir: Path, recipe: str) -> SavedGallery:
    path = gallery_path(value, reports_dir, recipe)
    if not path.is_file():
        raise RkverifyError(path, FIELD, "that run saved no gallery (it predates saved galleries, or ran without "
                            "identification)", "rerun that recipe with identification enabled, or name another run")
    try:
        with np.load(path) as stored:
            saved = SavedGallery(path, [str(k) for k in stored["keys"]], {m: stored[m] for m in MODELS},
                                 json.loads(str(stored["provenance"])))
    except (OSError, ValueError, KeyError) as exc:
        raise RkverifyError(path, FIELD, f"not a saved gallery ({exc})", f"name a run folder whose {GALLERY_FILE} "
                            "rkverify wrote") from exc
    return saved


def aligned(saved: SavedGallery, keys: list[str], dim: int) -> np.ndarray:
    """The saved quantized gallery in this run's gallery order (`keys`: its images' sha256). Another
    gallery (other images: another dataset, folds, seed, distractors or calibration people) or another
    embedding size is refused: the comparison would not be one database searched by two builds."""
    vectors = saved.vectors["quantized"]
    if vectors.shape[1] != dim:
        raise RkverifyError(saved.path, FIELD, f"its embeddings are {vectors.shape[1]}-d, this model's {dim}-d",
                            "name a run of a model with the same embedding size")
    row = {k: i for i, k in enumerate(saved.keys)}
    missing = [k for k in keys if k not in row]
    if missing or len(saved.keys) != len(keys):
        protocol = saved.provenance.get("protocol", {})
        theirs = ", ".join(f"{k} {protocol.get(k)}" for k in ("dataset", "folds_used", "seed", "distractors"))
        raise RkverifyError(saved.path, FIELD, f"another gallery: it enrolled {len(saved.keys)} images, this run "
                            f"{len(keys)}, {len(missing)} of them not in it (that run: {theirs})",
                            "run both with the same dataset, folds (max_folds), seed and distractors")
    return vectors[[row[k] for k in keys]]
