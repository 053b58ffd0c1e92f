"""The recipe's input and output names checked against a graph's, for every source format: a wrong
name is refused with the closest real ones (people read them off Netron), before any conversion."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from core.errors import RkverifyError
from core.recipe import InputSpec, LoadedRecipe


@dataclass(frozen=True)
class GraphNames:
    """What a graph offers, as its format names it."""

    inputs: dict[str, list[int] | None]  # input name -> NHWC shape (-1: any; None: not checked here)
    tensors: list[str]  # every tensor an output may be
    where: str  # "the model", "the graph", a file name
    input_noun: str = "input"  # "input named", "placeholder tensor", ...
    shape_noun: str = "input"  # "placeholder", "input"
    shape_fix: str = "give [1, H, W, C] matching the model's input"


def closest(name: str, candidates: list[str], n: int = 5) -> list[str]:
    ranked = difflib.get_close_matches(name, candidates, n=n, cutoff=0.0)
    return ranked or candidates[:n]


def check_names(names: GraphNames, loaded: LoadedRecipe, spec: InputSpec) -> None:
    """`spec` (the recipe's input, in the graph's own layout) names an input of the graph at a shape
    that fits; every output names a tensor."""
    if spec.name not in names.inputs:
        raise RkverifyError(loaded.path, "inputs.0.name", f"no {names.input_noun} '{spec.name}' in {names.where}",
                            f"use one of: {', '.join(closest(spec.name, list(names.inputs)))}")
    dims = names.inputs[spec.name]
    if dims is not None and (len(dims) != 4 or any(d not in (-1, s) for d, s in zip(dims, spec.shape))):
        raise RkverifyError(loaded.path, "inputs.0.shape", f"{names.shape_noun} '{spec.name}' is {dims} (NHWC, "
                            f"-1 = any), recipe gives {spec.shape}", names.shape_fix)
    for index, name in enumerate(loaded.recipe.outputs):
        if name not in names.tensors:
            raise RkverifyError(loaded.path, f"outputs.{index}", f"no tensor named '{name}' in {names.where}",
                                f"closest real names: {', '.join(closest(name, names.tensors))}")
