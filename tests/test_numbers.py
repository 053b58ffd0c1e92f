"""Numbers that cannot mislead: outputs too small to compare are said to be, not ranked; no 284-digit numbers."""
from __future__ import annotations

import math

import numpy as np

from core.compare import agreement_per_input, summarise_outputs
from core.recipe import Gates, load_recipe
from verify.analyses.stages import stage_attribution
from verify.gates import evaluate_gates
from verify.report.run_report import format_number


def outputs(scale_live: float, dead: np.ndarray, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    return [{"live": rng.normal(scale=scale_live, size=64), "dead": dead} for _ in range(3)]


def test_a_dead_output_is_flagged_not_ranked_and_not_gated() -> None:
    rng = np.random.default_rng(0)
    recipe = load_recipe("arcface-mobilefacenet").recipe.model_copy(update={"outputs": ["live", "dead"]})
    base = outputs(1.0, np.zeros(64), rng)
    # the float16 stage turns the dead output into noise at 1e-17 (SQNR -2672 dB): it must not be named
    fp16 = [{"live": o["live"] + rng.normal(scale=1e-4, size=64), "dead": rng.normal(scale=1e-17, size=64)} for o in base]
    int8 = [{"live": o["live"] + rng.normal(scale=0.05, size=64), "dead": rng.normal(scale=1e-17, size=64)} for o in base]
    summary = summarise_outputs(agreement_per_input(recipe.outputs, base, int8))
    assert summary["dead"]["too_small"] and not summary["live"]["too_small"]
    assert summary["dead"]["relative_l2"]["mean"] > 1e200  # the noise the report must not print as a figure
    result = stage_attribution(recipe, [("ONNX", base), ("RKNN float16", fp16), ("RKNN w8a8", int8)])
    assert result["drift_starts_at"] == "RKNN w8a8"
    gate = evaluate_gates(Gates(min_output_cosine=0.9), {"outputs": summary})[0]
    assert gate.passed and gate.value == summary["live"]["cosine"]["mean"]


def test_when_every_output_is_too_small_no_stage_is_named_and_output_gates_are_skipped_saying_why() -> None:
    """(Keras MobileNet with random weights: output RMS 4.6e-19.) Not gated, as the README says: the
    gate is skipped with its reason, it does not compute nan and fail the run."""
    rng = np.random.default_rng(1)
    recipe = load_recipe("arcface-mobilefacenet").recipe
    tiny = [{"output0": rng.normal(scale=1e-7, size=128)} for _ in range(3)]
    noisy = [{"output0": o["output0"] + rng.normal(scale=1e-7, size=128)} for o in tiny]
    result = stage_attribution(recipe, [("ONNX", tiny), ("fp16", noisy), ("int8", tiny)])
    assert result["drift_starts_at"] is None
    summary = summarise_outputs(agreement_per_input(recipe.outputs, tiny, noisy))
    cosine, sqnr, layer = evaluate_gates(Gates(min_output_sqnr_db=10, min_output_cosine=0.99,
                                               min_worst_layer_cosine=0.9), {"outputs": summary})
    for gate in (cosine, sqnr):
        assert gate.passed and math.isnan(gate.value) and gate.skipped.startswith("every output is too small")
    assert not layer.passed and not layer.skipped, "a gate on figures the run did not measure still fails"


def test_numbers_are_formatted_to_be_read() -> None:
    assert format_number(4.2e283) == "4.2e+283"
    assert len(format_number(-2672.31, 2)) < 10
    assert format_number(0.99991234) == "0.9999"
    assert format_number(3.2e-7) == "3.2e-07"
    assert format_number(0.0) == "0.0000" and format_number(float("nan")) == "nan" and format_number(None) == "n/a"


def test_a_skipped_gate_says_why_on_the_console_and_does_not_fail_the_run(tmp_path, monkeypatch, capsys) -> None:
    """The gate line of a run whose every output is too small (as the command prints it from metrics.json)."""
    import json

    import rkverify
    from verify.gates import gate_dicts

    rng = np.random.default_rng(2)
    tiny = [{"output0": rng.normal(scale=4.6e-19, size=128)} for _ in range(3)]
    summary = summarise_outputs(agreement_per_input(["output0"], tiny, tiny))
    results = evaluate_gates(Gates(min_output_cosine=0.99), {"outputs": summary})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"gates": gate_dicts(results), "passed": True,
                                                      "sample_sizes": {}}))
    monkeypatch.setattr(rkverify, "run", lambda *args, **kwargs: run_dir)
    assert rkverify.main(["run", "retinaface", "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    said = "gate min_output_cosine: skipped, every output is too small to compare (float RMS below float16's smallest"
    assert said in out and "FAIL" not in out and "nan" not in out
