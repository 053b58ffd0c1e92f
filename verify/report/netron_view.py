"""`rkverify.py view`: a recipe's canonical ONNX (or its .rknn) in Netron, served on loopback only.

Users look up the report's drifting layers by name in the graph; Netron (an installed package)
serves the model and its viewer over HTTP. Loopback: the model is nobody else's business.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.errors import RkverifyError
from core.recipe import RECIPES_DIR
from core.workspace import models_dir
from verify.recipes import load

LOOPBACK = "127.0.0.1"


def model_to_view(target: str, rknn: bool) -> Path:
    """The model file of a recipe (name or .yaml) or of a run folder (read from its metrics.json)."""
    folder = Path(target)
    if folder.is_dir():
        if not (folder / "metrics.json").is_file():
            raise RkverifyError(folder, "", "not a run folder (no metrics.json in it)",
                                "give a recipe name, a recipe .yaml or reports/<recipe>/<run-id>")
        metrics = json.loads((folder / "metrics.json").read_text())
        name, artifact, recipe, where = (metrics["recipe"], metrics["provenance"]["artifact"], metrics["recipe_path"],
                                         folder / "metrics.json")
    else:
        loaded = load(target)
        name, artifact, recipe, where = loaded.recipe.name, f"{loaded.recipe.artifact_stem}.rknn", target, loaded.path
    path = models_dir() / name / (artifact if rknn else f"{name}.onnx")
    if not path.is_file():
        raise RkverifyError(where, "", f"{path} does not exist", f"build it first: python rkverify.py run {recipe}")
    return path


def view_command(metrics: dict[str, Any]) -> str:
    """The command that opens a run's model, as the report shows it (a shipped recipe by its name)."""
    recipe = Path(metrics["recipe_path"])
    return f"python rkverify.py view {metrics['recipe'] if recipe.parent == RECIPES_DIR else recipe}"


def serve(path: Path, port: int | None) -> None:
    """Serve `path` in Netron on 127.0.0.1:`port` (None: a free port, 8080 first) until Ctrl-C."""
    import netron

    logging.getLogger("netron").setLevel(logging.WARNING)  # the address is printed below, once
    try:
        host, bound = netron.serve(str(path), address=(LOOPBACK, port), browse=False)
    except OSError as exc:
        raise RkverifyError("command line", "--port", f"cannot listen on {LOOPBACK}:{port} ({exc.strerror})",
                            "give another port, or leave --port out for a free one") from None
    print(f"netron: http://{host}:{bound}/ serves {path} (Ctrl-C stops)", flush=True)
    netron.wait()  # returns after Ctrl-C, servers stopped
