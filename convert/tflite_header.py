"""An integer-quantized TFLite told from its bytes, before TensorFlow is imported or anything is copied
(the interpreter's check comes after ~17 s of imports and conversion).

A .tflite is a FlatBuffer (schema: tensorflow/lite/schema/schema.fbs): Model.subgraphs[].tensors[],
each Tensor with a `type` (TensorType) and `quantization` (QuantizationParameters.scale). Read with
struct: the few fields needed do not justify a generated schema module.
"""
from __future__ import annotations

import struct

# TensorType values of the integer types a quantized model stores its tensors in
INTEGER_TYPES = {3: "uint8", 7: "int16", 9: "int8"}
MODEL_SUBGRAPHS, SUBGRAPH_TENSORS = 2, 0
TENSOR_TYPE, TENSOR_NAME, TENSOR_QUANTIZATION = 1, 3, 4
QUANTIZATION_SCALE = 2


def _field(data: bytes, table: int, index: int) -> int | None:
    """Absolute position of field `index` of the table at `table`, or None when it is absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + offset if offset else None


def _deref(data: bytes, position: int) -> int:
    return position + struct.unpack_from("<I", data, position)[0]


def _tables(data: bytes, table: int, index: int) -> list[int]:
    """The tables of a vector-of-tables field."""
    position = _field(data, table, index)
    if position is None:
        return []
    vector = _deref(data, position)
    count = struct.unpack_from("<I", data, vector)[0]
    return [_deref(data, vector + 4 + 4 * i) for i in range(count)]


def _vector_length(data: bytes, table: int, index: int) -> int:
    position = _field(data, table, index)
    return 0 if position is None else struct.unpack_from("<I", data, _deref(data, position))[0]


def _string(data: bytes, table: int, index: int) -> str:
    position = _field(data, table, index)
    if position is None:
        return ""
    start = _deref(data, position)
    length = struct.unpack_from("<I", data, start)[0]
    return data[start + 4:start + 4 + length].decode(errors="replace")


def quantized_tensor(data: bytes) -> tuple[str, str] | None:
    """(tensor name, integer type) of the first tensor stored as an integer with a scale, or None.
    Bytes that are not a readable FlatBuffer give None: the frontend's interpreter then says why."""
    try:
        model = _deref(data, 0)
        for subgraph in _tables(data, model, MODEL_SUBGRAPHS):
            for tensor in _tables(data, subgraph, SUBGRAPH_TENSORS):
                position = _field(data, tensor, TENSOR_TYPE)
                kind = data[position] if position is not None else 0  # FLOAT32 by default
                quantization = _field(data, tensor, TENSOR_QUANTIZATION)
                if kind in INTEGER_TYPES and quantization is not None and \
                        _vector_length(data, _deref(data, quantization), QUANTIZATION_SCALE):
                    return _string(data, tensor, TENSOR_NAME), INTEGER_TYPES[kind]
    except (struct.error, IndexError):
        return None
    return None
