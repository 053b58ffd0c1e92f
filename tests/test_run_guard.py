"""What a run holds while it writes: a lock per folder (two runs of one recipe take turns), the folders
restored when the run does not finish, unique run ids. Plain folders, no toolkit: quick."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from convert.run_guard import folders_locked, kept_unless_finished
from convert.signals import Terminated
from core.errors import RkverifyError
from core.recipe import PROJECT_ROOT, load_recipe
from verify.evaluation import run_id


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "net"
    (folder / "source").mkdir(parents=True)
    (folder / "net-w8a8-rk3588.rknn").write_bytes(b"old model" * 200_000)  # linked, not copied
    (folder / "net-w8a8-rk3588.json").write_text('{"old": true}')
    (folder / "source" / "net.onnx").write_bytes(b"source")
    return folder


def replace(path: Path, data: bytes) -> None:
    """As artifacts are written: a temp file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@pytest.mark.parametrize("ending", [RkverifyError("recipe.yaml", "evaluate.images", "no images", "add some"),
                                    KeyboardInterrupt(), Terminated()])
def test_a_run_that_does_not_finish_keeps_the_previous_files(models: Path, tmp_path: Path, ending) -> None:
    before = tree(models)
    fresh = tmp_path / "calib_data" / "new-set"
    with pytest.raises(type(ending)), kept_unless_finished([models, fresh]):
        replace(models / "net-w8a8-rk3588.rknn", b"new model")
        replace(models / "net-w8a8-rk3588.json", b'{"new": true}')
        (models / "net-w8a8-rk3588.build.log.partial").write_text("E build failed")
        fresh.mkdir(parents=True)
        (fresh / "manifest.json").write_text("{}")
        raise ending
    kept_log = {"net-w8a8-rk3588.build.log.partial": b"E build failed"}
    # a failed build's log stays (its error line names it); an interrupt keeps nothing at all
    assert tree(models) == before | ({} if isinstance(ending, KeyboardInterrupt) else kept_log)
    assert not fresh.exists()
    assert sorted(p.name for p in models.parent.iterdir()) == ["net"], "no backup left beside it"


def test_a_run_that_finishes_keeps_its_files(models: Path) -> None:
    with kept_unless_finished([models]):
        replace(models / "net-w8a8-rk3588.rknn", b"new model")
    assert (models / "net-w8a8-rk3588.rknn").read_bytes() == b"new model"
    assert sorted(p.name for p in models.parent.iterdir()) == ["net"]


def test_two_runs_of_one_folder_take_turns(models: Path) -> None:
    """The second run says it waits, and starts when the first lets go."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from pathlib import Path
        from convert.run_guard import folders_locked
        with folders_locked([Path({str(models)!r})]):
            print(time.monotonic(), flush=True)
    """)
    with folders_locked([models]):
        second = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(1.5)
        assert second.poll() is None, "the second run must wait"
        released = time.monotonic()
    out, err = second.communicate(timeout=30)
    assert float(out) >= released
    assert f"another run is writing {models}: waiting for it to finish" in err


def test_run_ids_are_unique_within_one_second() -> None:
    loaded = load_recipe("retinaface")
    ids = {run_id(loaded) for _ in range(50)}
    assert len(ids) == 50 and len({i[:16] for i in ids}) <= 2  # same second (or two), distinct ids


def test_two_runs_of_one_recipe_started_together_each_keep_their_report(tmp_path: Path) -> None:
    """Started in the same second with one recipe and one reports folder: the second waits for the
    first (same models/ files), each writes its own run folder, and the index lists both."""
    import json
    import os

    lean = ["--set", "analysis.sensitivity_layers=0", "--set", "analysis.preprocess_check=false",
            "--set", "evaluate.count=2", "--set", "evaluate.layer_analysis_images=0",
            "--set", "gates.min_worst_layer_cosine=null"]  # per-layer drift is not measured here
    reports = tmp_path / "reports"
    command = [sys.executable, str(PROJECT_ROOT / "rkverify.py"), "run", "retinaface", "--fresh", *lean, "--reports",
               str(reports)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    first, second = (subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env) for _ in range(2))
    results = [process.communicate(timeout=900) for process in (first, second)]
    assert first.returncode == second.returncode == 0, [err[-1500:] for _, err in results]
    assert sum("another run is writing" in err for _, err in results) == 1, "exactly one of them waited"
    runs = sorted(p for p in (reports / "retinaface").iterdir() if (p / "metrics.json").is_file())
    assert len(runs) == 2 and runs[0].name[:16] <= runs[1].name[:16]
    ids = {json.loads((run / "metrics.json").read_text())["run_id"] for run in runs}
    assert ids == {run.name for run in runs}
    index = (reports / "index.html").read_text()
    assert all(run.name in index for run in runs)
