"""Shared fixtures: real archives from shared/testdata, a tmp data dir, the app, a CLI runner and a live server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

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


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("ALMANAC_DATA", str(data))
    monkeypatch.setenv("ALMANAC_CONFIG", str(tmp_path / "config.yaml"))
    (tmp_path / "config.yaml").write_text("server:\n  host: 127.0.0.1\n")
    return data


@pytest.fixture
def config(data_dir):
    from appliance.config import load_config

    return load_config()


@pytest.fixture
def app(config):
    from appliance import create_app

    app = create_app(config)
    library = app.extensions["almanac"].library
    for name in ("example", "small_withns", "small_nons", "poor", "corner_cases", "wikibooks_be_all_nopic_2017-02"):
        library.add(zim(name))
    yield app
    library.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(data_dir):
    return CliRunner()


def almanac(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def live_server(data_dir):
    """`almanac serve` as a real gunicorn process on a free port of 127.0.0.1."""
    port = free_port()
    log = open(data_dir.parent / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
