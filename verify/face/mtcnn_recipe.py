"""The cascade recipe (convert/cascades/<name>.yaml): which three net recipes make MTCNN, the frame
they run on, how P-Net's pyramid is built, the cascade's thresholds, eval images and gates.

Each net stays an ordinary recipe (convert/recipes/mtcnn-pnet.yaml, ...): source, frontend,
calibration and build are the suite's. The cascade recipe only holds what belongs to the three
together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from core.artifacts import sha256_bytes
from core.errors import RkverifyError
from core.recipe import PROJECT_ROOT, ImageSource, Strict

CASCADES_DIR = PROJECT_ROOT / "convert" / "cascades"


class Nets(Strict):
    pnet: str = Field(description="recipe of the proposal net (any input size: the cascade sets each level's)")
    rnet: str = Field(description="recipe of the 24x24 refine net")
    onet: str = Field(description="recipe of the 48x48 output net (boxes, 5 landmarks)")


class Thresholds(Strict):
    """The package's MTCNN.detect_faces defaults (verify.mtcnn_cascade.CascadeConfig)."""

    min_face_size: int = Field(20, ge=12)
    scale_factor: float = Field(0.709, gt=0, lt=1)
    threshold_pnet: float = Field(0.6, gt=0, lt=1)
    threshold_rnet: float = Field(0.7, gt=0, lt=1)
    threshold_onet: float = Field(0.8, gt=0, lt=1)


class CascadeEval(Strict):
    images: list[ImageSource] = Field(min_length=1)
    count: int = Field(12, ge=1, description="eval images (photos letterboxed into the frame)")
    match_iou: float = Field(0.5, gt=0, lt=1)


class CascadeGates(Strict):
    min_match_rate: float | None = None
    min_mean_iou: float | None = None
    max_mean_landmark_error: float | None = Field(None, description="mean landmark distance / box side")


class CascadeRecipe(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    nets: Nets
    frame: list[int] = Field(min_length=2, max_length=2, description="[H, W] every photo is letterboxed into: "
                             "the pyramid, so every P-Net shape, follows from it")
    pyramid: Literal["per_scale", "dynamic"] = Field(
        "per_scale", description="P-Net on the NPU: one build per pyramid level, or one build with "
        "rknn-toolkit2's dynamic_input listing every level's shape")
    thresholds: Thresholds = Thresholds()
    evaluate: CascadeEval
    gates: CascadeGates = CascadeGates()


def load_cascade(name_or_path: str, pyramid: str | None = None) -> tuple[CascadeRecipe, Path, str]:
    """(recipe, its file, its sha256); `pyramid` overrides the recipe's choice."""
    path = Path(name_or_path) if name_or_path.endswith(".yaml") else CASCADES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CASCADES_DIR.glob("*.yaml"))
        raise RkverifyError(path, "", "cascade recipe not found", f"use one of: {', '.join(known)}")
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    if pyramid is not None:
        data["pyramid"] = pyramid
    try:
        recipe = CascadeRecipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise RkverifyError(path, field, first["msg"], "correct this value (see convert/cascades/mtcnn.yaml)") from None
    return recipe, path, sha256_bytes(raw + repr(pyramid).encode())
