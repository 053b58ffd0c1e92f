"""The execution layer: units of work in worker processes, results back as data.

rknn-toolkit2's simulator runs on one core and only runs models built in its own process,
so work that scales with the dataset (or the number of variants) is cut into units, each
run by a fresh worker process that builds what it needs itself. Workers are started with
`spawn`: the caller has the toolkit (torch, TensorFlow) loaded, and forking it is unsafe.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

Unit = TypeVar("Unit")
Result = TypeVar("Result")


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Cores each worker's ONNX Runtime may use, so the workers together fill the machine once."""
    return max(1, default_workers() // max(1, workers))


def map_units(function: Callable[[Unit], Result], units: Sequence[Unit], workers: int) -> list[Result]:
    """`function(unit)` for every unit, in order: in this process for one worker, else in a pool
    of `workers` spawned processes. `function` must be a module-level function (picklable)."""
    if workers <= 1 or len(units) <= 1:
        return [function(unit) for unit in units]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(units)), mp_context=context) as pool:
        return list(pool.map(function, units))


def shards(items: Sequence[Unit], count: int) -> list[list[Unit]]:
    """`items` dealt round-robin into at most `count` non-empty shards (balanced across the set)."""
    return [list(items[i::count]) for i in range(min(count, len(items)))]
