"""Preprocessing contract check: does the recipe's channel order and mean/std give the float model
its best task result, or does a common alternative do better (a sign the recipe is wrong)?

Each task scores the float model its own way (Task.preprocess_score: a detector by the faces it finds,
mean confidence breaking ties; a recognizer by d' between same-person and different-person distances);
a task with no score (drift) is not judged. An alternative is called better only when it stays ahead
in 95% of bootstrap resamples of the images; on a handful of images it usually cannot, and the check
says it cannot tell instead of a verdict drawn from noise.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from core.pixels import PreparedImage
from core.recipe import LoadedRecipe, Preprocess
from verify.engines.runners import OnnxRuntimeRunner
from verify.tasks import task_of

if TYPE_CHECKING:
    from verify.run_state import RunState

# a recipe whose settings trail the best alternative by more than the task's margin is flagged, and only
# when it stays ahead in this share of bootstrap resamples of the eval images (paired: one draw
# for both); below it the difference may rest on an image or two, and the check says it cannot tell
RESAMPLES, CONFIDENT_SHARE = 1000, 0.95


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


# a task's figure on any draw of the images (indices, repeats allowed), from the outputs on each image once
Score = Callable[[np.ndarray], dict[str, float]]


def _ahead(top: float, own: float, margin: float) -> bool:
    return top > own * (1 + margin) + (margin if own <= 0 else 0)


def resampled_share(own: Score, other: Score, images: int, key: str, margin: float) -> float:
    """Share of bootstrap resamples of the images (the same draw for both) in which `other` is ahead of
    `own` by more than the margin: a difference that rests on one or two images is not ahead in most."""
    rng = np.random.default_rng(0)
    ahead = 0
    for _ in range(RESAMPLES):
        chosen = rng.integers(0, images, images)
        ahead += _ahead(other(chosen)[key], own(chosen)[key], margin)
    return ahead / RESAMPLES


def check_preprocessing(loaded: LoadedRecipe, onnx_path: Any, images: list[PreparedImage]) -> dict[str, Any]:
    recipe, task = loaded.recipe, task_of(loaded.recipe)
    assert task.preprocess_score is not None  # the step applies to tasks that score the float model
    scorers = {}
    for label, (pre, swap) in variants(recipe.preprocess).items():
        runner = OnnxRuntimeRunner(onnx_path, recipe.model_input, pre)
        runner.activate()
        outputs = [runner.infer(im.pixels[:, ::-1] if swap else im.pixels) for im in images]  # NCHW: axis 1
        runner.deactivate()
        scorers[label] = task.preprocess_score(loaded, outputs, images)
    every = np.arange(len(images))
    results = {label: score(every) for label, score in scorers.items()}
    key = next(iter(results["recipe"]))
    best = max(results, key=lambda label: tuple(results[label].values()))
    own, top = results["recipe"][key], results[best][key]
    margin = task.preprocess_margin
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
