"""task: recognition, face embedders: faces found and aligned by a detector recipe, embedded by the
float and the quantized model, verified on pairs (LFW View 2 by default)."""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from verify.run_state import Step, always
from verify.tasks.task import Task

if TYPE_CHECKING:
    from core.pixels import PreparedImage
    from core.recipe import LoadedRecipe, Recipe
    from core.runner import Runner
    from verify.face.lfw import PairSet
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
    from core.workspace import cache_dir
    from verify.engines.run_models import recognizer_models
    from verify.face.identification.step import enrolled_with
    from verify.face.recognition import FacePass, verification_metrics

    if state.recipe.evaluate.identification.enabled:
        enrolled_with(state)  # an unreadable earlier gallery is refused before the face pass, not after it
    models = recognizer_models(state.loaded, state.artifacts, state.runners["float"][0], state.runners["quantized"][0])
    face_pass = FacePass(state.loaded, models, state.aligner, cache_dir(), state.log_file, state.workers,
                         state.ray_address, stages=True)
    state.metrics["verification"], state.images = verification_metrics(
        state.loaded, face_pass, state.run_dir, faces_for_drift=state.recipe.evaluate.count,
        calibration=state.artifacts.calibration)
    state.face_pass = face_pass


def identify(state: RunState) -> None:
    from verify.face.identification.step import step

    step(state)


def identify_builds(state: RunState) -> None:
    from verify.face.identification.step import builds_step

    builds_step(state)


def fix_to_identify(state: RunState) -> bool:
    from verify.face.identification.step import proposed_fix

    return bool(proposed_fix(state))


def analysis_pairs(state: RunState) -> PairSet | None:
    """The fixed, seeded subset of pairs analyses measure variants on: they rank many variants, they
    must not each cost a whole dataset (None: no face pass)."""
    from verify.face.recognition import choose_pairs, pair_subset

    cfg = state.recipe.evaluate.verification
    return pair_subset(choose_pairs(cfg, state.loaded.path)[0], cfg.analysis_pairs) if cfg and state.face_pass else None


def measure_variant(state: RunState, runner: Runner, outputs: list[dict[str, np.ndarray]], variant: str,
                    scratch: Path, verification: bool) -> dict[str, Any]:
    """Verification of a variant on the analysis subset of pairs."""
    from core.artifacts import sha256_bytes
    from verify.face.recognition import Model, verification_metrics

    face_pass = state.face_pass
    if face_pass is None or not verification:
        return {}
    key = sha256_bytes(f"{face_pass.recognizers['quantized'].key}:{variant}".encode())
    variant_pass = face_pass.with_quantized(Model(key, None, runner))
    figures, _ = verification_metrics(state.loaded, variant_pass, scratch, analysis_pairs(state))
    return {"verification": figures}


def as_variant(state: RunState) -> dict[str, Any]:
    """The run's own verification on the analysis subset, from its cached embeddings (no new pass)."""
    from verify.face.recognition import verification_metrics

    subset = analysis_pairs(state)
    if subset is None or state.face_pass is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="rkverify-subset-") as scratch:
        figures, _ = verification_metrics(state.loaded, state.face_pass, Path(scratch), subset)
    return {"verification": figures}


def variant_basis(metrics: dict[str, Any]) -> str:
    verification = metrics.get("verification")
    if verification is None:
        return ""
    which = "the analysis subset" if verification["subset"] else "every pair"
    return f"{verification['pairs']} pairs ({which}, evaluate.verification.analysis_pairs)"


def _first_dir(row: dict[str, Any]) -> float:
    """DIR at the first FAR (NaN, a failed gate, when the run had no unknown probes to measure it on)."""
    return row["dir_at_far"][0]["dir"] if row["dir_at_far"] else math.nan


LEAKAGE_DATASETS = ("lfw",)  # evaluated on these, calibration leakage is gated at 0 unless the recipe says otherwise


