"""Is a source file what its recipe's `framework` says, and whole? Checked on the bytes before they
replace the previous copy under models/<name>/source/ (a correct sha256 only says the bytes are the
ones the user meant, not that they are a model).

Formats are told apart by magic bytes and, for protobuf files (ONNX, TensorFlow GraphDef and
SavedModel all are), by the field numbers and wire types at the top level of the message: no
framework is imported to find out what a file is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from core.errors import RkverifyError
from core.recipe import Source

# what each format looks like to a user, and the framework that reads it (None: none here does)
FORMATS: dict[str, tuple[str, str | None]] = {
    "onnx": ("an ONNX model", "onnx"),
    "graphdef": ("a TensorFlow GraphDef (frozen .pb)", "keras-pb"),
    "savedmodel": ("a TensorFlow SavedModel's saved_model.pb (freeze it to a GraphDef first)", None),
    "mxnet-symbol": ("an MXNet symbol (-symbol.json)", "mxnet"),
    "tflite": ("a TensorFlow Lite flatbuffer (.tflite)", "tflite"),
    "zip": ("a zip archive (a PyTorch .pt/.pth checkpoint or a Keras .keras file: export it to ONNX)", None),
    "hdf5": ("an HDF5 file (a Keras .h5 model: freeze it to a .pb or export it to ONNX)", None),
    "pickle": ("a Python pickle (a torch.save checkpoint: export it to ONNX)", None),
    "json": ("a JSON file that is not an MXNet symbol", None),
    "empty": ("an empty file", None),
    "unknown": ("no model format rkverify knows", None),
}
EXPECTED = {"onnx": "onnx", "pytorch-onnx": "onnx", "keras-pb": "graphdef", "mxnet": "mxnet-symbol",
            "tflite": "tflite"}
# top-level (field number, wire type) of each protobuf message (0 varint, 2 length-delimited)
ONNX_MODEL = {(1, 0), (2, 2), (3, 2), (4, 2), (5, 0), (6, 2), (7, 2), (8, 2), (14, 2), (20, 2), (25, 2)}
GRAPH_DEF = {(1, 2), (2, 2), (3, 0), (4, 2), (5, 2)}
SAVED_MODEL = {(1, 0), (2, 2)}


def identify(data: bytes) -> tuple[str, str]:
    """(format, problem): the format the bytes look like, and why they are not whole ('' if they are)."""
    if not data:
        return "empty", ""
    if data[4:8] == b"TFL3":
        return "tflite", ""
    if data.startswith(b"PK\x03\x04"):
        return "zip", ""
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5", ""
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle", ""
    if data.lstrip()[:1] == b"{":
        try:
            parsed = json.loads(data)
        except ValueError as exc:  # a cut-off symbol file is still recognisably one
            return ("mxnet-symbol" if b'"nodes"' in data else "json"), f"not valid JSON ({exc})"
        return ("mxnet-symbol" if isinstance(parsed, dict) and "nodes" in parsed else "json"), ""
    fields, problem = top_level_fields(data)
    seen = set(fields)
    if seen and seen <= ONNX_MODEL and (7, 2) in seen:
        return "onnx", problem
    if fields and fields[0] == (1, 2) and seen <= GRAPH_DEF:
        return "graphdef", problem
    if (2, 2) in seen and seen <= SAVED_MODEL:
        return "savedmodel", problem
    return "unknown", ""


def top_level_fields(data: bytes) -> tuple[list[tuple[int, int]], str]:
    """(field number, wire type) of each top-level protobuf field, and where the bytes stop making sense."""
    fields: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    fields.append((field, wire))
                    return fields, (f"the file ends at byte {len(data)}, inside field {field} which runs to byte "
                                    f"{pos + length}: it is truncated")
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return fields, f"byte {pos} is no protobuf field (wire type {wire})"
            fields.append((field, wire))
    except IndexError:
        return fields, f"the file ends at byte {len(data)} in the middle of a field: it is truncated"
    return fields, ""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def check_source_bytes(data: bytes, framework: str, origin: Path, recipe_path: Path) -> None:
    """Refuse bytes that are not a whole model of `framework` (one line: what the file looks like)."""
    kind, problem = identify(data)
    expected = EXPECTED.get(framework)
    if expected is None:
        return
    if kind != expected:
        description, reader = FORMATS[kind]
        known = get_args(Source.model_fields["framework"].annotation)  # the frameworks this checkout reads
        fix = (f"set source.framework: {reader}" if reader in known else
               f"give {FORMATS[expected][0]} (source.framework: {framework}), or convert the model to one of: "
               f"{', '.join(known)}")
        raise RkverifyError(recipe_path, "source.framework", f"{origin} is not {FORMATS[expected][0]}: it looks "
                            f"like {description}", fix)
    if problem:
        raise RkverifyError(recipe_path, "source", f"{origin} is not complete: it looks like {FORMATS[kind][0]}, "
                            f"but {problem}",
                            "obtain the file again (and put the whole file's sha256 in the recipe)")
    if kind == "onnx":
        _check_onnx(data, origin, recipe_path)
    if kind == "tflite":
        check_tflite(data, origin)


def check_tflite(data: bytes, origin: Path) -> None:
    from convert.tflite_header import quantized_tensor

    found = quantized_tensor(data)
    if found:  # the words of convert.frontends.tflite_file.refuse_quantized, before anything is copied
        name, kind = found
        raise RkverifyError(origin, "source.path", f"integer-quantized TFLite (tensor '{name}' is {kind}): it has no "
                            "float reference to compare the RKNN build against",
                            "give the float .tflite (TFLiteConverter without optimizations or representative "
                            "dataset), or the Keras model it came from as a frozen .pb (framework: keras-pb)")


def _check_onnx(data: bytes, origin: Path, recipe_path: Path) -> None:
    import onnx  # here, not at the top: the CLI's checks must not wait for it

    try:
        onnx.checker.check_model(onnx.load_model_from_string(data))
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RkverifyError(recipe_path, "source", f"{origin} is not a valid ONNX model ({first})",
                            "re-export the model (torch.onnx.export) and check it with onnx.checker") from None
