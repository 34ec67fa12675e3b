"""Map fixtures: the shared test archives read in place, and one real `almanac maps init` per test session
(the offline world basemap and the place index), reused by every test that needs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from almanac_testing import ROOT
from content.zim_builder import build_zim

from .maps_testing import PAGES, wheelhouse_tarball


@pytest.fixture(scope="session")
def built_maps(tmp_path_factory) -> Path:
    """A data dir's maps/ folder after a real `almanac maps init --no-npm`: world.pmtiles + gazetteer.db, and
    MapLibre >= 5.11 unpacked from the wheelhouse's npm tarball when there is one (else the PyPI copy serves)."""
    root = tmp_path_factory.mktemp("maps-init")
    (root / "config.yaml").write_text("server:\n  host: 127.0.0.1\n")
    env = {**os.environ, "ALMANAC_DATA": str(root / "data"), "ALMANAC_CONFIG": str(root / "config.yaml")}
    tarball = wheelhouse_tarball()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "maps",
            "init",
            "--no-npm",
            *(["--maplibre-tarball", str(tarball)] if tarball else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    maps = root / "data" / "maps"
    assert (maps / "world.pmtiles").is_file() and (maps / "gazetteer.db").is_file(), proc.stdout
    return maps


@pytest.fixture
def maps_app(config):
    """The portal with no books: what the map endpoints need and nothing more."""
    from appliance.web import create_app

    app = create_app(config)
    yield app
    app.extensions["almanac"].close()


@pytest.fixture
def maps_client(maps_app):
    return maps_app.test_client()


@pytest.fixture
def geo_book(tmp_path, data_dir):
    src = tmp_path / "north"
    src.mkdir()
    for name, body in PAGES.items():
        (src / name).write_text(body)
    out = data_dir / "archives" / "north.zim"
    out.parent.mkdir(parents=True, exist_ok=True)
    build_zim(src, out, title="Places of the North", description="Test book with coordinates")
    return out
