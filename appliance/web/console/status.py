"""The console's Status: what `almanac status` and `almanac doctor` say, the disk, memory, uptime and the
last lines of the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from flask import request

from ...status_report import status_report
from .. import worker_state
from ..render import page

LOGS = ("server.log", "downloads.log", "model.log", "answers.log")
LOG_LINES = 40


def _memory() -> dict:
    """Total and available memory in bytes (Linux /proc/meminfo; elsewhere the total only)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}
    except (OSError, ValueError, IndexError):
        try:
            return {"total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "available_bytes": None}
        except (ValueError, OSError):
            return {"total_bytes": None, "available_bytes": None}


def _boot_uptime_s() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return None


def _tail(path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()][-lines:]


def doctor_checks(config) -> dict:
    """`almanac doctor --json` in its own process (its MLX check loads MLX, which a web worker should not)."""
    env = dict(os.environ, ALMANAC_DATA=str(worker_state.get().data.root))
    if config.path:
        env["ALMANAC_CONFIG"] = str(config.path)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "doctor", "--json"],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        return json.loads(done.stdout)
    except (subprocess.TimeoutExpired, ValueError, OSError) as e:
        return {"checks": [{"name": "doctor", "ok": False, "detail": f"could not run: {e}", "fix": ""}], "ok": False}


def status_page():
    """GET /admin/status[?doctor=0]: doctor runs unless asked not to (it takes a few seconds)."""
    s = worker_state.get()
    with_doctor = request.args.get("doctor", "1") != "0"
    logs = {name: _tail(s.data.logs / name, LOG_LINES) for name in LOGS if (s.data.logs / name).is_file()}
    data = {
        "status": status_report(s.config, s.data, library=s.library),
        "doctor": doctor_checks(s.config) if with_doctor else None,
        "memory": _memory(),
        "portal_uptime_s": s.uptime_s(),
        "box_uptime_s": _boot_uptime_s(),
        "load": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "logs": logs,
        "time": time.time(),
    }
    return page("console/status.html", data)
