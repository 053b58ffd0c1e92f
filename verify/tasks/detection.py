"""task: detection, RetinaFace detectors (decoders: 'pytorch', 'insightface'): float and quantized
detections decoded and matched image by image."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from verify.run_state import Step, always
from verify.tasks.images import check_eval_images, eval_images
from verify.tasks.task import Task

if TYPE_CHECKING:
    import onnx

    from core.pixels import PreparedImage
    from core.recipe import LoadedRecipe, Recipe
    from core.runner import Runner
    from verify.run_state import RunState


def check_recipe(recipe: Recipe) -> None:
    check_eval_images(recipe)
    cfg, outputs = recipe.evaluate.detection, recipe.outputs
    if cfg.decoder == "pytorch" and len(outputs) != 3:
        raise ValueError(f"outputs|task: detection decodes RetinaFace's three outputs (loc, conf, landmarks), "
                         f"this recipe names {len(outputs)}; for InsightFace's per-stride outputs set "
                         "evaluate.detection.decoder: insightface; for any other model use evaluate.task: drift")
    if cfg.decoder == "insightface" and (len(outputs) != 3 * len(cfg.steps) or len(cfg.anchor_scales) != len(cfg.steps)):
        raise ValueError(f"outputs|the insightface decoder reads (class, box, landmark) per stride: "
                         f"{3 * len(cfg.steps)} outputs for steps {cfg.steps}, and one anchor_scales "
                         "entry per stride")


def check_graph(model: onnx.ModelProto, loaded: LoadedRecipe) -> None:
    """One prediction per anchor: a model whose outputs do not fit the recipe's anchor layout is
    refused before the build, not with a crash after it."""
    from core.errors import RkverifyError

    recipe = loaded.recipe
    if recipe.evaluate.detection.decoder != "pytorch":
        return  # the insightface layout's per-stride maps are checked by its decoder
    first = next(o for o in model.graph.output if o.name == recipe.outputs[0])
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in first.type.tensor_type.shape.dim]
    if not dims or 0 in dims:
        return  # shape unknown here: the decoder checks it on the outputs
    predictions = math.prod(dims) // dims[-1]
    height, width = recipe.model_input.height_width
    anchors = recipe.evaluate.detection.anchor_count(height, width)
    if predictions != anchors:
        raise RkverifyError(loaded.path, "evaluate.detection", f"output '{first.name}' {dims} gives {predictions} "
                            f"predictions, the anchor layout (steps {recipe.evaluate.detection.steps}, min_sizes at "
                            f"{height}x{width}) gives {anchors} anchors", "set evaluate.detection.steps / min_sizes "
                            "to the model's (RetinaFace-style decoding), or use evaluate.task: drift")


def agreement(state: RunState) -> None:
    from verify.face.detection_agreement import detection_agreement

    state.metrics["detection"], state.overlay = detection_agreement(state.loaded, state.images,
                                                                    state.outputs["float"], state.outputs["quantized"])


def measure_variant(state: RunState, runner: Runner, outputs: list[dict[str, np.ndarray]], variant: str,
                    scratch: Path, verification: bool) -> dict[str, Any]:
    from verify.face.detection_agreement import detection_agreement

    summary, _ = detection_agreement(state.loaded, state.images, state.outputs["float"], outputs)
    return {"detection": summary}


def figures(metrics: dict[str, Any]) -> dict[str, float]:
    d = metrics["detection"]
    return {"match rate": d["match_rate"], "mean IoU": d["mean_iou"],
            "face-anchor cosine": min(d["foreground_cosine"].values())}


def sample_sizes(metrics: dict[str, Any]) -> list[tuple[str, int]]:
    # the faces come from the images where the float model finds any
    return [("detection agreement, face-anchor cosine",
             sum(1 for d in metrics["detection"]["per_image"] if d["reference_faces"]))]


def preprocess_score(loaded: LoadedRecipe, outputs: list[dict[str, np.ndarray]],
                     images: list[PreparedImage]) -> Callable[[np.ndarray], dict[str, float]]:
    """Faces found on the eval images (mean confidence breaking ties)."""
    from verify.face import detection

    recipe = loaded.recipe
    found = [detection.decode(o, recipe.outputs, recipe.evaluate.detection, recipe.model_input.height_width,
                              im.scale) for o, im in zip(outputs, images)]
    faces = np.array([len(d.scores) for d in found], dtype=float)
    confidence = np.array([float(d.scores.sum()) for d in found])

    def score(chosen: np.ndarray) -> dict[str, float]:
        total = float(faces[chosen].sum())
        return {"faces found": total, "mean confidence": float(confidence[chosen].sum()) / total if total else 0.0}

    return score


TASK = Task(
    name="detection",
    description="RetinaFace detections, float vs quantized",
    check_recipe=check_recipe,
    input_steps=(Step("prepare eval images", always, eval_images),),
    agreement_steps=(Step("detection agreement", always, agreement),),
    gates={"min_foreground_cosine": ("lowest box/landmark cosine on face anchors (float score > threshold)",
                                     lambda m: min(m["detection"]["foreground_cosine"].values())),
           "min_detection_match_rate": ("share of float faces matched by quantized (IoU)",
                                        lambda m: m["detection"]["match_rate"])},
    measure_variant=measure_variant,
    as_variant=lambda state: {"detection": state.metrics["detection"]},
    figures=figures,
    headline="match rate",
    sample_sizes=sample_sizes,
    preprocess_score=preprocess_score,
    preprocess_margin=0.02,
    check_graph=check_graph,
)
