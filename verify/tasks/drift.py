"""task: drift, for any model the toolkit converts: per-output and per-layer drift only. No task
figures and no preprocessing verdict: nothing here assumes what the outputs mean."""
from __future__ import annotations

from verify.run_state import Step, always
from verify.tasks.images import check_eval_images, eval_images
from verify.tasks.task import Task

TASK = Task(
    name="drift",
    description="per-output and per-layer drift of any model",
    check_recipe=check_eval_images,
    input_steps=(Step("prepare eval images", always, eval_images),),
    report_note="per-output and per-layer drift only. No task figures (nothing here assumes what the outputs "
                "mean), and the preprocessing is not judged (no task metric to judge it by).",
)
