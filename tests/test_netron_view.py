"""`rkverify.py view`: Netron serves the recipe's canonical ONNX on loopback, until Ctrl-C."""
from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import rkverify
from convert.onnx_prep import prepare_onnx
from convert.source import obtain_source
from core.artifacts import sha256_bytes, sha256_file
from core.recipe import PROJECT_ROOT, load_recipe
from core.workspace import models_dir
from verify.report.netron_view import model_to_view

LISTEN = "0A"  # TCP state in the kernel's socket tables
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


@pytest.fixture()
def onnx_path() -> Path:
    """models/retinaface/retinaface.onnx in the test's workspace, as `rkverify.py run retinaface` writes it."""
    loaded = load_recipe("retinaface")
    models = models_dir()
    return prepare_onnx(obtain_source(loaded, models).model, loaded, models / "retinaface" / "retinaface.onnx")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_on(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port` (IPv4 dotted, IPv6 as the kernel's hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == LISTEN and int(hex_port, 16) == port:
                found.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]) if len(address) == 8 else address)
    return found


def test_view_serves_the_onnx_on_loopback_until_ctrl_c(onnx_path: Path) -> None:
    port = free_port()
    # Ctrl-C must reach it even when this test runs with SIGINT ignored (a background CI job)
    view = subprocess.Popen([sys.executable, "rkverify.py", "view", "retinaface", "--port", str(port)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        ready, _, _ = select.select([view.stdout], [], [], 120)
        assert ready, "no address printed within 120 s"
        line = view.stdout.readline()
        assert line.startswith(f"netron: http://127.0.0.1:{port}/ serves {onnx_path}"), line
        page = DIRECT.open(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "<title>Netron</title>" in page and '<meta name="file" content="/data/retinaface.onnx">' in page
        served = DIRECT.open(f"http://127.0.0.1:{port}/data/retinaface.onnx", timeout=60).read()
        assert sha256_bytes(served) == sha256_file(onnx_path)
        assert listening_on(port) == {"127.0.0.1"}
    finally:
        view.send_signal(signal.SIGINT)
        try:
            _, err = view.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            view.kill()
            raise
    assert view.returncode == 0, err
    assert listening_on(port) == set()


def test_view_names_the_missing_model_and_the_command_that_builds_it(recipe_copy, capsys) -> None:
    recipe = recipe_copy(lambda t: t.replace("name: retinaface\n", "name: retinaface-never-built\n"))
    assert rkverify.main(["view", str(recipe), "--rknn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "models/retinaface-never-built/retinaface-never-built-w8a8-rk3588.rknn does not exist" in err
    assert f"Fix: build it first: python rkverify.py run {recipe}" in err


def test_view_reads_a_run_folder(onnx_path: Path, tmp_path: Path) -> None:
    run = tmp_path / "20260101T000000Z-00000000"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({
        "recipe": "retinaface", "recipe_path": str(PROJECT_ROOT / "convert/recipes/retinaface.yaml"),
        "provenance": {"artifact": "retinaface-w8a8-rk3588.rknn"}}))
    assert model_to_view(str(run), rknn=False) == onnx_path
    assert rkverify.main(["view", str(tmp_path)]) == 2  # a folder without metrics.json is not a run
