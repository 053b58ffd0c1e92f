"""The board column: the quantized model on an RK board against the simulator, with the board's
own time and memory figures."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from convert.toolkit_log import toolkit_output_to
from core.compare import agreement_per_input, summarise_outputs
from verify.engines.runners import RknnRunner, active, board_loader, run_all

if TYPE_CHECKING:
    from verify.run_state import RunState


TOTAL_TIME = re.compile(r"total.*time|time.*total", re.IGNORECASE)
NUMBER = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*$")


def npu_time_ms(perf: Any) -> float | None:
    """The board's whole-model time from eval_perf's result, in ms: the first number under a key (or on
    a line, "key: value") that reads as a total time (microseconds converted when it says so), or None.

    rknn-toolkit2 2.5.0's docstring says eval_perf returns a dict, its user guide says a string, and its
    compiled rknn_base formats text ("Total Time(us): {}", and with perf_debug the per-layer table ending
    "Total Operator Elapsed Per Frame Time(us): N"; it cannot run on the simulator): both forms are read."""
    if isinstance(perf, str):
        perf = dict(line.rsplit(":", 1) for line in perf.splitlines() if ":" in line and NUMBER.match(line.rsplit(":", 1)[1]))
        perf = {key.strip(): float(value) for key, value in perf.items()}
    if not isinstance(perf, dict):
        return None
    for key, value in perf.items():
        if isinstance(value, dict):
            found = npu_time_ms(value)
            if found is not None:
                return found
        elif TOTAL_TIME.search(str(key)) and isinstance(value, int | float):
            return float(value) / 1e3 if re.search(r"\bus\b|\(us\)|_us|microsec", str(key), re.IGNORECASE) else float(value)
    return None


def step(state: RunState) -> None:
    recipe = state.recipe
    runner = RknnRunner(board_loader(state.artifacts.built.path, state.log_file), recipe.outputs,
                        recipe.model_input.layout, log_file=state.log_file, target=recipe.target.platform,
                        device_id=recipe.target.device_id)
    with active(runner):
        board_out, board_s = run_all(runner, state.images)
        with toolkit_output_to(state.log_file):
            perf = runner.rknn.eval_perf(is_print=False)
            memory = runner.rknn.eval_memory(is_print=False)
    state.outputs["board"] = board_out
    per_image = agreement_per_input(recipe.outputs, state.outputs["quantized"], board_out)
    state.metrics["board"] = {"device_id": recipe.target.device_id, "outputs_vs_simulator": summarise_outputs(per_image),
                              "host_ms_per_image": round(board_s * 1e3, 2), "eval_perf": perf, "eval_memory": memory,
                              "npu_ms": npu_time_ms(perf)}
