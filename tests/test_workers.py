"""The execution layer: units in spawned processes, results as data, a failing unit fails alone."""
from __future__ import annotations

import os
import signal

import pytest

from verify.engines.workers import map_units, run_units, shards


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


def cores_seen(_: int) -> tuple[int, str | None]:
    from verify.engines.workers import available_cores

    return available_cores(), os.environ.get("OMP_NUM_THREADS")


def test_workers_side_by_side_share_the_cores_and_the_caller_keeps_its_own() -> None:
    from verify.engines.workers import CORES_VARIABLE, available_cores

    before = dict(os.environ)
    cores = available_cores()
    two = map_units(cores_seen, [0, 1], 2)
    assert two == [(max(1, cores // 2), str(max(1, cores // 2)))] * 2
    assert run_units(cores_seen, [0], 1, isolated=True)[0].result == (cores, str(cores))
    assert dict(os.environ) == before and CORES_VARIABLE not in os.environ


def test_an_isolated_single_worker_still_survives_a_killed_unit() -> None:
    outcomes = run_units(fails_on_three, [4, 5, 6], 1, isolated=True)
    assert [o.result for o in outcomes] == [4, None, 6]
    assert outcomes[1].error == "worker process died (exit code -9)"


def refuses(value: int) -> int:
    from core.errors import RkverifyError

    if value == 1:
        raise RkverifyError("recipe.yaml", "quantization.dtype", "the toolkit cannot build this", "use w8a8")
    return value


def terminated_mid_unit(folder: str) -> int:
    """Makes a temp folder (as a toolkit call does), then is sent SIGTERM while it holds it."""
    import tempfile
    import time
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="rkverify-toolkit-", dir=folder) as scratch:
        (Path(scratch) / "check0.onnx").write_bytes(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    return 0


@pytest.mark.parametrize("engine", ["pool", "ray"])
def test_a_terminated_worker_cleans_up_and_its_unit_says_so(engine: str, tmp_path) -> None:
    """SIGTERM to a pool or Ray worker (a scheduler, a pool shutting down) ends it as Ctrl-C would: its
    temp folders go, and the caller gets one line for the unit (and is not itself terminated)."""
    if engine == "ray":
        pytest.importorskip("ray")
        import ray
    try:
        outcomes = run_units(terminated_mid_unit, [str(tmp_path)], 1, isolated=True,
                             ray_address="local" if engine == "ray" else None)
    finally:
        if engine == "ray":
            ray.shutdown()
    said = {"pool": "worker process terminated (SIGTERM)",
            "ray": "worker process terminated (SIGTERM) or interrupted"}[engine]
    assert outcomes[0].result is None and outcomes[0].error == said
    assert not list(tmp_path.iterdir())


def test_bad_input_in_a_ray_worker_stays_bad_input() -> None:
    """A RkverifyError raised in a Ray task comes back as itself (exit 2 for the command), not as a
    RayTaskError line (exit 3); a sweep on Ray then marks the variant refused."""
    pytest.importorskip("ray")
    import ray

    from core.errors import RkverifyError

    try:
        outcomes = run_units(refuses, [0, 1], 2, ray_address="local")
        with pytest.raises(RkverifyError) as err:
            map_units(refuses, [1], 1, ray_address="local")
    finally:
        ray.shutdown()
    assert outcomes[0].result == 0 and isinstance(outcomes[1].exception, RkverifyError)
    assert outcomes[1].exception.field == "quantization.dtype"
    assert str(err.value) == "recipe.yaml [quantization.dtype]: the toolkit cannot build this. Fix: use w8a8"
