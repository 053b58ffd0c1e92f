"""Calibration stability: how much the figures move when the model is rebuilt on random halves of
its calibration set (a set too small or too uneven moves them a lot)."""
from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convert.pipeline import Artifacts
from convert.rknn_build import quantized_build
from core.recipe import LoadedRecipe
from verify.analyses.sensitivity import measure_build
from verify.analyses.variants import Measure, basis, run_as_variants_are_measured, variant_measure
from verify.results import figures
from verify.tasks import task_of

if TYPE_CHECKING:
    from verify.run_state import RunState


def resampled_stability(loaded: LoadedRecipe, artifacts: Artifacts, measure: Measure, resamples: int,
                        full: dict[str, Any], log_file: Path) -> dict[str, Any]:
    """Rebuild on `resamples` random halves of the calibration set (seeded) and measure each."""
    task = task_of(loaded.recipe)
    names = artifacts.calibration_list.read_text().split()
    rng = random.Random(0)
    runs = []
    for index in range(resamples):
        subset = sorted(rng.sample(names, max(1, len(names) // 2)))
        with tempfile.TemporaryDirectory(prefix="rkverify-resample-") as scratch:
            listing = Path(scratch) / "dataset.txt"
            listing.write_text("".join(f"{artifacts.calibration_list.parent / n}\n" for n in subset))
            toolkit = quantized_build(loaded, artifacts.onnx, listing, log_file)
            runs.append(figures(measure_build(loaded, toolkit, measure, f"resample-{index}-{'+'.join(subset)}",
                                                   log_file), task))
    keys = list(runs[0]) if runs else []
    return {"subset_size": max(1, len(names) // 2), "resamples": resamples, "runs": runs, "full": figures(full, task),
            "spread": {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs])),
                           "min": float(np.min([r[k] for r in runs])), "max": float(np.max([r[k] for r in runs]))}
                       for k in keys}}


def step(state: RunState) -> None:
    # the resamples are measured on the analysis subset: the full set's column is the run on that subset too
    full = run_as_variants_are_measured(state)
    state.metrics["calibration"]["stability"] = resampled_stability(
        state.loaded, state.artifacts, variant_measure(state), state.recipe.analysis.calibration_resamples, full,
        state.log_file) | {"basis": basis(state, full)}
