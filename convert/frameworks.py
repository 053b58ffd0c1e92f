"""Import a source framework only when a recipe needs it, with one clear error when it is missing."""
from __future__ import annotations

import os
from types import ModuleType

from core.errors import RkverifyError

FIELD = "source.framework"
INSTALL = "pip install -r requirements/base.txt (tox.ini does), or convert the model to ONNX elsewhere " \
          "and set source.framework: onnx"


def import_tensorflow() -> ModuleType:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up banner is noise here
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise RkverifyError("environment", FIELD, f"a keras-pb or tflite source needs tensorflow, which does not import ({exc})",
                            INSTALL) from None
    tf.get_logger().setLevel("ERROR")  # TF1-API deprecation notices on every graph import
    return tf


def import_tf2onnx() -> ModuleType:
    import_tensorflow()
    try:
        import tf2onnx
    except ImportError as exc:
        raise RkverifyError("environment", FIELD, f"a keras-pb or tflite source needs tf2onnx, which does not import ({exc})",
                            INSTALL) from None
    return tf2onnx


def import_mxnet() -> ModuleType:
    import numpy as np

    # MXNet 1.9's MKLDNN kernels hand back NDArrays that asnumpy() refuses ("can't generate
    # TBlob for MKLDNN data") after a bound Module's forward; the plain CPU kernels are exact
    os.environ.setdefault("MXNET_MKLDNN_ENABLED", "0")
    if "bool" not in vars(np):
        np.bool = bool  # type: ignore[attr-defined]  # mxnet 1.9.1 still uses the alias numpy 1.24 removed
    try:
        import mxnet as mx
    except (ImportError, OSError) as exc:  # OSError: its bundled libmxnet.so fails to load
        raise RkverifyError("environment", FIELD, f"an mxnet source needs mxnet, which does not import ({exc})",
                            INSTALL) from None
    return mx
