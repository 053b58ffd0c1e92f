"""The execution layer: units of work in worker processes (or Ray tasks), results back as data.

rknn-toolkit2's simulator runs on one core and only runs models built in its own process, so
work that scales with the dataset or the number of variants is cut into units, each run by a
fresh process that builds what it needs itself. Every unit gets a process of its own, started
with `spawn` (the caller has the toolkit, torch and TensorFlow loaded: forking it is unsafe), so
a unit that crashes or is killed fails alone and the others complete. On a cluster the same
units run as Ray tasks (Ray schedules; this module only submits and collects).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from unittest.mock import patch

from convert.signals import Terminated, terminate_as_interrupt
from core.errors import RkverifyError
from core.recipe import PROJECT_ROOT
from verify.engines import memory

Unit = TypeVar("Unit")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Outcome(Generic[Result]):
    """A unit's result, or the one line that says why it has none."""

    result: Result | None
    error: str | None = None
    exception: BaseException | None = None  # the unit's own exception, when it could cross the pipe


CORES_VARIABLE = "RKVERIFY_CORES"  # set in a worker that shares the machine with others: its share
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # torch, numpy, the toolkit


def available_cores() -> int:
    """Cores this process may use: its share when a caller gave it one, else its CPU affinity."""
    if os.environ.get(CORES_VARIABLE, "").isdigit():
        return max(1, int(os.environ[CORES_VARIABLE]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """One worker per core this process may use."""
    return available_cores()


def threads_per_worker(workers: int) -> int:
    """Cores each worker's ONNX Runtime may use, so the workers together fill the machine once."""
    return max(1, available_cores() // max(1, workers))


def share_of_cores(cores: int) -> dict[str, str]:
    """The environment that gives a worker process `cores` cores: its own workers and thread pools
    (ONNX Runtime, torch, BLAS) size themselves from it. Workers side by side that each took the
    whole machine would oversubscribe it and lose the speed-up."""
    return {CORES_VARIABLE: str(cores)} | {name: str(cores) for name in THREAD_VARIABLES}


def shards(items: Sequence[Unit], count: int) -> list[list[Unit]]:
    """`items` dealt round-robin into at most `count` non-empty shards (balanced across the set)."""
    return [list(items[i::count]) for i in range(min(count, len(items)))]


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}".rstrip(": ")


def _child(function: Callable[[Any], Any], unit: Any, conn: multiprocessing.connection.Connection) -> None:
    terminate_as_interrupt()  # a worker sent SIGTERM cleans up (temp folders, partial logs) before it ends
    try:
        conn.send(Outcome(function(unit)))
    except Terminated:  # cleaned up on the way here; the caller decides what a lost unit means
        conn.send(Outcome(None, "worker process terminated (SIGTERM)"))
    except BaseException as exc:  # the parent gets the reason as data; the trace goes to stderr
        if not isinstance(exc, RkverifyError):  # bad input says all in its one line
            traceback.print_exc()
        try:
            conn.send(Outcome(None, one_line(exc), exc))
        except Exception:  # an exception that does not pickle: its line still does
            conn.send(Outcome(None, one_line(exc)))
    finally:
        conn.close()


def run_units(function: Callable[[Unit], Result], units: Sequence[Unit], workers: int,
              ray_address: str | None = None, isolated: bool = False,
              peak_gb: float | None = None) -> list[Outcome[Result]]:
    """`function(unit)` for every unit, outcomes in order: one spawned process per unit, `workers`
    at a time (or Ray tasks when `ray_address` is given; "local" starts a Ray instance on this
    machine). A single worker runs the units in this process unless `isolated` (a unit that may
    crash, or leaves state behind, e.g. a toolkit build). `function` must be a module-level function.
    `peak_gb`: memory a unit may peak at; a unit starts only when it fits beside the running ones
    (verify.engines.memory.fits), else it waits for one to finish."""
    if ray_address is not None:
        return _run_on_ray(function, units, ray_address)
    if not isolated and (workers <= 1 or len(units) <= 1):
        outcomes: list[Outcome[Result]] = []
        for unit in units:
            try:
                outcomes.append(Outcome(function(unit)))
            except Exception as exc:
                outcomes.append(Outcome(None, one_line(exc), exc))
        return outcomes
    context = multiprocessing.get_context("spawn")
    share = share_of_cores(threads_per_worker(workers))
    results: dict[int, Outcome[Result]] = {}
    waiting = list(enumerate(units))
    running: dict[int, tuple[Any, multiprocessing.connection.Connection]] = {}
    try:
        _run_all(function, context, share, waiting, running, results, workers, peak_gb)
    except BaseException:  # Ctrl-C / SIGTERM of the caller: its workers end too, each cleaning up
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
        raise
    return [results[i] for i in range(len(units))]


def _run_all(function: Callable[[Unit], Result], context: Any, share: dict[str, str], waiting: list[tuple[int, Unit]],
             running: dict[int, tuple[Any, multiprocessing.connection.Connection]],
             results: dict[int, Outcome[Result]], workers: int, peak_gb: float | None) -> None:
    """Start units `workers` at a time (each when its `peak_gb` fits) and collect their outcomes until
    none waits or runs."""
    while waiting or running:
        while waiting and len(running) < max(1, workers) and \
                (not running or memory.fits(peak_gb, [p.pid for p, _ in running.values()])):
            index, unit = waiting.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(function, unit, send), daemon=False)
            # the child inherits os.environ as it is at start(); patch.dict restores the caller's after
            with patch.dict(os.environ, share):
                process.start()
            send.close()
            running[index] = (process, receive)
        # with units waiting for memory, look again now and then: others' memory comes free too
        multiprocessing.connection.wait([conn for _, conn in running.values()], timeout=2.0 if waiting else None)
        for index, (process, conn) in list(running.items()):
            if not conn.poll():
                continue
            try:
                results[index] = conn.recv()
            except EOFError:  # it died before answering (killed, out of memory, a crash in C)
                process.join()
                results[index] = Outcome(None, f"worker process died (exit code {process.exitcode})")
            process.join()
            conn.close()
            del running[index]


def map_units(function: Callable[[Unit], Result], units: Sequence[Unit], workers: int,
              ray_address: str | None = None, peak_gb: float | None = None) -> list[Result]:
    """As `run_units`, for work that is all or nothing: the first failure is raised."""
    outcomes = run_units(function, units, workers, ray_address, peak_gb=peak_gb)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        if failed[0].exception is not None:
            raise failed[0].exception
        raise RuntimeError(f"{len(failed)} of {len(units)} worker units failed; first: {failed[0].error}")
    return [o.result for o in outcomes]  # type: ignore[misc]


def _run_on_ray(function: Callable[[Unit], Result], units: Sequence[Unit], address: str) -> list[Outcome[Result]]:
    import ray  # only when asked for: the local pool needs none of it

    if not ray.is_initialized():
        # the workers import this project by module name: they need it on their path (on a
        # cluster, the project and the data at the same paths on every node)
        runtime_env = {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)} | share_of_cores(1)}  # a task holds 1 CPU
        if address == "local":
            ray.init(num_cpus=default_workers(), include_dashboard=False, runtime_env=runtime_env,
                     _node_ip_address="127.0.0.1", log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=0)(_in_ray_worker)
    refs = [task.remote(function, unit) for unit in units]
    outcomes: list[Outcome[Result]] = []
    for ref in refs:
        try:
            outcomes.append(Outcome(ray.get(ref)))
        except Exception as exc:  # RayTaskError (the unit raised) or a dead worker
            cause = getattr(exc, "cause", None) or exc  # the unit's own exception: bad input stays bad input
            # the unit unwound (temp folders removed) and Ray reports an interrupted task as cancelled
            # (this module never cancels one); the caller was not terminated itself
            if isinstance(cause, Terminated | ray.exceptions.TaskCancelledError):
                outcomes.append(Outcome(None, "worker process terminated (SIGTERM) or interrupted"))
            else:
                outcomes.append(Outcome(None, one_line(cause), cause))
    return outcomes


def _in_ray_worker(function: Callable[[Unit], Result], unit: Unit) -> Result:
    """A Ray task's body: SIGTERM to its worker unwinds the unit (temp folders removed), as in the pool."""
    terminate_as_interrupt()
    return function(unit)
