"""Map fixtures: the shared test archives read in place, and one real `almanac maps init` per test session
(the offline world basemap and the place index), reused by every test that needs them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from content.zim_builder import build_zim
from almanac_testing import MAPS, ROOT

ARCHIVES = {
    "protomaps": "world-ne110m-z0-4.pmtiles",
    "protomaps10m": "world-ne10m-z0-6.pmtiles",
    "openmaptiles": "helsinki-omt-z0-14.pmtiles",
    "raster": "stamen-toner-z0-3.pmtiles",
}


def shared_map(key: str) -> Path:
    path = MAPS / ARCHIVES[key]
    if not path.exists():
        pytest.fail(f"shared test map missing: {path} (set ALMANAC_SHARED to the shared/ folder)")
    return path


def wheelhouse_tarball() -> Path | None:
    """The newest maplibre-gl-X.Y.Z.tgz in $ALMANAC_WHEELHOUSE (tests/run.sh puts one there with npm pack)."""
    from content.maps.vendor import newest_tarball

    wheelhouse = os.environ.get("ALMANAC_WHEELHOUSE")
    return newest_tarball(Path(wheelhouse)) if wheelhouse and Path(wheelhouse).is_dir() else None


@pytest.fixture(scope="session")
def built_maps(tmp_path_factory) -> Path:
    """A data dir's maps/ folder after a real `almanac maps init --no-npm`: world.pmtiles + gazetteer.db, and
    MapLibre >= 5.11 unpacked from the wheelhouse's npm tarball when there is one (else the PyPI copy serves)."""
    root = tmp_path_factory.mktemp("maps-init")
    (root / "config.yaml").write_text("server:\n  host: 127.0.0.1\n")
    env = {**os.environ, "ALMANAC_DATA": str(root / "data"), "ALMANAC_CONFIG": str(root / "config.yaml")}
    tarball = wheelhouse_tarball()
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "maps", "init", "--no-npm",
                           *(["--maplibre-tarball", str(tarball)] if tarball else [])], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    maps = root / "data" / "maps"
    assert (maps / "world.pmtiles").is_file() and (maps / "gazetteer.db").is_file(), proc.stdout
    return maps


def install_built(built: Path, data_dir: Path) -> None:
    """Give a test's data dir the session's basemap, place index and MapLibre (copies: tests may change them)."""
    maps = data_dir / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for name in ("world.pmtiles", "gazetteer.db"):
        shutil.copyfile(built / name, maps / name)
    if (built / "vendor").is_dir():
        shutil.copytree(built / "vendor", maps / "vendor", dirs_exist_ok=True)


@pytest.fixture
def maps_app(config):
    """The portal with no books: what the map endpoints need and nothing more."""
    from appliance import create_app

    app = create_app(config)
    yield app
    st = app.extensions.get("almanac_maps")
    if st:
        st.registry.close()
    app.extensions["almanac"].library.close()


@pytest.fixture
def maps_client(maps_app):
    return maps_app.test_client()


PAGES = {
    "index.html": "<h1>Places of the North</h1><p>Cities with coordinates.</p>",
    "helsinki.html": '<h1>Helsinki</h1><p>Capital of Finland. <span class="geo-dec">'
                     '<span class="geo">60.1699; 24.9384</span></span></p>',
    "espoo.html": '<h1>Espoo</h1><p>Next to Helsinki. <span class="latitude">60.2055</span>, '
                  '<span class="longitude">24.6559</span></p>',
    "tallinn.html": '<h1>Tallinn</h1><p>Across the gulf. <span class="geo">59.4370; 24.7536</span></p>',
    "sydney.html": '<h1>Sydney</h1><p>Far away. <span class="geo">-33.8688; 151.2093</span></p>',
    "nowhere.html": "<h1>Sauna</h1><p>A room, not a place. Latitude is a word here.</p>",
}


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


@pytest.fixture
def browser():
    """Headless Debian Chromium driven over DevTools; a missing browser fails (CI installs it)."""
    from .cdp import Browser, chromium_path

    binary = chromium_path()
    if binary is None:
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    b = Browser(binary)
    yield b
    b.close()
