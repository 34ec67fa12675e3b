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


def stop_process(proc: subprocess.Popen, wait_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `wait_s`; returns once it has ended."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


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


def start_model_server(model_dir: Path, port: int = 0, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`almanac model serve` on a converted model; returns the process and its URL once it listens. Its
    request log goes to `log` (appended), else nowhere."""
    import select
    import threading

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "model", "serve", str(model_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=open(log, "a") if log else subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    ready, _, _ = select.select([p.stdout], [], [], 180)
    line = p.stdout.readline() if ready else ""
    if " on http://127.0.0.1:" not in line:
        p.kill()
        pytest.fail(f"model server did not start: {line!r} {log.read_text() if log else p.stderr.read()}")
    if not log:
        threading.Thread(target=p.stderr.read, daemon=True).start()  # its request log must not fill the pipe
    threading.Thread(target=p.stdout.read, daemon=True).start()
    return p, line.split(" on ")[1].split()[0]


class Portal:
    """`almanac serve` as a real process on 127.0.0.1 over its own data dir, with books added; start() and
    stop() (or kill() for a `kill -9`) may be called again on the same data dir."""

    def __init__(self, tmp_path: Path, config_yaml: str, books: tuple[str, ...] = ("example",)):
        self.root = tmp_path
        self.data = tmp_path / "data"
        self.config = tmp_path / "config.yaml"
        self.config.write_text(config_yaml)
        self.env = dict(os.environ, ALMANAC_DATA=str(self.data), ALMANAC_CONFIG=str(self.config), HF_HUB_OFFLINE="1")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0
        for name in books:
            done = almanac("content", "add", str(zim(name)), env=self.env)
            assert done.returncode == 0, done.stderr

    def start(self) -> str:
        port = free_port()
        self.starts += 1
        log = open(self.root / f"serve-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.url}/healthz")
        return self.url

    def kill(self) -> None:
        """kill -9 of the portal's main process, as a power cut or the OOM killer would."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> Portal:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def csrf_headers(client) -> dict:
    """The X-CSRF-Token header of a Flask test client's device (its cookie is kept by the client)."""
    return {"X-CSRF-Token": client.get("/api/csrf").get_json()["csrf_token"]}


class Device:
    """One phone or laptop: an HTTP client that keeps the portal's device cookie."""

    def __init__(self):
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, url: str, method: str = "GET", body=None, accept: str = "application/json", timeout=120):
        """(status, parsed JSON or text) of one request; errors come back as their status, not raised. A change
        (POST, DELETE) carries this device's CSRF token, as the portal's pages send it."""
        import urllib.error
        from urllib.parse import urlsplit

        headers = {"Accept": accept}
        if method not in ("GET", "HEAD"):
            if self.csrf is None:
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
                self.csrf = self.request(f"{origin}/api/csrf")[1]["csrf_token"]
            headers["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if self.cookie:
            headers["Cookie"] = self.cookie
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw, got = r.status, r.read(), r.headers.get_all("Set-Cookie") or []
                kind = r.headers.get_content_type()
        except urllib.error.HTTPError as e:
            status, raw, got, kind = (
                e.code,
                e.read(),
                e.headers.get_all("Set-Cookie") or [],
                e.headers.get_content_type(),
            )
        for c in got:
            if c.startswith("almanac_device="):
                self.cookie = c.split(";", 1)[0]
        text = raw.decode("utf-8", "replace")
        return status, json.loads(text) if kind == "application/json" else text