def default_gates(recipe: Recipe) -> dict[str, float]:
    """Calibration leakage (images both calibrated on and evaluated) at 0 on LFW."""
    verification = recipe.evaluate.verification
    return {"max_calibration_overlap": 0} if verification and verification.dataset.name in LEAKAGE_DATASETS else {}


def figures(metrics: dict[str, Any]) -> dict[str, float]:
    v = metrics["verification"]
    return {"accuracy": v["quantized"]["accuracy"]["mean"], "float accuracy": v["float"]["accuracy"]["mean"],
            "accuracy drop": v["accuracy_drop"], "embedding cosine": v["embedding_drift"]["cosine_mean"]}


def sample_sizes(metrics: dict[str, Any]) -> list[tuple[str, int]]:
    return [("face verification", metrics["verification"]["images"])]


def _d_prime(embeddings: np.ndarray, identities: list[str], chosen: np.ndarray) -> float:
    """d' over the pairs of the images at `chosen` (a resample repeats images: an image is never
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


def preprocess_score(loaded: LoadedRecipe, outputs: list[dict[str, np.ndarray]],
                     images: list[PreparedImage]) -> Callable[[np.ndarray], dict[str, float]]:
    """d' between same-person and different-person embedding distances on the eval faces (identity =
    the photo's folder, LFW layout)."""
    embeddings = np.stack([o[loaded.recipe.embedding_output].ravel() for o in outputs])
    identities = [im.path.parent.name for im in images]
    return lambda chosen: {"d_prime same vs different": _d_prime(embeddings, identities, chosen)}


TASK = Task(
    name="recognition",
    description="face verification on pairs, float vs quantized embeddings",
    check_recipe=check_recipe,
    input_steps=(Step("face verification, float vs quantized", always, verify_faces,
                      ("float", "quantized", "detector")),
                 Step("face identification (1:N search), float vs quantized vs cross-enrolled",
                      lambda s: s.recipe.evaluate.identification.enabled, identify, ("float", "quantized", "detector"))),
    late_steps=(Step("face identification: plain build vs the proposed fix", fix_to_identify, identify_builds,
                     ("float", "quantized", "detector")),),
    gates={"min_quantized_accuracy": ("quantized verification accuracy (k-fold mean)",
                                      lambda m: m["verification"]["quantized"]["accuracy"]["mean"]),
           "max_accuracy_drop": ("float minus quantized verification accuracy",
                                 lambda m: m["verification"]["accuracy_drop"]),
           "min_embedding_cosine": ("mean cosine of float vs quantized embeddings",
                                    lambda m: m["verification"]["embedding_drift"]["cosine_mean"]),
           "max_calibration_overlap": ("images both calibrated on and evaluated (content hash): leakage",
                                       lambda m: m["verification"]["calibration_leakage"]["overlap"]),
           "min_rank1": ("quantized rank-1 identification (gallery and probes quantized)",
                         lambda m: m["identification"]["settings"]["quantized/quantized"]["rank1"]),
           "max_rank1_drop": ("float minus quantized rank-1 identification",
                              lambda m: m["identification"]["rank1_drop"]),
           "max_cross_enrolment_drop": ("rank-1 drop when a float-enrolled gallery is searched with the quantized "
                                        "model", lambda m: m["identification"]["cross_enrolment_drop"]),
           "min_dir_at_far": ("quantized open-set DIR at the first identification FAR (1%)",
                              lambda m: _first_dir(m["identification"]["settings"]["quantized/quantized"]))},
    default_gates=default_gates,
    run_only_gates=frozenset({"max_calibration_overlap"}),
    measure_variant=measure_variant,
    as_variant=as_variant,
    variant_basis=variant_basis,
    figures=figures,
    headline="accuracy",
    sample_sizes=sample_sizes,
    preprocess_score=preprocess_score,
    preprocess_margin=0.10,
)
