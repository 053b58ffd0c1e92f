"""FaceNet's Inception-ResNet-v1 (160x160 -> 128-d, as Keras FaceNet ports build it) with random
weights, frozen the way Keras users export it: tf.function -> convert_variables_to_constants_v2.
Input tensor `input:0` (N,160,160,3); output `Identity:0` (N,128), before L2 normalisation.
"""
from __future__ import annotations

from pathlib import Path

from convert.frameworks import import_tensorflow
from core.artifacts import write_bytes_atomic


def _conv_bn(layers, x, filters, kernel, strides=1, padding="same", activation="relu"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization(axis=3, momentum=0.995, epsilon=0.001, scale=False)(x)
    return layers.Activation(activation)(x) if activation else x


def _inception_resnet_block(layers, x, scale, branch_specs, activation="relu"):
    """Parallel conv branches, concatenated, projected back to x's channels, scaled, added to x."""
    branches = []
    for spec in branch_specs:
        branch = x
        for filters, kernel in spec:
            branch = _conv_bn(layers, branch, filters, kernel)
        branches.append(branch)
    mixed = layers.Concatenate(axis=3)(branches)
    up = layers.Conv2D(x.shape[3], 1, use_bias=True)(mixed)
    x = layers.Add()([x, layers.Rescaling(scale)(up)])
    return layers.Activation(activation)(x) if activation else x


BLOCK35 = [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)]]
BLOCK17 = [[(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))]]
BLOCK8 = [[(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))]]


def model(keras, size: int = 160, embedding: int = 128):
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = _conv_bn(layers, inputs, 32, 3, strides=2, padding="valid")
    x = _conv_bn(layers, x, 32, 3, padding="valid")
    x = _conv_bn(layers, x, 64, 3)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = _conv_bn(layers, x, 80, 1, padding="valid")
    x = _conv_bn(layers, x, 192, 3, padding="valid")
    x = _conv_bn(layers, x, 256, 3, strides=2, padding="valid")
    for _ in range(5):
        x = _inception_resnet_block(layers, x, 0.17, BLOCK35)
    x = layers.Concatenate(axis=3)([  # reduction A
        _conv_bn(layers, x, 384, 3, strides=2, padding="valid"),
        _conv_bn(layers, _conv_bn(layers, _conv_bn(layers, x, 192, 1), 192, 3), 256, 3, strides=2, padding="valid"),
        layers.MaxPooling2D(3, strides=2)(x)])
    for _ in range(10):
        x = _inception_resnet_block(layers, x, 0.1, BLOCK17)
    x = layers.Concatenate(axis=3)([  # reduction B
        _conv_bn(layers, _conv_bn(layers, x, 256, 1), 384, 3, strides=2, padding="valid"),
        _conv_bn(layers, _conv_bn(layers, x, 256, 1), 256, 3, strides=2, padding="valid"),
        _conv_bn(layers, _conv_bn(layers, _conv_bn(layers, x, 256, 1), 256, 3), 256, 3, strides=2, padding="valid"),
        layers.MaxPooling2D(3, strides=2)(x)])
    for _ in range(5):
        x = _inception_resnet_block(layers, x, 0.2, BLOCK8)
    x = _inception_resnet_block(layers, x, 1.0, BLOCK8, activation=None)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(embedding, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.995, epsilon=0.001, scale=False)(x)
    return keras.Model(inputs, x, name="inception_resnet_v1")


def make(path: Path) -> None:
    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf.keras.backend.clear_session()  # layer names (and so the file) restart from the same counters
    tf.keras.utils.set_random_seed(0)
    net = model(tf.keras)
    spec = tf.TensorSpec([None, 160, 160, 3], tf.float32, name="input")
    concrete = tf.function(lambda x: net(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    write_bytes_atomic(path, frozen.graph.as_graph_def().SerializeToString(deterministic=True))
