"""How a rebuilt variant of the run's model (a calibration resample, a hybrid candidate, the
proposed fix) is measured: on the run's own inputs and task figures, so its figures compare with
the run's."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core.compare import agreement_per_input, summarise_outputs
from core.runner import Runner
from verify.engines.run_models import hybrid_model
from verify.engines.runners import run_all
from verify.face.recognition import verification_metrics
from verify.run_state import RunState
from verify.tasks import task_of


class Measure(Protocol):
    """measure(runner, variant_key, scratch_dir) -> metrics with "outputs" and the task's own sections
    (verification on the recipe's fixed subset of pairs; `verification=False` skips it)."""

    def __call__(self, runner: Runner, variant: str, scratch: Path, verification: bool = True) -> dict[str, Any]: ...


def run_as_variants_are_measured(state: RunState) -> dict[str, Any]:
    """The run's own quantized figures on what variants are measured on (a recognizer: the analysis
    subset of pairs), so a table of variants compares like with like; no new pass over the images."""
    return {"outputs": state.metrics["outputs"]} | task_of(state.recipe).as_variant(state)


def basis(state: RunState, metrics: dict[str, Any]) -> str:
    """What a variant table's figures rest on, in words."""
    inputs = f"the {len(state.images)} eval inputs"
    task_basis = task_of(state.recipe).variant_basis(metrics)
    return f"{task_basis} and {inputs}" if task_basis else inputs


# whole_set(float_layers) -> verification figures of that hybrid variant on every pair (None: no dataset)
WholeSet = Callable[[list[str]], dict[str, Any] | None]


def variant_measure(state: RunState) -> Measure:
    """A variant on the run's eval inputs, and on its task's figures as the task measures a variant."""
    recipe, task = state.recipe, task_of(state.recipe)

    def measure(runner: Runner, variant: str, scratch: Path, verification: bool = True) -> dict[str, Any]:
        out, _ = run_all(runner, state.images)
        metrics: dict[str, Any] = {"outputs": summarise_outputs(agreement_per_input(recipe.outputs,
                                                                                    state.outputs["float"], out))}
        if task.measure_variant is not None:
            metrics |= task.measure_variant(state, runner, out, variant, scratch, verification)
        return metrics

    return measure


def fix_on_every_pair(state: RunState) -> WholeSet:
    """Verification of a hybrid variant on every pair, its builds and embeddings in the workers."""
    face_pass = state.face_pass
    assert face_pass is not None

    def whole_set(float_layers: list[str]) -> dict[str, Any]:
        variant, model = hybrid_model(state, float_layers)
        with tempfile.TemporaryDirectory(prefix="rkverify-fix-") as scratch:
            figures, _ = verification_metrics(variant, face_pass.with_quantized(model), Path(scratch))
        return {k: figures[k] for k in ("quantized", "accuracy_drop", "quantized_accuracy_at_float_threshold",
                                        "embedding_drift", "pass")} | {"flipped_pairs": len(figures["flipped_pairs"])}

    return whole_set
