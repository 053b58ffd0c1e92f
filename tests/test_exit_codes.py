"""The exit-code contract, each path run as a user runs it (rkverify.py in a subprocess):
2 bad input (one line, fast, before heavy imports), 3 internal / environment failure (one line naming
what failed, the traceback in a log that exists), 130 interrupted (one line; artifacts keep matching)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.artifacts import sha256_file
from core.packages import package_dir
from core.recipe import PROJECT_ROOT, DetectionEval
from core.workspace import WORKSPACE_ENV
from tests.cli import rkverify
from tests.conftest import workspace_of
from verify.face.detection import priors

HEAVY = ("rknn", "torch", "tensorflow", "mxnet", "onnx", "onnxruntime", "onnxsim", "cv2")


def imported(stderr: str) -> set[str]:
    """Top-level modules a `python -X importtime` run imported."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


def console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("import time:")]


@pytest.mark.parametrize("args, says", [
    (["run", "retinaface", "--set", "quantization.dtype=int9"],
     "rkverify: error: --set quantization.dtype=int9 [quantization.dtype]: 'int9' is not allowed"),
    (["run", "retinaface", "--set", "source.package=null", "--set", "source.file=null", "--set", "source.literal=null",
      "--set", "source.path=models/none.onnx"], "[source.path]: model file"),
    (["run", "retinaface", "--set", "quantization.calibration.images=[{dir: no/such/folder}]"],
     "[quantization.calibration.images.0.dir]: folder"),
    (["run", "convert/recipes"], "is a directory, not a recipe"),
    (["sweep", "retinaface", "--grid", "quantization.method=channel,layer", "--set", "source.package=null", "--set",
      "source.file=null", "--set", "source.literal=null", "--set", "source.path=models/none.onnx"], "[source.path]: model file"),
    (["render", "reports/no-such-recipe/no-such-run"], "run folder does not exist"),
])
def test_bad_input_answers_at_once_before_heavy_imports(args: list[str], says: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = rkverify(*args, "--reports", str(tmp_path / "reports"), python_flags=("-X", "importtime")) \
        if args[0] in ("run", "sweep") else rkverify(*args, python_flags=("-X", "importtime"))
    seconds = time.perf_counter() - started
    assert result.code == 2
    lines = console(result.stderr)
    assert len(lines) == 1 and says in lines[0] and "Fix:" in lines[0], lines
    assert not imported(result.stderr) & set(HEAVY), "validation must not wait for heavy imports"
    assert seconds < 5, f"{seconds:.1f}s (under 1 s on an idle machine; the bound allows a busy one)"
    assert not (tmp_path / "reports").exists()


@pytest.fixture()
def image_folders(tmp_path: Path) -> dict[str, Path]:
    """An empty folder, and a folder of one real photo plus a broken link."""
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    empty.mkdir()
    broken.mkdir()
    shutil.copy(package_dir("insightface") / "insightface" / "data" / "images" / "t1.jpg", broken)
    (broken / "zz.jpg").symlink_to(tmp_path / "gone.jpg")
    return {"empty": empty, "broken": broken}


# mistakes found late before (after both .rknn builds, or as exit 3): now refused before anything is built
EARLY_REFUSALS = [
    (["run", "retinaface", "--set", "evaluate.images=[{dir: EMPTY}]"], "[evaluate.images]: no images found"),
    (["run", "retinaface", "--set", "quantization.calibration.images=[{dir: BROKEN}]"],
     "zz.jpg [quantization.calibration.images.0]: a broken link (to "),
    (["run", "retinaface", "--set", "evaluate.images=[{dir: BROKEN}]"], "zz.jpg [evaluate.images.0]: a broken link"),
    (["run", "retinaface", "--set", "preprocess.std=[1, 0, 1]"], "[preprocess.std.1]: 0.0 cannot divide pixels"),
    (["run", "retinaface", "--set", "preprocess.std=[1, .nan, 1]"], "[preprocess.std.1]: nan cannot divide pixels"),
    (["run", "retinaface", "--set", "preprocess.mean=[104, 117, 300]"],
     "[preprocess.mean.2]: 300.0 is outside the input's pixel range 0-255"),
    (["sweep", "retinaface", "--grid", "quantization.algorithm=normal,bogus"],
     "--grid quantization.algorithm=bogus [quantization.algorithm]: 'bogus' is not allowed"),
]


@pytest.mark.parametrize("args, says", EARLY_REFUSALS)
def test_input_found_late_before_is_refused_before_anything_is_built(args: list[str], says: str, tmp_path: Path,
                                                                     image_folders: dict[str, Path],
                                                                     workspace: Path) -> None:
    args = [a.replace("EMPTY", str(image_folders["empty"])).replace("BROKEN", str(image_folders["broken"]))
            for a in args]
    models = {p: p.stat().st_mtime_ns for p in (workspace / "models").rglob("*") if p.is_file()}
    calib = {p: p.stat().st_mtime_ns for p in (workspace / "calib_data").rglob("*") if p.is_file()}
    started = time.perf_counter()
    result = rkverify(*args, "--reports", str(tmp_path / "reports"), python_flags=("-X", "importtime"))
    seconds = time.perf_counter() - started
    assert result.code == 2, result.stderr[-2000:]
    lines = console(result.stderr)
    assert len(lines) == 1 and says in lines[0] and "Fix:" in lines[0], lines
    # OpenCV may load to read the eval images; nothing that converts or builds does
    assert not imported(result.stderr) & {"rknn", "torch", "tensorflow", "mxnet", "onnx", "onnxruntime", "onnxsim"}
    assert seconds < 5, f"{seconds:.1f}s"
    assert not (tmp_path / "reports").exists()
    assert {p: p.stat().st_mtime_ns for p in (workspace / "models").rglob("*") if p.is_file()} == models
    assert {p: p.stat().st_mtime_ns for p in (workspace / "calib_data").rglob("*") if p.is_file()} == calib


@pytest.mark.parametrize("engine", [[], ["--ray"]], ids=["pool", "ray"])
def test_a_sweep_whose_every_variant_is_refused_is_bad_input(engine: list[str], tmp_path: Path) -> None:
    """w16a16i_dfp on a PRelu graph crashes the toolkit on rk3588, so the recipe check refuses it: a
    sweep of only such variants measured nothing, and says so with exit 2, not 'a gate failed'; on Ray
    too (the refusal is found in the worker and comes back as bad input, not as a Ray error)."""
    if engine:
        pytest.importorskip("ray")
    result = rkverify("sweep", "arcface-mobilefacenet", "--grid", "quantization.dtype=w16a16i_dfp",
                      "--grid", "quantization.algorithm=normal,mmse", "--reports", str(tmp_path), *engine)
    assert result.code == 2, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("v0")]
    assert len(rows) == 2 and all("crashes building w16a16i_dfp" in row for row in rows)
    assert result.last_line == "rkverify: error: no variant could be measured (the rows above say why)"
    assert engine or result.stderr.strip() == result.last_line  # Ray prints its start-up lines before it


