"""`rkverify.py clean`: a dry run lists what would go with its size; --apply removes exactly that.
Plain folders: quick."""
from __future__ import annotations

import json
import os
from pathlib import Path

import rkverify
from convert.run_guard import folders_locked
from verify.clean import CATEGORIES, clean


def run_folder(reports: Path, recipe: str, run_id: str) -> Path:
    folder = reports / recipe / run_id
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"passed": True, "created_at": run_id, "gates": []}))
    (folder / "report.html").write_bytes(b"x" * 1000)
    return folder


def layout(root: Path) -> dict[str, Path]:
    reports, models, calib = root / "reports", root / "models", root / "calib_data"
    runs = [run_folder(reports, "retinaface", f"2026112{i}T000000Z-abcdef12-00000{i}") for i in range(4)]
    sweep = reports / "retinaface" / "sweeps" / "20261120T000000Z-1234abcd-000001"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    for name in ("retinaface", "arcface"):
        (models / name / "hybrid" / "18cb6bb5").mkdir(parents=True)
        (models / name / "hybrid" / "18cb6bb5" / "step1.model").write_bytes(b"m" * 2_000_000)
        (models / name / f"{name}-w8a8-rk3588.rknn").write_bytes(b"r")
    (models / "cache").mkdir()
    (models / "cache" / "detections-0123.npz").write_bytes(b"c" * 500_000)
    (models / "retinaface" / "retinaface-w8a8-rk3588.build.log.partial").write_text("killed mid-build")
    dead = models / ".retinaface.before-run-999999999"  # a pid no process has
    dead.mkdir()
    alive = models / f".arcface.before-run-{os.getpid()}"  # this process: a run in progress
    alive.mkdir()
    calib.mkdir()
    return {"reports": reports, "models": models, "calib": calib, "oldest": runs[0], "newest": runs[-1],
            "sweep": sweep, "dead": dead, "alive": alive}


def test_dry_run_lists_and_removes_nothing_then_apply_removes_exactly_that(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    lines = clean(paths["reports"], paths["models"], paths["calib"], paths["models"] / "cache", 3, CATEGORIES, apply=False)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "a dry run removes nothing"
    listed = {line.split("] ", 1)[1].rsplit(" (", 1)[0] for line in lines[:-1]}
    expected = {paths["oldest"], paths["models"] / "retinaface" / "hybrid", paths["models"] / "arcface" / "hybrid",
                paths["models"] / "cache", paths["models"] / "retinaface" / "retinaface-w8a8-rk3588.build.log.partial",
                paths["dead"]}
    assert listed == {str(p) for p in expected}
    assert lines[-1] == "clean: dry run, 6 paths, 4.5 MB; run again with --apply to remove them"
    clean(paths["reports"], paths["models"], paths["calib"], paths["models"] / "cache", 3, CATEGORIES, apply=True)
    assert not any(p.exists() for p in expected)
    assert paths["newest"].is_dir() and paths["sweep"].is_dir() and paths["alive"].is_dir()
    assert (paths["models"] / "retinaface" / "retinaface-w8a8-rk3588.rknn").is_file()
    index = (paths["reports"] / "index.html").read_text()
    assert paths["newest"].name in index and paths["oldest"].name not in index


def test_a_folder_a_run_is_writing_is_left_alone(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    with folders_locked([paths["models"] / "retinaface"]):
        lines = clean(paths["reports"], paths["models"], paths["calib"], paths["models"] / "cache", 3, ("hybrid", "leftovers"), apply=True)
    assert (paths["models"] / "retinaface" / "hybrid").is_dir()
    assert (paths["models"] / "retinaface" / "retinaface-w8a8-rk3588.build.log.partial").is_file()
    assert not (paths["models"] / "arcface" / "hybrid").exists()
    assert lines[-1].startswith("clean: removed 2 paths")


def test_clean_through_the_cli_is_a_dry_run_by_default(tmp_path: Path, capsys) -> None:
    assert rkverify.main(["clean", "--reports", str(tmp_path / "none"), "--only", "runs"]) == 0
    assert capsys.readouterr().out.strip() == "clean: dry run, 0 paths, 0.0 MB; run again with --apply to remove them"


def test_caches_moved_by_rkverify_cache_are_the_ones_listed(tmp_path: Path, monkeypatch, capsys) -> None:
    moved = tmp_path / "elsewhere" / "cache"
    (moved / "runs").mkdir(parents=True)
    (moved / "embeddings-0123.npz").write_bytes(b"e" * 1_000_000)
    monkeypatch.setenv("RKVERIFY_CACHE", str(moved))
    assert rkverify.main(["clean", "--only", "caches"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"would remove [caches] {moved} (1.0 MB)"
    assert rkverify.main(["clean", "--only", "caches", "--apply"]) == 0
    assert not moved.exists()
