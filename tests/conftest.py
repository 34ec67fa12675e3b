"""Shared fixtures: real archives from shared/testdata, a tmp data dir, the app, a CLI runner and a live server."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from almanac_testing import MAPS, ROOT, SHARED, ZIMS, almanac, free_port, wait_http, zim  # noqa: F401


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
