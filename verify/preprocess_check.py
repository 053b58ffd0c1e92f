"""Preprocessing contract check: does the recipe's channel order and mean/std give the float model
its best task result, or does a common alternative do better (a sign the recipe is wrong)?

Detectors are scored by the faces they find on the eval images (mean confidence breaking ties);
recognizers by d' between same-person and different-person embedding distances on the eval faces
(identity = the photo's folder, LFW layout). An alternative is called better only when it stays ahead
in 95% of bootstrap resamples of the images; on a handful of images it usually cannot, and the check
says it cannot tell instead of a verdict drawn from noise.
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
# and only when it stays ahead in this share of bootstrap resamples of the eval images (paired: one draw
# for both); below it the difference may rest on an image or two, and the check says it cannot tell
RESAMPLES, CONFIDENT_SHARE = 1000, 0.95


def variants(pre: Preprocess) -> dict[str, tuple[Preprocess, bool]]:
    """label -> (mean/std preprocessing, swap channels?); the recipe's own first."""
    swapped = "RGB" if pre.channel_order == "BGR" else "BGR"
    options = {"recipe": (pre, False), f"channels swapped ({swapped})": (pre, True)}
    for label, mean, std in (("(x-127.5)/128", 127.5, 128.0), ("x/255", 0.0, 255.0), ("raw pixels", 0.0, 1.0)):
        candidate = pre.model_copy(update={"mean": [mean] * 3, "std": [std] * 3})
        if candidate != pre:
            options[label] = (candidate, False)
    return options


def _d_prime(embeddings: np.ndarray, identities: list[str], chosen: np.ndarray) -> float:
    """d' over the pairs of the images at `chosen` (a bootstrap draw repeats images: an image is never
    paired with its own copy)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    same: list[float] = []
    different: list[float] = []
    for a in range(len(chosen)):
        for b in range(a + 1, len(chosen)):
            i, j = chosen[a], chosen[b]
            if i != j:
                (same if identities[i] == identities[j] else different).append(distance[i, j])
    if not same or not different:
        return float("nan")
    spread = np.sqrt((np.var(same) + np.var(different)) / 2) or 1e-12
    return float((np.mean(different) - np.mean(same)) / spread)


class Scorer:
    """The task's figure on any draw of the images, from what the model gave on each image once."""

    def __init__(self, loaded: LoadedRecipe, outputs: list[dict[str, np.ndarray]], images: list[PreparedImage]) -> None:
        recipe = loaded.recipe
        self.task = recipe.evaluate.task
        if self.task == "detection":
            found = [detection.decode(o, recipe.outputs, recipe.evaluate.detection, recipe.model_input.height_width,
                                      im.scale) for o, im in zip(outputs, images)]
            self.faces = np.array([len(d.scores) for d in found], dtype=float)
            self.confidence = np.array([float(d.scores.sum()) for d in found])
        else:
            self.embeddings = np.stack([o[recipe.embedding_output].ravel() for o in outputs])
            self.identities = [im.path.parent.name for im in images]

    def score(self, chosen: np.ndarray) -> dict[str, float]:
        """Detectors: faces found, mean confidence breaking ties; recognizers: d'."""
        if self.task == "detection":
            faces = float(self.faces[chosen].sum())
            return {"faces found": faces, "mean confidence": float(self.confidence[chosen].sum()) / faces if faces else 0.0}
        return {"d_prime same vs different": _d_prime(self.embeddings, self.identities, chosen)}


def _ahead(top: float, own: float, margin: float) -> bool:
    return top > own * (1 + margin) + (margin if own <= 0 else 0)


def resampled_share(own: Scorer, other: Scorer, images: int, key: str, margin: float) -> float:
    """Share of bootstrap resamples of the images (the same draw for both) in which `other` is ahead of
    `own` by more than the margin: a difference that rests on one or two images is not ahead in most."""
    rng = np.random.default_rng(0)
    ahead = 0
    for _ in range(RESAMPLES):
        chosen = rng.integers(0, images, images)
        ahead += _ahead(other.score(chosen)[key], own.score(chosen)[key], margin)
    return ahead / RESAMPLES


def check_preprocessing(loaded: LoadedRecipe, onnx_path: Any, images: list[PreparedImage]) -> dict[str, Any]:
    recipe = loaded.recipe
    scorers = {}
    for label, (pre, swap) in variants(recipe.preprocess).items():
        runner = OnnxRuntimeRunner(onnx_path, recipe.model_input, pre)
        runner.activate()
        outputs = [runner.infer(im.pixels[:, ::-1] if swap else im.pixels) for im in images]  # NCHW: axis 1
        runner.deactivate()
        scorers[label] = Scorer(loaded, outputs, images)
    every = np.arange(len(images))
    results = {label: scorer.score(every) for label, scorer in scorers.items()}
    key = next(iter(results["recipe"]))
    best = max(results, key=lambda label: tuple(results[label].values()))
    own, top = results["recipe"][key], results[best][key]
    margin = MARGIN[recipe.evaluate.task]
    ahead = best != "recipe" and _ahead(top, own, margin)
    share = resampled_share(scorers["recipe"], scorers[best], len(images), key, margin) if ahead else None
    worse = share is not None and share >= CONFIDENT_SHARE
    warning = (f"the float model does better with '{best}' ({key} {top:.3g}) than with the recipe's preprocessing "
               f"({own:.3g}) in {share:.0%} of {RESAMPLES} resamples of the {len(images)} images: check "
               "preprocess.channel_order / mean / std" if worse else "")
    cannot_tell = (f"cannot tell: '{best}' scores higher ({key} {top:.3g} vs {own:.3g}), but only in {share:.0%} of "
                   f"{RESAMPLES} resamples of the {len(images)} images (a verdict needs {CONFIDENT_SHARE:.0%}): the "
                   "difference is within what these few images can show" if share is not None and not worse else "")
    return {"metric": key, "results": results, "best": best, "warning": warning, "cannot_tell": cannot_tell,
            "images": len(images), "resampled_share": share}


def step(state: RunState) -> None:
    state.metrics["preprocess_check"] = check_preprocessing(state.loaded, state.artifacts.onnx, state.images)
