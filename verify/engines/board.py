"""Board preflight: before any work, say what stops the toolkit from reaching an RK board over adb.

rknn-toolkit2 talks to the board through adb and the board's rknn_server; a model built by
toolkit X needs librknnrt/rknn_server >= X on the board, else the run fails late with
"Invalid RKNN model version".
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import RkverifyError

RKNN_SERVER = "/usr/bin/rknn_server"
LIBRKNNRT = "/usr/lib/librknnrt.so"
VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class BoardInfo:
    device_id: str
    rknn_server_version: str
    librknnrt_version: str


def adb_path() -> str | None:
    """adb on PATH, else the one rknn-toolkit2 bundles (rknn/3rdparty/platform-tools), else None."""
    on_path = shutil.which("adb")
    if on_path:
        return on_path
    try:
        import importlib.util

        spec = importlib.util.find_spec("rknn")
    except ImportError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    bundled = Path(spec.submodule_search_locations[0]) / "3rdparty" / "platform-tools" / "adb" / "linux-x86_64" / "adb"
    return str(bundled) if bundled.is_file() else None


def _adb(*args: str, timeout: float = 20) -> str:
    done = subprocess.run([adb_path() or "adb", *args], capture_output=True, text=True, timeout=timeout)
    return done.stdout


def _version(text: str) -> tuple[int, ...] | None:
    match = VERSION.search(text)
    return tuple(int(g) for g in match.groups()) if match else None


def connected_devices() -> dict[str, str]:
    """serial -> state ('device', 'unauthorized', 'offline') from `adb devices`."""
    devices = {}
    for line in _adb("devices").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            devices[fields[0]] = fields[1]
    return devices


def preflight(device_id: str | None, toolkit_version: str) -> BoardInfo:
    where, field = "target", "target.device_id"
    if adb_path() is None:
        raise RkverifyError(where, "target.runtime", "adb is not on PATH (nor bundled with rknn-toolkit2)",
                            "install adb (Debian: apt-get install adb) or use target.runtime: simulator")
    devices = connected_devices()
    ready = [serial for serial, state in devices.items() if state == "device"]
    if device_id is None:
        if not devices:
            raise RkverifyError(where, field, "no board answers adb ('adb devices' lists none)",
                                "connect the board by USB (or 'adb connect IP:5555') and check 'adb devices'")
        if len(devices) > 1:
            raise RkverifyError(where, field, f"several devices connected ({', '.join(devices)}) and none chosen",
                                "pass --device-id SERIAL")
        device_id = next(iter(devices))
    if device_id not in devices:
        raise RkverifyError(where, field, f"device {device_id} is not connected (adb lists: {', '.join(devices) or 'none'})",
                            "check the serial with 'adb devices'")
    if device_id not in ready:
        raise RkverifyError(where, field, f"device {device_id} is {devices[device_id]}",
                            "accept the USB debugging prompt on the board, or reconnect it")
    if not _adb("-s", device_id, "shell", "pgrep rknn_server").strip():
        raise RkverifyError(where, "target.runtime", f"rknn_server is not running on {device_id}",
                            "start it on the board (restart_rknn.sh, or 'nohup rknn_server &')")
    wanted = _version(toolkit_version)
    found = {}
    for label, path in (("rknn_server", RKNN_SERVER), ("librknnrt", LIBRKNNRT)):
        text = _adb("-s", device_id, "shell", f"strings {path} | grep -i '{label} version'")
        version = _version(text)
        if version is None:
            raise RkverifyError(where, "target.runtime", f"cannot read the {label} version on {device_id} ({path})",
                                f"install rknn-toolkit2 {toolkit_version}'s runtime ({label}) on the board")
        if wanted and version < wanted:
            raise RkverifyError(where, "target.runtime",
                                f"{label} {'.'.join(map(str, version))} on {device_id} is older than rknn-toolkit2 "
                                f"{toolkit_version}: models would fail with 'Invalid RKNN model version'",
                                f"push {label} {toolkit_version} from rknn-toolkit2's runtime to {path}")
        found[label] = ".".join(map(str, version))
    return BoardInfo(device_id, found["rknn_server"], found["librknnrt"])
