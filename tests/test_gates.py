"""The CI gate: a fresh run of every shipped recipe must meet its recipe's gates: block."""
from __future__ import annotations

import json

import pytest

from core.recipe import load_recipe
from tests.conftest import RECIPE_NAMES
from verify.gates import gates_of


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_gates(name: str, fresh_run) -> None:
    run_dir = fresh_run(name)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the recipe's gates, and those on by default (calibration leakage on LFW: verify.gates.gates_of)
    declared = {k for k, v in gates_of(load_recipe(name).recipe).model_dump().items() if v is not None}
    assert declared, f"recipe {name} declares no gates"
    assert {g["gate"] for g in metrics["gates"]} == declared
    failed = [f"{g['gate']} = {g['value']:.4f} vs threshold {g['threshold']} ({g['metric']})"
              for g in metrics["gates"] if not g["passed"]]
    assert not failed, f"recipe {name} crossed its gates: {'; '.join(failed)} (report: {run_dir / 'report.html'})"
