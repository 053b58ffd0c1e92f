"""A run's metrics.json as others read it: gates, sweeps, the history and the before/after tables of
the analyses take their figures from this one typed view, not from string paths of their own. The
task's own sections are read by its module (verify/tasks/), through `figures`."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verify.tasks import TASKS, Task


@dataclass(frozen=True)
class OutputFigures:
    cosine: float  # mean over the eval inputs, float vs quantized
    sqnr_db: float
    too_small: bool  # float RMS below float16's smallest normal: not compared, not gated


@dataclass(frozen=True)
class GateLine:
    gate: str
    value: float
    threshold: float
    passed: bool
    skipped: str  # why the gate was not applied ("": it was)


@dataclass(frozen=True)
class RunResults:
    metrics: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path) -> RunResults:
        return cls(json.loads((run_dir / "metrics.json").read_text()))

    @property
    def task(self) -> Task:
        return TASKS[self.metrics["recipe_content"]["evaluate"]["task"]]

    @property
    def outputs(self) -> dict[str, OutputFigures]:
        return {name: OutputFigures(o["cosine"]["mean"], o["sqnr_db"]["mean"], bool(o.get("too_small")))
                for name, o in self.metrics["outputs"].items()}

    def worst_output(self, figure: str) -> float:
        """Over the outputs large enough to compare (NaN when none is)."""
        return min((getattr(o, figure) for o in self.outputs.values() if not o.too_small), default=math.nan)

    @property
    def worst_layer_cosine(self) -> float:
        return float(self.metrics["layers"]["worst_single_cos"])

    @property
    def passed(self) -> bool:
        return bool(self.metrics["passed"])

    @property
    def gates(self) -> list[GateLine]:
        return [GateLine(g["gate"], g["value"], g["threshold"], g["passed"], g.get("skipped", ""))
                for g in self.metrics["gates"]]

    @property
    def created_at(self) -> str:
        return str(self.metrics["created_at"])

    @property
    def tools(self) -> dict[str, str]:
        return dict(self.metrics.get("tools", {}))

    @property
    def rknn_bytes(self) -> int:
        return int(self.metrics["provenance"]["artifact_bytes"])

    @property
    def build_seconds(self) -> float:
        return float(self.metrics["provenance"]["build_seconds"])

    @property
    def npu_ms(self) -> float | None:
        """rknn-toolkit2's NPU time estimate, when the recipe targets a board."""
        return (self.metrics.get("board") or {}).get("npu_ms")


def figures(metrics: dict[str, Any], task: Task) -> dict[str, float]:
    """The figures a sweep row, a before/after table or a calibration resample shows: each output's
    cosine, the worst output's cosine and SQNR, then the task's own (headline first)."""
    outputs = RunResults(metrics).outputs
    return ({f"cosine {name}": o.cosine for name, o in outputs.items()}
            | {"worst output cosine": min(o.cosine for o in outputs.values()),
               "worst output SQNR dB": min(o.sqnr_db for o in outputs.values())}
            | task.figures(metrics))
