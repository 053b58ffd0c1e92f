"""The one interface every engine's runner has (ONNX Runtime, the RKNN simulator, a board, a
source framework): activate / infer(pixels) -> {output name: array} / deactivate.

`pixels` is the model input as the device receives it (model channel order and layout, not
normalised); each runner applies what its engine needs. Runners never compare."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str
    inference_time: float  # seconds of the last infer call

    def activate(self) -> None: ...
    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]: ...
    def deactivate(self) -> None: ...
