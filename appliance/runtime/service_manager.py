"""Is Almanac installed as a service, and is it running? Asks systemd or launchd, else the pid file."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..datadir import DataDir
from .pidfile import running_pid

UNIT = "almanac.service"
LAUNCHD_LABEL = "org.almanac.server"


@dataclass(frozen=True)
class ServiceState:
    manager: str  # systemd, systemd-user, launchd, none
    installed: bool
    state: str  # active, inactive, failed, running (by hand), stopped, unknown

    def describe(self) -> str:
        if self.manager == "none":
            return f"no service manager; server {self.state}"
        return f"{self.manager}: {'installed' if self.installed else 'not installed'}, {self.state}"


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return done.returncode, done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""


def detect(data: DataDir) -> ServiceState:
    by_hand = "running (started by hand)" if running_pid(data) else "stopped"
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        for manager, extra in (("systemd", []), ("systemd-user", ["--user"])):
            code, out = _run(["systemctl", *extra, "show", UNIT, "--property=LoadState,ActiveState"])
            props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            if code == 0 and props.get("LoadState") == "loaded":
                return ServiceState(manager, True, props.get("ActiveState", "unknown"))
        return ServiceState("systemd", False, by_hand)
    if os.uname().sysname == "Darwin" and shutil.which("launchctl"):
        for domain in ("system", f"gui/{os.getuid()}"):
            code, out = _run(["launchctl", "print", f"{domain}/{LAUNCHD_LABEL}"])
            if code == 0:
                state = next(
                    (ln.split("=", 1)[1].strip() for ln in out.splitlines() if ln.strip().startswith("state =")),
                    "unknown",
                )
                return ServiceState("launchd", True, state)
        return ServiceState("launchd", False, by_hand)
    return ServiceState("none", False, by_hand)
