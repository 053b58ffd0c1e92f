"""Where rknn-toolkit2 puts each op of a graph: the NPU or the CPU, as its own build log says.

A verbose build prints a table, one row per op of the compiled graph (ID, OpType, DataType, Target,
shapes, ...). `rkverify inspect --toolkit` builds the graph in float16 for the target and reads it;
ops the toolkit refuses outright end the build instead (convert.rknn_build names them)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from convert.toolkit_log import ANSI

ROW = re.compile(r"^D RKNN: \[[^\]]*\]\s+\d+\s+(\S+)\s+\S+\s+(NPU|CPU)\s")
ENDPOINTS = ("InputOperator", "OutputOperator")  # the graph's inputs and outputs, not ops


def op_targets(log_file: Path) -> dict[str, Counter[str]]:
    """'NPU' / 'CPU' -> op type -> count, from the last op table in the build log."""
    rows: list[tuple[str, str]] = []
    for line in ANSI.sub("", log_file.read_text(errors="replace")).splitlines():
        if "OpType" in line and "Target" in line:
            rows = []  # a later table (the final graph) replaces an earlier one
            continue
        match = ROW.match(line)
        if match and match.group(1) not in ENDPOINTS:
            rows.append((match.group(1), match.group(2)))
    targets: dict[str, Counter[str]] = {"NPU": Counter(), "CPU": Counter()}
    for op, target in rows:
        targets[target][op] += 1
    return targets
