"""Preprocessing contract check: does the recipe's channel order and mean/std give the float model
its best task result, or does a common alternative do better (a sign the recipe is wrong)?

Detectors are scored by the faces they find on the eval images (mean confidence breaking ties);
recognizers by d' between same-person and different-person embedding distances on the eval faces
(identity = the photo's folder, LFW layout).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from convert.preprocess import PreparedImage
from convert.recipe import LoadedRecipe, Preprocess
from verify import detection
from verify.runners import OnnxRuntimeRunner

if TYPE_CHECKING:
    from verify.run_state import RunState

# a recognizer / detector whose recipe settings trail the best alternative by more than this is flagged
MARGIN = {"recognition": 0.10, "detection": 0.02}


def variants(pre: Preprocess) -> dict[str, tuple[Preprocess, bool]]:
    """label -> (mean/std preprocessing, swap channels?); the recipe's own first."""
    swapped = "RGB" if pre.channel_order == "BGR" else "BGR"
    options = {"recipe": (pre, False), f"channels swapped ({swapped})": (pre, True)}
    if pre.per_image != "none":  # the images are normalised already: another mean/std would normalise twice
        return options
    for label, mean, std in (("(x-127.5)/128", 127.5, 128.0), ("x/255", 0.0, 255.0), ("raw pixels", 0.0, 1.0)):
        candidate = pre.model_copy(update={"mean": [mean] * 3, "std": [std] * 3})
        if candidate != pre:
            options[label] = (candidate, False)
    return options


def _d_prime(embeddings: np.ndarray, identities: list[str]) -> float:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    same: list[float] = []
    different: list[float] = []
    for i in range(len(identities)):
        for j in range(i + 1, len(identities)):
            (same if identities[i] == identities[j] else different).append(distance[i, j])
    if not same or not different:
        return float("nan")
    spread = np.sqrt((np.var(same) + np.var(different)) / 2) or 1e-12
    return float((np.mean(different) - np.mean(same)) / spread)


def _score(loaded: LoadedRecipe, outputs: list[dict[str, np.ndarray]], images: list[PreparedImage]) -> dict[str, float]:
    recipe = loaded.recipe
    if recipe.evaluate.task == "detection":
        found = [detection.decode(o, recipe.outputs, recipe.evaluate.detection, recipe.model_input.height_width,
                                  im.scale) for o, im in zip(outputs, images)]
        scores = np.concatenate([d.scores for d in found]) if found else np.array([])
        return {"faces found": float(len(scores)), "mean confidence": float(scores.mean()) if len(scores) else 0.0}
    embeddings = np.stack([o[recipe.embedding_output].ravel() for o in outputs])
    return {"d_prime same vs different": _d_prime(embeddings, [im.path.parent.name for im in images])}


def check_preprocessing(loaded: LoadedRecipe, onnx_path: Any, images: list[PreparedImage]) -> dict[str, Any]:
    recipe = loaded.recipe
    results = {}
    for label, (pre, swap) in variants(recipe.preprocess).items():
        runner = OnnxRuntimeRunner(onnx_path, recipe.model_input, pre)
        runner.activate()
        outputs = [runner.infer(im.pixels[:, ::-1] if swap else im.pixels) for im in images]  # NCHW: axis 1
        runner.deactivate()
        results[label] = _score(loaded, outputs, images)
    key = next(iter(results["recipe"]))
    best = max(results, key=lambda label: tuple(results[label].values()))
    own, top = results["recipe"][key], results[best][key]
    margin = MARGIN[recipe.evaluate.task]
    worse = best != "recipe" and top > own * (1 + margin) + (margin if own <= 0 else 0)
    warning = (f"the float model does better with '{best}' ({key} {top:.3g}) than with the recipe's preprocessing "
               f"({own:.3g}): check preprocess.channel_order / mean / std" if worse else "")
    return {"metric": key, "results": results, "best": best, "warning": warning}


def step(state: RunState) -> None:
    state.metrics["preprocess_check"] = check_preprocessing(state.loaded, state.artifacts.onnx, state.images)
