"""What the steps of one verification run share: the recipe and its artifacts, the live runners,
the eval inputs and every engine's outputs on them, and the metrics being filled in; and what a step is."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from convert.pipeline import Artifacts
    from core.pixels import PreparedImage
    from core.recipe import LoadedRecipe, Recipe
    from core.runner import Runner
    from verify.face.detection_agreement import Busiest
    from verify.face.recognition import Detector, FacePass

Outputs = list[dict[str, "np.ndarray"]]  # one engine's outputs, per eval input


@dataclass
class RunState:
    loaded: LoadedRecipe
    artifacts: Artifacts
    run_dir: Path
    workers: int
    ray_address: str | None  # dataset-sized work as Ray tasks ("local": a Ray instance on this machine)
    runners: dict[str, list[Runner]]  # role ("float", "quantized", "detector") -> runners, activated per step
    aligner: Detector | None
    metrics: dict[str, Any]
    timings: dict[str, float]
    images: list[PreparedImage] = field(default_factory=list)
    # engine -> outputs per image: "native", "float", "float16", "quantized", "board"
    outputs: dict[str, Outputs] = field(default_factory=dict)
    native_name: str | None = None  # the source framework's runner, when it has one
    face_pass: FacePass | None = None
    layers: pd.DataFrame | None = None  # accuracy_analysis' whole table
    overlay: Busiest | None = None  # detections drawn over an eval image in the report

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def reports_dir(self) -> Path:
        """The reports folder: a run's folder is <reports>/<recipe>/<run id> (while it runs, a temp
        folder beside that)."""
        return self.run_dir.parent.parent

    @property
    def log_file(self) -> Path:
        return self.run_dir / "toolkit.log"

    @property
    def on_simulator(self) -> bool:
        return self.recipe.target.runtime == "simulator"


@dataclass(frozen=True)
class Step:
    title: str  # the console line and timings key; {inputs}, {native}, ... filled in from the state
    applies: Callable[[RunState], bool]
    run: Callable[[RunState], None]
    runners: tuple[str, ...] = ()  # live runners it needs active: "float", "quantized", "detector", "native"


def always(_: RunState) -> bool:
    return True
