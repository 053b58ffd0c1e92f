"""The default recipe on a user's clone, where ../shared/ does not exist: it measures on the real
photos the installed packages ship, passes its gates and says which figures rest on few images."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

from core.recipe import PROJECT_ROOT

MISSING = "../rkverify-no-shared/"  # stands in for ../shared/ on a machine that has none
PACKAGE_PHOTOS = {"t1.jpg", "Tom_Hanks_54745.png", "grace_hopper.jpg", "road_300x300.jpg"}  # scenes with people
MASK_PHOTOS = 4  # insightface's face-mask photos: calibration only


def without_shared(text: str) -> str:
    return text.replace("../shared/", MISSING)


def test_default_recipe_without_shared_folder(recipe_copy, tmp_path: Path) -> None:
    assert not (PROJECT_ROOT / MISSING).exists()
    recipe = recipe_copy(without_shared)
    assert "../shared/" not in recipe.read_text() and MISSING in recipe.read_text()
    done = subprocess.run([sys.executable, "rkverify.py", "run", str(recipe), "--reports", str(tmp_path / "reports"),
                           "--set", "analysis.sensitivity_layers=0"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]  # every gate passes on the packages' photos
    report = Path(re.search(r"^report: (.+)$", done.stdout, re.MULTILINE).group(1))
    metrics = json.loads((report.parent / "metrics.json").read_text())

    assert {Path(p).name for p in metrics["eval_images"]} == PACKAGE_PHOTOS
    assert not any("shared" in p for p in metrics["eval_images"] + metrics["calibration"]["images"])
    assert metrics["calibration"]["used"] == metrics["calibration"]["available"] == len(PACKAGE_PHOTOS) + MASK_PHOTOS
    # different photos give different outputs, and the drift cosine sits above that
    for name, different in metrics["input_sensitivity_cosine"].items():
        assert math.isfinite(different) and different < metrics["outputs"][name]["cosine"]["mean"], name
    assert metrics["detection"]["float_faces"] >= 5

    few = {s["figure"]: s["images"] for s in metrics["sample_sizes"] if s["few"]}
    assert few["per-output agreement, cosine between different inputs, stages"] == 4
    assert "calibration (the quantization ranges)" not in few
    html = report.read_text()
    assert 'class="warn" id="few-images"' in html and "rests on 4 images" in html
    # the same warnings on the console, next to the gates; the toolkit's own bars are not there
    assert sum(line.startswith("warning: ") for line in done.stdout.splitlines()) == len(few)
    assert "[rkverify] rknn build w8a8" in done.stderr
    for bar in ("GraphPreparing", "SessionPreparing", "AccuracyAnalysing"):
        assert bar not in done.stdout + done.stderr, bar
