"""Stable names for what tf2onnx adds to a graph, so one source gives one ONNX, byte for byte.

tf2onnx names every node and constant it makes `<stem>__<n>` from one process-wide counter
(`tf2onnx.utils.make_name`), and its rewriters and constant folding visit nodes in an order that
changes from run to run, even under a fixed PYTHONHASHSEED (measured on keras-mobilefacenet and
keras-facenet: same nodes in the same order, same operators and attributes, same constant values,
only the numbers differ: `const_fold_opt__398` in one run holds what `const_fold_opt__384` holds in
the other). The counter also runs on within one process, so a second export there differs as well.
The float caches are keyed by the canonical ONNX's bytes, so they never hit across runs.

Renumbered in the order the names first appear in the graph, the same graph gets the same names:
each counter value becomes one new value wherever it appears (`Conv__178` and its output
`Conv__178:0` stay one name), the graph's inputs and outputs keep theirs, and initializers are
listed in name order.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import onnx

COUNTER = re.compile(r"__(\d+)")


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If / Loop bodies), outer first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                yield from _graphs(sub)


def renumber(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with tf2onnx's counter values renumbered in order of first appearance (in place)."""
    kept = {v.name for v in [*model.graph.input, *model.graph.output]}
    numbers: dict[str, str] = {}

    def new_name(name: str) -> str:
        if not name or name in kept:
            return name
        for number in COUNTER.findall(name):
            numbers.setdefault(number, str(len(numbers) + 1))
        return COUNTER.sub(lambda m: f"__{numbers[m.group(1)]}", name)

    graphs = list(_graphs(model.graph))
    for graph in graphs:
        for node in graph.node:
            node.input[:] = [new_name(n) for n in node.input]
            node.name = new_name(node.name)
            node.output[:] = [new_name(n) for n in node.output]
    for graph in graphs:
        for value in [*graph.initializer, *graph.value_info]:
            value.name = new_name(value.name)
        initializers = sorted(graph.initializer, key=lambda t: t.name)
        del graph.initializer[:]
        graph.initializer.extend(initializers)
    return model
