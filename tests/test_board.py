"""Board preflight at the process boundary: a fake `adb` on PATH answers as the real one does."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from core.errors import RkverifyError
from verify.engines.board import preflight

FAKE_ADB = r"""#!/usr/bin/env bash
# answers like adb for the case in $FAKE_ADB_CASE
case="$FAKE_ADB_CASE"
if [ "$1" = devices ]; then
  echo "List of devices attached"
  case "$case" in
    none) ;;
    several) printf 'a1b2c3\tdevice\n192.168.1.7:5555\tdevice\n' ;;
    unauthorized) printf 'a1b2c3\tunauthorized\n' ;;
    *) printf 'a1b2c3\tdevice\n' ;;
  esac
  echo
  exit 0
fi
[ "$1" = -s ] && shift 2
[ "$1" = shell ] || exit 1
case "$2" in
  "pgrep rknn_server") [ "$case" = no_server ] || echo 1234 ;;
  *rknn_server*) [ "$case" = old_server ] && echo "rknn_server version: 1.6.0 (2f9d3ff build@2023-11-23)" \
                   || echo "rknn_server version: 2.5.0 (aa11bb2 build@2025-06-10)" ;;
  *librknnrt*) [ "$case" = old_runtime ] && echo "librknnrt version: 2.3.0 (c949ad889d@2024-11-07T11:35:33)" \
                   || echo "librknnrt version: 2.5.0 (3bd7be6e8a@2025-06-10T14:17:05)" ;;
esac
"""


@pytest.fixture()
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "adb").write_text(FAKE_ADB)
    (tmp_path / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")

    def use(case: str) -> None:
        monkeypatch.setenv("FAKE_ADB_CASE", case)

    return use


def test_board_ready(fake_adb) -> None:
    fake_adb("ok")
    info = preflight(None, "2.5.0")
    assert info.device_id == "a1b2c3" and info.librknnrt_version == "2.5.0" and info.rknn_server_version == "2.5.0"


@pytest.mark.parametrize("case, device, expected", [
    ("none", None, "no board answers adb"),
    ("several", None, "several devices connected (a1b2c3, 192.168.1.7:5555) and none chosen"),
    ("several", "ffff", "device ffff is not connected"),
    ("unauthorized", None, "device a1b2c3 is unauthorized"),
    ("no_server", None, "rknn_server is not running on a1b2c3"),
    ("old_server", None, "rknn_server 1.6.0 on a1b2c3 is older than rknn-toolkit2 2.5.0"),
    ("old_runtime", None, "librknnrt 2.3.0 on a1b2c3 is older than rknn-toolkit2 2.5.0"),
])
def test_preflight_says_what_is_wrong(fake_adb, case: str, device: str | None, expected: str) -> None:
    fake_adb(case)
    with pytest.raises(RkverifyError) as err:
        preflight(device, "2.5.0")
    assert expected in str(err.value) and "Fix:" in str(err.value)


def test_several_devices_with_one_chosen(fake_adb) -> None:
    fake_adb("several")
    assert preflight("192.168.1.7:5555", "2.5.0").device_id == "192.168.1.7:5555"


def test_adb_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("verify.engines.board.adb_path", lambda: None)  # hide the toolkit's bundled adb too
    with pytest.raises(RkverifyError, match="adb is not on PATH"):
        preflight(None, "2.5.0")


def test_toolkit_bundled_adb_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from verify.engines.board import adb_path

    monkeypatch.setenv("PATH", str(tmp_path))
    found = adb_path()
    assert found and found.endswith("platform-tools/adb/linux-x86_64/adb") and Path(found).is_file()


def test_board_runner_without_a_board_fails_clearly(retinaface_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The real toolkit and its own adb: with no board attached, init_runtime fails with one message."""
    from tests.conftest import workspace_of
    from verify.engines.board import adb_path
    from verify.engines.runners import RknnRunner, board_loader

    model = workspace_of(retinaface_run) / "models" / "retinaface" / "retinaface-w8a8-rk3588.rknn"
    log = tmp_path / "toolkit.log"
    runner = RknnRunner(board_loader(model, log), ["loc", "conf", "landmarks"], "NCHW", log,
                        target="rk3588", device_id="no-such-board")
    # the toolkit starts adb's server, a daemon that keeps the files this process had open (a CI job's
    # locks too): one of this test's own, on a port of its own, stopped after it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(probe.getsockname()[1]))
    try:
        with pytest.raises(RuntimeError, match="rknn-rk3588: init_runtime failed"):
            runner.activate()
    finally:
        subprocess.run([adb_path() or "adb", "kill-server"], capture_output=True, timeout=30, check=False)
    assert log.stat().st_size > 0


def test_cli_board_run_stops_before_any_work(fake_adb, tmp_path: Path, capsys) -> None:
    import rkverify

    fake_adb("several")
    code = rkverify.main(["run", "retinaface", "--target", "rk3588", "--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and "several devices connected" in err and "--device-id" in err
    assert not (tmp_path / "reports").exists()