def test_anchor_count_matches_the_decoder() -> None:
    cfg = DetectionEval()
    assert cfg.anchor_count(48, 48) == len(priors(cfg, 48, 48)) == 98
    assert cfg.anchor_count(640, 608) == len(priors(cfg, 640, 608))


def test_outputs_that_do_not_fit_the_anchors_are_bad_input(tmp_path: Path) -> None:
    """What `ValueError: 1 predictions but 98 anchors` was: refused before the build, on evaluate.detection."""
    result = rkverify("run", "retinaface", "--set", "evaluate.detection.steps=[8, 16]",
                      "--set", "evaluate.detection.min_sizes=[[16, 32], [64, 128]]", "--reports", str(tmp_path / "r"))
    assert result.code == 2, result.stderr[-2000:]
    assert result.last_line.startswith("rkverify: error: ") and "[evaluate.detection]" in result.last_line
    assert "gives 16800 predictions" in result.last_line and "16000 anchors" in result.last_line
    assert "Traceback" not in result.stderr and "rknn build" not in result.stderr


def test_render_of_a_folder_without_a_run_is_bad_input(tmp_path: Path) -> None:
    result = rkverify("render", str(tmp_path))
    assert result.code == 2 and result.last_line.endswith("Fix: give a run folder, reports/<recipe>/<run-id>/ "
                                                          "(see reports/index.html)")
    assert "has no metrics.json" in result.last_line


