"""MTCNN's P-Net, R-Net or O-Net with the TRAINED weights the `mtcnn` 1.0.0 wheel ships
(mtcnn/assets/weights/<net>.lz4, joblib-pickled Keras weight lists), frozen the way Keras users
export a model: tf.function -> convert_variables_to_constants_v2 -> GraphDef bytes.

Unlike the other seeds this makes no stand-in: the graph is the package's own Keras network class
with the package's own weights, so the recipes built on it are trained (source.trained: true).
The net is read from the file name the recipe asks for: `..._pnet.pb`, `..._rnet.pb`, `..._onet.pb`.
Input `input:0` (NHWC, P-Net of any height and width: the recipe fixes it, one pyramid level per
shape); outputs `Identity:0`, `Identity_1:0` (+ `Identity_2:0` for O-Net) in the package's order.
"""
from __future__ import annotations

from pathlib import Path

from convert.frameworks import import_tensorflow
from core.artifacts import write_bytes_atomic
from core.errors import RkverifyError

# net -> (Keras class in mtcnn.network.<net>, input shape; None = any)
NETS = {"pnet": ("PNet", [None, None, None, 3]), "rnet": ("RNet", [None, 24, 24, 3]),
        "onet": ("ONet", [None, 48, 48, 3])}


def net_of(path: Path) -> str:
    net = path.stem.rsplit("_", 1)[-1]
    if net not in NETS:
        raise RkverifyError(path, "source.path", f"file name names no MTCNN net ('{net}')",
                            f"end the file name in one of: {', '.join(f'_{n}.pb' for n in NETS)}")
    return net


def make(path: Path) -> None:
    tf = import_tensorflow()
    import importlib

    from mtcnn.utils.tensorflow import load_weights  # reads mtcnn/assets/weights/<net>.lz4
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    net = net_of(path)
    class_name, shape = NETS[net]
    tf.keras.backend.clear_session()
    # the package's own class; a fixed name keeps the graph (its sha256) the same whatever ran before
    model = getattr(importlib.import_module(f"mtcnn.network.{net}"), class_name)(name=net)
    model.build()
    model.set_weights(load_weights(f"{net}.lz4"))
    spec = tf.TensorSpec(shape, tf.float32, name="input")
    concrete = tf.function(lambda x: model(x)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    # the freezer's node order depends on what the process traced before: sorted, the file (and so
    # its sha256) is the same whichever nets were made first
    nodes = sorted(graph.node, key=lambda node: node.name)
    del graph.node[:]
    graph.node.extend(nodes)
    write_bytes_atomic(path, graph.SerializeToString(deterministic=True))
