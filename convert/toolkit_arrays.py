"""rknn-toolkit2 2.5.0 writes into weight arrays it reads from the ONNX graph, but onnx's
numpy_helper.to_array hands out read-only ones (np.frombuffer over the protobuf's raw_data bytes,
how every initializer of an onnxsim / tf2onnx / torch.onnx export is stored): some graph rules and
the hybrid proposal then fail with "assignment destination is read-only". The arrays are made
writeable copies where they cross into the toolkit."""
from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

_ORIGINAL = numpy_helper.to_array


def _writable_to_array(tensor: Any, base_dir: str = "") -> np.ndarray:
    array = _ORIGINAL(tensor, base_dir)
    return array if array.flags.writeable else array.copy()


def writable_initializers() -> None:
    """From now on, onnx.numpy_helper.to_array returns arrays the toolkit may write into."""
    numpy_helper.to_array = _writable_to_array