@pytest.fixture()
def project_on_a_small_disk(tmp_path: Path):
    """A copy of the project whose models/ holds the source model but not its ONNX: a tmpfs of that size
    where one can be mounted, else a folder whose writes fail with ENOSPC past that size
    (tests/disk_full/sitecustomize.py), so the path is tested everywhere. Yields (root, environment)."""
    root = tmp_path / "project"
    for part in ("core", "convert", "verify"):
        shutil.copytree(PROJECT_ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "rkverify.py", root)
    models = root / "models"
    models.mkdir()
    size = 1_736_694 + 64 * 1024  # the RetinaFace source ONNX, and not another copy of it
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(models)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:  # the source is written through pathlib, the ONNX through open(): only it counts
        yield root, os.environ | {WORKSPACE_ENV: str(root), "PYTHONPATH": str(PROJECT_ROOT / "tests" / "disk_full"),
                                  "RKVERIFY_TEST_DISK_FOLDER": str(models), "RKVERIFY_TEST_DISK_BYTES": str(64 * 1024)}
        return
    try:
        yield root, os.environ | {WORKSPACE_ENV: str(root)}
    finally:
        subprocess.run(["umount", str(models)], check=False)


def test_no_space_left_is_an_environment_failure_with_a_log(project_on_a_small_disk: tuple[Path, dict],
                                                             tmp_path: Path) -> None:
    root, env = project_on_a_small_disk
    reports = tmp_path / "reports"
    result = rkverify("run", "retinaface", "--fresh", "--reports", str(reports), root=root, env=env)
    assert result.code == 3, result.stderr[-2000:]
    line = result.last_line
    assert line.startswith("rkverify: failed during 'canonical float ONNX (fixed shape, onnxsim)': no space left "
                           "on device writing ") and "models/retinaface/retinaface.onnx" in line
    assert "MB free of" in line and "[quantization" not in line and "Traceback" not in result.stderr
    log = Path(line.rsplit("full traceback in ", 1)[1].rstrip(")"))
    assert log == reports / "retinaface" / "last-error.log"
    assert "No space left on device" in log.read_text() and "Traceback" in log.read_text()
    # the run did not finish: the folder it made is not kept either (convert.run_guard)
    assert not (root / "models" / "retinaface").exists()
    assert not [p for p in (root / "models").iterdir() if not p.name.endswith(".lock")]


PROGRESS_BAR = re.compile(r"^\s*[\w-]+:\s+\d+%\|")  # tqdm's line, e.g. "rknn-simulator:  50%|█████     | 4/8"


def artifact_set(model_dir: Path) -> dict[str, dict[str, str]]:
    """sha256 of each build's .rknn, .build.log and .json, per artifact stem."""
    return {rknn.stem: {suffix: sha256_file(rknn.with_suffix(suffix)) for suffix in (".rknn", ".build.log", ".json")}
            for rknn in sorted(model_dir.glob("*.rknn"))}


