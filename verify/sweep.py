"""Quantization sweeps: every combination of a grid of recipe fields, each variant run exactly as
`run` runs it (in a worker process or a Ray task), one table, a Pareto plot, the best variant.

`until_gates` is the accuracy-aware mode: variants are ordered from cheapest to costliest
(w8a8 before hybrid before w16a16i_dfp before float16; normal before mmse/kl; fewer calibration
images first) and the sweep stops at the first batch holding a variant that passes the gates.
"""
from __future__ import annotations

import itertools
import json
import resource
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convert.preflight import check_paths
from core.artifacts import atomic_dir, sha256_bytes, utc_now
from core.errors import RkverifyError
from core.recipe import LoadedRecipe, Recipe
from verify.engines.workers import run_units
from verify.recipes import load, variant
from verify.results import RunResults, figures
from verify.tasks import Task

DTYPE_COST = {"w4a16": 0, "w8a8": 1, "w16a16i_dfp": 3, "float16": 4}  # hybrid w8a8 counts 2
ALGORITHM_COST = {"normal": 0, "mmse": 1, "kl_divergence": 1}


@dataclass(frozen=True)
class VariantUnit:
    """One variant: the recipe with the sweep's base overrides and this variant's fields."""

    recipe: str
    name: str  # v01, v02, ... in grid order
    fields: dict[str, Any]
    overrides: dict[str, Any]
    folder: Path


