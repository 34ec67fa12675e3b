"""Helpers shared by the top-level tests (a unique module name: tests/engine has its own conftest)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALMANAC_SHARED", ROOT.parent / "shared"))
ZIMS = SHARED / "testdata" / "zim"
MAPS = SHARED / "testdata" / "maps"


def zim(name: str) -> Path:
    path = ZIMS / f"{name}.zim"
    if not path.exists():
        pytest.fail(f"shared test archive missing: {path} (set ALMANAC_SHARED to the shared/ folder)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def almanac(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def sse_events(body: str) -> list[tuple[str, object]]:
    """(event name, parsed JSON data) of each server-sent event in a finished stream."""
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out
