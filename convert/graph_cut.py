"""Where to cut a graph before an op the NPU cannot run: the value a recipe's `outputs` would take.

The toolkit names the op type it refuses (in its log or its exception); the tensors that feed the first
such node, as the graph computes them (not weights), are the outputs a recipe can end at instead, the
rest then running on the host."""
from __future__ import annotations

import re
from pathlib import Path

import onnx


def refused_ops(text: str, onnx_path: Path) -> list[str]:
    """Op types of the graph that the toolkit's `text` names (as whole words), in graph order."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9_]*", text))
    seen: list[str] = []
    for node in model.graph.node:
        if node.op_type in words and node.op_type not in seen:
            seen.append(node.op_type)
    return seen


def cut_before(onnx_path: Path, op_type: str) -> list[str]:
    """The computed tensors feeding the first `op_type` node (weights and constants left out)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    constant = {init.name for init in graph.initializer} | {
        out for node in graph.node if node.op_type == "Constant" for out in node.output}
    node = next(n for n in graph.node if n.op_type == op_type)
    return [name for name in node.input if name and name not in constant]


def cut_fix(text: str, onnx_path: Path | None) -> str | None:
    """'outputs: [a, b] ...' for the first refused op found in `text`, or None."""
    if onnx_path is None or not onnx_path.is_file():
        return None
    ops = refused_ops(text, onnx_path)
    if not ops:
        return None
    feeds = cut_before(onnx_path, ops[0])
    if not feeds:
        return None
    return (f"the NPU cannot run {ops[0]}: end the graph before it with outputs: [{', '.join(feeds)}] (the tensors "
            f"that feed it) and run {ops[0]} and what follows on the host")