def interrupted_run(model_dir: Path, tmp_path: Path, signum: int, after_build: bool) -> tuple[int, str]:
    """Run retinaface as a user does, with its own temp folder, and send `signum` to its process group
    (as Ctrl-C, CI runners and `timeout` do) mid-build, or once both builds are in place (mid-verification)."""
    partial = model_dir / "retinaface-w8a8-rk3588.build.log.partial"
    partial.unlink(missing_ok=True)
    temp = tmp_path / "tmp"
    temp.mkdir()
    started = time.time_ns()
    fp16_json = model_dir / "retinaface-float16-rk3588.json"
    process = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "rkverify.py"), "run", "retinaface", "--fresh",
                                "--reports", str(tmp_path / "reports")], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=os.environ | {"TMPDIR": str(temp)})
    deadline = time.monotonic() + 600

    def ready() -> bool:
        if after_build:  # the float16 build (the second) has written its provenance: verification is on
            return fp16_json.is_file() and fp16_json.stat().st_mtime_ns > started
        return partial.is_file() and partial.stat().st_size > 10_000

    while not ready() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    if after_build:
        time.sleep(3)  # into the simulator steps
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=180)
    assert not partial.exists(), "nothing half-written is kept"
    assert not list(temp.iterdir()), f"temp folders left: {sorted(p.name for p in temp.iterdir())}"
    assert not (tmp_path / "reports").exists()
    return process.returncode, stderr


def copy_of_the_run(run_dir: Path, workspace: Path) -> None:
    """The session's retinaface run's models/ and calib_data/ copied into the test's own workspace."""
    for part in ("models", "calib_data"):
        shutil.copytree(workspace_of(run_dir) / part, workspace / part, dirs_exist_ok=True)


def test_ctrl_c_mid_build_is_one_line_and_keeps_model_and_log_a_pair(retinaface_run: Path, tmp_path: Path,
                                                                     workspace: Path) -> None:
    copy_of_the_run(retinaface_run, workspace)
    model_dir = workspace / "models" / "retinaface"
    before = artifact_set(model_dir)
    assert before, "the session's retinaface run left builds to compare with"
    code, stderr = interrupted_run(model_dir, tmp_path, signal.SIGINT, after_build=False)
    assert code == 130, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if not line.startswith("[rkverify]") and line.strip()]
    assert lines[-1].startswith("rkverify: interrupted;") and "Traceback" not in stderr
    after = artifact_set(model_dir)
    assert after.keys() == before.keys()
    for stem, files in after.items():  # a build's three files changed together or not at all
        changed = {suffix for suffix in files if files[suffix] != before[stem][suffix]}
        assert changed in (set(), set(files)), (stem, changed)
        provenance = json.loads((model_dir / f"{stem}.json").read_text())
        assert provenance["artifact_sha256"] == files[".rknn"]


@pytest.mark.parametrize("after_build", [False, True], ids=["mid-build", "mid-verification"])
def test_sigterm_is_one_line_cleans_up_and_keeps_the_previous_artifacts(retinaface_run: Path, tmp_path: Path,
                                                                        after_build: bool, workspace: Path) -> None:
    """SIGTERM (CI runners, `timeout`, schedulers) ends the run as Ctrl-C does: one line, exit 143, no
    .partial log, no temp folder; and the run did not finish, so models/ and calib_data/ are as before
    (mid-verification too, when both new builds were already in place)."""
    copy_of_the_run(retinaface_run, workspace)
    model_dir = workspace / "models" / "retinaface"
    manifest = workspace / "calib_data" / "faces-640-bgr" / "manifest.json"
    before, manifest_before = artifact_set(model_dir), sha256_file(manifest)
    code, stderr = interrupted_run(model_dir, tmp_path, signal.SIGTERM, after_build)
    assert code == 143, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if not line.startswith("[rkverify]") and line.strip()
             and not PROGRESS_BAR.match(line)]  # an engine's progress bar may be on screen when the signal lands
    assert lines == ["rkverify: terminated (SIGTERM); nothing half-written was kept: earlier models, calibration "
                     "sets and reports are as they were"], stderr[-2000:]
    assert artifact_set(model_dir) == before
    assert sha256_file(manifest) == manifest_before
    assert not [p.name for p in model_dir.parent.iterdir() if p.name.startswith(".retinaface.")
                and not p.name.endswith(".lock")], "no backup left"
