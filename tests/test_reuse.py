"""An unchanged re-run reuses the run before it (verify/reuse.py): keyed by content, it says so, puts
the run's models/ back, and `--fresh` measures again."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests import tiny_models
from tests.cli import rkverify


def run_dir_of(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1].removeprefix("report: ")).parent


def test_an_unchanged_rerun_is_reused_and_fresh_measures_again(tmp_path: Path, workspace: Path) -> None:
    recipe = tiny_models.recipe(tmp_path, tiny_models.two_outputs(tmp_path / "two.onnx"))
    reports = ("--reports", str(tmp_path / "reports"))
    first = rkverify("run", str(recipe), *reports)
    assert first.code == 0, first.stderr[-2000:]
    measured = json.loads((run_dir_of(first.stdout) / "metrics.json").read_text())
    assert "reused" not in measured and "[rkverify] reused run" not in first.stderr
    shutil.rmtree(workspace / "models")  # a reused run puts the run's files back too

    again = rkverify("run", str(recipe), *reports)
    assert again.code == 0, again.stderr[-2000:]
    run_dir = run_dir_of(again.stdout)
    reused = json.loads((run_dir / "metrics.json").read_text())
    assert f"[rkverify] reused run {measured['run_id']} (" in again.stderr and "--fresh measures again" in again.stderr
    assert reused["reused"]["run_id"] == measured["run_id"] and run_dir.name == reused["run_id"] != measured["run_id"]
    assert reused["outputs"] == measured["outputs"] and reused["layers"] == measured["layers"]
    assert reused["comparison"]  # compared with the run before it, as a measured run is
    assert "Reused run." in (run_dir / "report.html").read_text()
    assert {p.name for p in (workspace / "models" / "tiny-drift").glob("*.rknn")} == {
        "tiny-drift-w8a8-rk3588.rknn", "tiny-drift-float16-rk3588.rknn"}
    index = (tmp_path / "reports" / "index.html").read_text()
    assert measured["run_id"] in index and run_dir.name in index

    fresh = rkverify("run", str(recipe), "--fresh", *reports)
    assert fresh.code == 0, fresh.stderr[-2000:]
    assert "reused" not in json.loads((run_dir_of(fresh.stdout) / "metrics.json").read_text())


def test_the_key_follows_the_recipe_its_photos_and_the_code(tmp_path: Path, monkeypatch) -> None:
    from core.packages import package_dir
    from verify import reuse
    from verify.recipes import load

    photos = tmp_path / "photos"
    shutil.copytree(package_dir("insightface") / "insightface" / "data" / "images", photos)
    recipe = tiny_models.recipe(tmp_path, tiny_models.two_outputs(tmp_path / "two.onnx"))
    recipe.write_text(recipe.read_text().replace('{package: insightface, glob: "insightface/data/images/*.jpg"}',
                                                 f"{{dir: {photos}}}"))

    def key(overrides: dict[str, object] | None = None) -> str:
        return reuse.run_key(load(str(recipe), overrides), None)

    first = key()
    assert key() == first
    assert key({"evaluate.count": 2}) != first
    photo = next(photos.glob("*.jpg"))
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 1))  # a photo edited in place
    assert key() != first
    changed = key()
    monkeypatch.setattr(reuse, "code_sha256", lambda: "another version of rkverify")
    assert key() != changed
