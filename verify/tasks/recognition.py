"""task: recognition, face embedders: faces found and aligned by a detector recipe, embedded by the
float and the quantized model, verified on pairs (LFW View 2 by default)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from verify.run_state import Step, always
from verify.tasks.task import Task

if TYPE_CHECKING:
    from core.pixels import PreparedImage
    from core.recipe import LoadedRecipe, Recipe
    from core.runner import Runner
    from verify.run_state import RunState


def check_recipe(recipe: Recipe) -> None:
    verification, outputs = recipe.evaluate.verification, recipe.outputs
    if verification is None:
        raise ValueError("a recognition recipe needs a 'verification' block (dataset, faces)")
    if verification.embedding is None and len(outputs) != 1:
        raise ValueError(f"evaluate.verification.embedding|the model has {len(outputs)} outputs "
                         f"({', '.join(outputs)}): name the one that is the face embedding, or use "
                         "evaluate.task: drift when none is")
    if verification.embedding is not None and verification.embedding not in outputs:
        raise ValueError(f"evaluate.verification.embedding|'{verification.embedding}' is not one of the "
                         f"outputs ({', '.join(outputs)})")


def verify_faces(state: RunState) -> None:
    """The face pass over every image of the evaluated pairs (in the workers), then the pairs'
    figures; the eval inputs of the later steps are the first aligned faces."""
    from verify.engines.cache import SHARED_CACHE_DIR
    from verify.engines.run_models import recognizer_models
    from verify.face.recognition import FacePass, verification_metrics

    models = recognizer_models(state.loaded, state.artifacts, state.runners["float"][0], state.runners["quantized"][0])
    face_pass = FacePass(state.loaded, models, state.aligner, SHARED_CACHE_DIR, state.log_file, state.workers,
                         state.ray_address)
    state.metrics["verification"], state.images = verification_metrics(
        state.loaded, face_pass, state.run_dir, faces_for_drift=state.recipe.evaluate.count,
        calibration=state.artifacts.calibration)
    state.face_pass = face_pass


def measure_variant(state: RunState, runner: Runner, outputs: list[dict[str, np.ndarray]], variant: str,
                    scratch: Path, verification: bool) -> dict[str, Any]:
    """Verification on the recipe's fixed, seeded subset of pairs: analyses rank many variants, they
    must not each cost a whole dataset."""
    from core.artifacts import sha256_bytes
    from verify.face.recognition import Model, choose_pairs, pair_subset, verification_metrics

    face_pass, cfg = state.face_pass, state.recipe.evaluate.verification
    if face_pass is None or cfg is None or not verification:
        return {}
    subset = pair_subset(choose_pairs(cfg, state.loaded.path)[0], cfg.analysis_pairs)
    key = sha256_bytes(f"{face_pass.recognizers['quantized'].key}:{variant}".encode())
    variant_pass = face_pass.with_quantized(Model(key, None, runner))
    figures, _ = verification_metrics(state.loaded, variant_pass, scratch, subset)
    return {"verification": figures}


def figures(metrics: dict[str, Any]) -> dict[str, float]:
    v = metrics["verification"]
    return {"accuracy": v["quantized"]["accuracy"]["mean"], "float accuracy": v["float"]["accuracy"]["mean"],
            "accuracy drop": v["accuracy_drop"], "embedding cosine": v["embedding_drift"]["cosine_mean"]}


def sample_sizes(metrics: dict[str, Any]) -> list[tuple[str, int]]:
    return [("face verification", metrics["verification"]["images"])]


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


def preprocess_score(loaded: LoadedRecipe, outputs: list[dict[str, np.ndarray]],
                     images: list[PreparedImage]) -> dict[str, float]:
    """d' between same-person and different-person embedding distances on the eval faces (identity =
    the photo's folder, LFW layout)."""
    embeddings = np.stack([o[loaded.recipe.embedding_output].ravel() for o in outputs])
    return {"d_prime same vs different": _d_prime(embeddings, [im.path.parent.name for im in images])}


TASK = Task(
    name="recognition",
    description="face verification on pairs, float vs quantized embeddings",
    check_recipe=check_recipe,
    input_steps=(Step("face verification, float vs quantized", always, verify_faces,
                      ("float", "quantized", "detector")),),
    gates={"min_quantized_accuracy": ("quantized verification accuracy (k-fold mean)",
                                      lambda m: m["verification"]["quantized"]["accuracy"]["mean"]),
           "max_accuracy_drop": ("float minus quantized verification accuracy",
                                 lambda m: m["verification"]["accuracy_drop"]),
           "min_embedding_cosine": ("mean cosine of float vs quantized embeddings",
                                    lambda m: m["verification"]["embedding_drift"]["cosine_mean"])},
    measure_variant=measure_variant,
    figures=figures,
    headline="accuracy",
    sample_sizes=sample_sizes,
    preprocess_score=preprocess_score,
    preprocess_margin=0.10,
)
