"""How many images each figure of a run rests on; the report and the console warn below MIN_IMAGES."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verify.tasks import Task

MIN_IMAGES = 5  # below this one odd photo moves a figure: a cosine or a match rate is an anecdote


def sample_sizes(metrics: dict[str, Any], task: Task) -> list[dict[str, Any]]:
    """One row per figure family the run measured: what it is, on how many images, too few or not."""
    rows = [("per-output agreement, cosine between different inputs, stages", len(metrics["eval_images"])),
            ("calibration (the quantization ranges)", metrics["calibration"]["used"]), *task.sample_sizes(metrics)]
    if "layers" in metrics:
        rows.append(("per-layer drift (accuracy_analysis)", metrics["layers"]["images"]))
    return [{"figure": figure, "images": count, "few": count < MIN_IMAGES} for figure, count in rows]


def few_lines(metrics: dict[str, Any]) -> list[str]:
    """The warnings, one line each (runs rendered before sample sizes were recorded have none)."""
    return [f"{s['figure']} rests on {s['images']} image{'' if s['images'] == 1 else 's'} (fewer than {MIN_IMAGES})"
            for s in metrics.get("sample_sizes", []) if s["few"]]
