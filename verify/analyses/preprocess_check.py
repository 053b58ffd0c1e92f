"""Preprocessing contract check: does the recipe's channel order and mean/std give the float model
its best task result, or does a common alternative do better (a sign the recipe is wrong)?

Each task scores the float model its own way (Task.preprocess_score: faces found by a detector, d'
of a recognizer's embeddings); a task with no score (drift) is not judged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.pixels import PreparedImage
from core.recipe import LoadedRecipe, Preprocess
from verify.engines.runners import OnnxRuntimeRunner
from verify.tasks import task_of

if TYPE_CHECKING:
    from verify.run_state import RunState


def variants(pre: Preprocess) -> dict[str, tuple[Preprocess, bool]]:
    """label -> (mean/std preprocessing, swap channels?); the recipe's own first."""
    swapped = "RGB" if pre.channel_order == "BGR" else "BGR"
    options = {"recipe": (pre, False), f"channels swapped ({swapped})": (pre, True)}
    for label, mean, std in (("(x-127.5)/128", 127.5, 128.0), ("x/255", 0.0, 255.0), ("raw pixels", 0.0, 1.0)):
        candidate = pre.model_copy(update={"mean": [mean] * 3, "std": [std] * 3})
        if candidate != pre:
            options[label] = (candidate, False)
    return options


def check_preprocessing(loaded: LoadedRecipe, onnx_path: Any, images: list[PreparedImage]) -> dict[str, Any]:
    recipe, task = loaded.recipe, task_of(loaded.recipe)
    assert task.preprocess_score is not None  # the step applies to tasks that score the float model
    results = {}
    for label, (pre, swap) in variants(recipe.preprocess).items():
        runner = OnnxRuntimeRunner(onnx_path, recipe.model_input, pre)
        runner.activate()
        outputs = [runner.infer(im.pixels[:, ::-1] if swap else im.pixels) for im in images]  # NCHW: axis 1
        runner.deactivate()
        results[label] = task.preprocess_score(loaded, outputs, images)
    key = next(iter(results["recipe"]))
    best = max(results, key=lambda label: tuple(results[label].values()))
    own, top = results["recipe"][key], results[best][key]
    margin = task.preprocess_margin
    worse = best != "recipe" and top > own * (1 + margin) + (margin if own <= 0 else 0)
    warning = (f"the float model does better with '{best}' ({key} {top:.3g}) than with the recipe's preprocessing "
               f"({own:.3g}): check preprocess.channel_order / mean / std" if worse else "")
    return {"metric": key, "results": results, "best": best, "warning": warning}


def step(state: RunState) -> None:
    state.metrics["preprocess_check"] = check_preprocessing(state.loaded, state.artifacts.onnx, state.images)