def grid_variants(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def cost(recipe: Recipe) -> tuple[int, int, int, int]:
    quant = recipe.quantization
    dtype = DTYPE_COST[quant.dtype] + (1 if quant.hybrid.float_layers and quant.dtype == "w8a8" else 0)
    return dtype, len(quant.hybrid.float_layers), quant.calibration.size, ALGORITHM_COST[quant.algorithm]


def headline(figures: dict[str, float], task: Task) -> float:
    """The figure a variant is ranked by: its task's headline (accuracy, match rate), else the worst cosine."""
    return figures[task.headline] if task.headline else figures["worst output cosine"]


def closeness(figures: dict[str, float]) -> float:
    """What breaks a tie on the task figure: how close the quantized outputs stay to float (embedding
    cosine, else the worst output's cosine). Task figures saturate (every face matched; LFW fold 1
    moves in steps of one pair in 600), the cosines still tell the variants apart."""
    if "embedding cosine" in figures:
        return figures["embedding cosine"]
    return min((v for k, v in figures.items() if k.startswith("cosine ")), default=0.0)


def run_variant(unit: VariantUnit) -> dict[str, Any]:
    """What `run` does, for one variant, into its own folder (models and calibration included, so
    variants running side by side never share a half-written artifact), on this process's share of
    the cores (its face pass sizes its own workers from it)."""
    from convert.toolkit_log import toolkit_output_to
    from verify.run import run

    started = time.perf_counter()
    # variants run side by side: each one's console goes to its own log, not interleaved on the caller's;
    # each is measured (fresh): the sweep's table compares build and wall seconds and memory
    with toolkit_output_to(unit.folder / "console.log"):
        run_dir = run(unit.recipe, unit.overrides, reports_dir=unit.folder / "reports",
                      models_dir=unit.folder / "models", calib_dir=unit.folder / "calib_data", fresh=True)
    results = RunResults.read(run_dir)
    row_figures = figures(results.metrics, results.task)
    return {"run_dir": str(run_dir), "passed": results.passed, "gates": results.metrics["gates"],
            "figures": row_figures, "headline": headline(row_figures, results.task),
            "rknn_bytes": results.rknn_bytes, "build_seconds": results.build_seconds,
            "npu_ms": results.npu_ms,  # the toolkit's estimate, with a board
            "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def plan(recipe_arg: str, loaded: LoadedRecipe, grid: dict[str, list[Any]], base: dict[str, Any], folder: Path,
         until_gates: bool) -> tuple[list[VariantUnit], list[dict[str, Any]]]:
    """Units to run (cheapest first for until_gates) and rows of variants the recipe check refuses."""
    units, refused = [], []
    costs = {}
    errors: list[tuple[dict[str, Any], RkverifyError]] = []
    for index, fields in enumerate(grid_variants(grid), start=1):
        name = f"v{index:02d}"
        overrides = base | fields
        try:
            recipe = variant(loaded, fields).recipe
        except RkverifyError as exc:  # e.g. a dtype the target refuses: a row, not a crashed sweep
            refused.append({"variant": name, "fields": fields, "error": str(exc), "refused": True})
            errors.append((fields, exc))
            continue
        costs[name] = cost(recipe)
        units.append(VariantUnit(recipe_arg, name, fields, overrides, folder / "variants" / name))
    refuse_typos(grid, errors)
    if until_gates:
        units.sort(key=lambda u: costs[u.name])
    return units, refused


def refuse_typos(grid: dict[str, list[Any]], errors: list[tuple[dict[str, Any], RkverifyError]]) -> None:
    """A grid value refused in every variant that holds it is not a combination the target lacks but a
    value that cannot work (a typo: `algorithm=bogus`): the sweep stops before any work, exit 2."""
    for field, values in grid.items():
        for value in values:
            holding = [exc for fields, exc in errors if fields[field] == value]
            if holding and len(holding) == len(grid_variants(grid)) // len(values):
                exc = holding[0]
                raise RkverifyError(f"--grid {field}={value}", exc.field, exc.problem, exc.fix)


def sweep(recipe_arg: str, grid: dict[str, list[Any]] | None, reports_dir: Path, workers: int,
          until_gates: bool | None = None, ray_address: str | None = None,
          base: dict[str, Any] | None = None) -> Path:
    """Run the sweep; return its folder reports/<recipe>/sweeps/<sweep-id>/ (sweep.json, sweep.html)."""
    plain = load(recipe_arg, base)
    base = plain.recipe.sweep.base | (base or {})
    loaded = variant(plain, base)
    recipe = loaded.recipe
    # bad input every variant shares (a wrong field in sweep.base, a missing source) is said once, before any work
    check_paths(loaded)
    grid = grid or recipe.sweep.grid
    if not grid:
        raise RkverifyError(loaded.path, "sweep.grid", "no grid to sweep",
                            "pass --grid FIELD=V1,V2 or give the recipe a sweep: {grid: {FIELD: [V1, V2]}} block")
    until_gates = recipe.sweep.until_gates if until_gates is None else until_gates
    ident = (f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{sha256_bytes(json.dumps(grid, default=str).encode())[:8]}"
             f"-{secrets.token_hex(3)}")  # unique per sweep, as run ids are (verify.evaluation.run_id)
    final = reports_dir / recipe.name / "sweeps" / ident
    with atomic_dir(final) as folder:
        units, refused = plan(recipe_arg, loaded, grid, base, folder, until_gates)
        rows = list(refused)
        batch = max(1, workers) if until_gates else max(1, len(units))
        stopped_at = None
        for start in range(0, len(units), batch):
            chunk = units[start:start + batch]
            for unit, outcome in zip(chunk, run_units(run_variant, chunk, workers, ray_address, isolated=True,
                                                          peak_gb=recipe.target.peak_memory_gb)):
                row = {"variant": unit.name, "fields": unit.fields, "cost_order": units.index(unit) + 1}
                if outcome.result is not None:
                    rows.append(row | outcome.result)
                else:  # bad input found in the worker (e.g. a graph the toolkit cannot build this way) is a refusal
                    rows.append(row | {"error": outcome.error,
                                       "refused": isinstance(outcome.exception, RkverifyError)})
            if until_gates and any(r.get("passed") for r in rows):
                stopped_at = chunk[-1].name
                rows += [{"variant": u.name, "fields": u.fields, "cost_order": units.index(u) + 1,
                          "skipped": "not run: a cheaper variant already passes the gates"}
                         for u in units[start + batch:]]
                break
        for row in rows:  # paths as they will be once the sweep folder has its final name
            if "run_dir" in row:
                row["run_dir"] = str(final / Path(str(row["run_dir"])).relative_to(folder))
        rows.sort(key=lambda r: r["variant"])
        summary = {"recipe": recipe.name, "sweep_id": ident, "created_at": utc_now(), "grid": grid,
                   "base_overrides": base, "until_gates": until_gates, "stopped_at": stopped_at,
                   "workers": workers, "engine": f"ray ({ray_address})" if ray_address else "local processes",
                   "rows": rows, "best": best_variant(rows)}
        (folder / "sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        from verify.report.sweep_report import render_sweep  # matplotlib and OpenCV: after every check

        render_sweep(folder)
    return final


def best_variant(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The passing variant with the best task figure (on a tie: the closer to float, then the smaller
    model), with the lines that select it."""
    passing = [r for r in rows if r.get("passed")]
    if not passing:
        return None
    best = max(passing, key=lambda r: (round(r["headline"], 6), round(closeness(r["figures"]), 6), -r["rknn_bytes"]))
    block: dict[str, Any] = {}
    for dotted, value in best["fields"].items():
        node = block
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return {"variant": best["variant"], "set_lines": [f"--set {k}={v if isinstance(v, str) else json.dumps(v)}"
                                                for k, v in best["fields"].items()],
            "recipe_block": yaml.safe_dump(block, sort_keys=False)}
