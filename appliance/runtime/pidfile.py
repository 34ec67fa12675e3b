"""The portal in the background: started detached, found by its pid file, stopped, asked if it answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from ..datadir import DataDir


def running_pid(data: DataDir) -> int | None:
    try:
        pid = int(data.pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def health(host: str, port: int, timeout: float = 2.0) -> dict | None:
    """The portal's /healthz on this machine (an address bound to every interface is asked on loopback)."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://[{probe_host}]:{port}/healthz" if ":" in probe_host else f"http://{probe_host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def start_detached(data: DataDir, args: list[str], host: str, port: int, wait_s: float = 60) -> int:
    """Start `almanac serve ARGS` in its own session, logging to logs/server.log; return once it answers."""
    log = open(data.logs / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}; see {data.logs / 'server.log'}")
        if health(host, port, timeout=1):
            return proc.pid
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer within {wait_s:.0f} s; see {data.logs / 'server.log'}")


def stop(data: DataDir, wait_s: float = 30) -> int | None:
    pid = running_pid(data)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return pid
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return pid
