"""A model the project does not ship, for the README's "Your own model" walk-through: Keras's MobileNet
(alpha 0.25, 224x224, 1000 classes) with random weights (nothing is downloaded), frozen the way Keras
users export for the toolkit (tf.function -> convert_variables_to_constants_v2) with a dynamic batch.
Random weights prove nothing about accuracy: the walk-through measures conversion drift only.

    python -m tests.keras_mobilenet my_models/mobilenet.pb
"""
from __future__ import annotations

import sys
from pathlib import Path

from convert.frameworks import import_tensorflow
from core.artifacts import write_bytes_atomic


def make(path: Path) -> Path:
    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    net = tf.keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, weights=None, classes=1000)
    spec = tf.TensorSpec([None, 224, 224, 3], tf.float32, name="image")
    concrete = tf.function(lambda x: net(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, frozen.graph.as_graph_def().SerializeToString(deterministic=True))
    return path


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "my_models/mobilenet.pb")))
