"""The recipe's preprocessing, shared by calibration (convert) and evaluation (verify).

Model input = raw pixels in the model's channel order and layout, resized to the input
size (normalised here only by a recipe's `per_image`, see core.per_image). Mean/std are NOT
applied here: RKNN applies them itself (config mean_values / std_values), and the float runner
applies them with `normalize`, so both see one image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core import per_image
from core.errors import RkverifyError
from core.packages import package_dir
from core.pairs_file import people_in_pairs
from core.recipe import PROJECT_ROOT, ImageSource, InputSpec, Preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class PreparedImage:
    path: Path
    pixels: np.ndarray  # (1, C, H, W) or (1, H, W, C) float32, model channel order, not normalised by mean/std
    scale: float  # model-input pixels per original pixel (letterbox anchors the image top-left)


def resolve_images(sources: list[ImageSource], where: Path, field: str) -> list[Path]:
    """Image files named by a recipe's image sources, sorted, without duplicates."""
    found: list[Path] = []
    for index, src in enumerate(sources):
        if src.package:
            try:
                root = package_dir(src.package)
            except RkverifyError:
                if src.optional:
                    continue
                raise
        else:
            root = (PROJECT_ROOT / (src.dir or "")).resolve()
            if not root.is_dir():
                if src.optional:
                    continue
                raise RkverifyError(where, f"{field}.{index}.dir", f"folder {root} does not exist",
                                    "create it with your images, or mark the source 'optional: true'")
        images = [p for p in sorted(root.glob(src.glob)) if p.suffix.lower() in IMAGE_SUFFIXES]
        for entry in images:  # name the entry in the user's folder, not where a link points
            if not entry.is_file():
                problem = (f"a broken link (to {os.readlink(entry)}, which does not exist)" if entry.is_symlink()
                           else "not a regular file")
                raise RkverifyError(entry, f"{field}.{index}", problem,
                                    "remove the entry from the folder, or restore what it points to")
        if src.not_in_pairs:
            pairs_file = (PROJECT_ROOT / src.not_in_pairs).resolve()
            if not pairs_file.is_file():
                if src.optional:
                    continue
                raise RkverifyError(where, f"{field}.{index}.not_in_pairs", f"{pairs_file} does not exist",
                                    "point it at the dataset's pairs.txt")
            named = people_in_pairs(pairs_file, f"{field}.{index}.not_in_pairs")
            images = [p for p in images if p.parent.name not in named]
        found.extend(images)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise RkverifyError(where, field, "no images found in any source",
                            "put .jpg/.png face images in a listed folder (see README: 'Your own data')")
    return unique


def read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise RkverifyError(path, "", "image cannot be read", "remove the file or replace it with a valid JPEG/PNG")
    return image


def fit_to_input(bgr: np.ndarray, spec: InputSpec, pre: Preprocess) -> tuple[np.ndarray, float]:
    """Resize to the input size in the model's channel order; letterbox pads with the mean."""
    height, width = spec.height_width
    image = bgr if pre.channel_order == "BGR" else bgr[..., ::-1]
    if pre.resize == "stretch":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), width / bgr.shape[1]
    scale = min(height / bgr.shape[0], width / bgr.shape[1])
    new_w, new_h = max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = np.clip(np.round(pre.mean), 0, 255).astype(np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, scale


def prepare(path: Path, spec: InputSpec, pre: Preprocess) -> PreparedImage:
    return prepare_array(read_bgr(path), spec, pre, path)


def prepare_array(bgr: np.ndarray, spec: InputSpec, pre: Preprocess, path: Path) -> PreparedImage:
    """As `prepare`, for an image already in memory (e.g. an aligned face crop of `path`)."""
    canvas, scale = fit_to_input(bgr, spec, pre)
    pixels = per_image.apply(canvas.astype(np.float32)[np.newaxis], pre.per_image)
    if spec.layout == "NCHW":
        pixels = pixels.transpose(0, 3, 1, 2)
    return PreparedImage(path=path, pixels=np.ascontiguousarray(pixels), scale=scale)


def normalize(pixels: np.ndarray, pre: Preprocess, layout: str) -> np.ndarray:
    shape = (1, 3, 1, 1) if layout == "NCHW" else (1, 1, 1, 3)
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(shape)
    std = np.asarray(pre.std, dtype=np.float32).reshape(shape)
    return (pixels - mean) / std
