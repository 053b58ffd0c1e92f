"""The execution layer: units in spawned processes, results as data, a failing unit fails alone."""
from __future__ import annotations

import os
import signal

from verify.workers import map_units, run_units, shards


def square(value: int) -> int:
    return value * value


def test_map_units_in_two_processes_equals_serial() -> None:
    units = list(range(7))
    assert map_units(square, units, 2) == map_units(square, units, 1) == [u * u for u in units]
    assert sorted(sum(shards(units, 3), [])) == units and len(shards(units, 3)) == 3


def fails_on_three(value: int) -> int:
    if value == 3:
        raise ValueError("three is refused")
    if value == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # a worker that dies without a word
    return value


def test_a_failing_or_killed_unit_fails_alone() -> None:
    outcomes = run_units(fails_on_three, list(range(7)), 2)
    assert [o.result for o in outcomes] == [0, 1, 2, None, 4, None, 6]
    assert outcomes[3].error == "ValueError: three is refused"
    assert outcomes[5].error == "worker process died (exit code -9)"
