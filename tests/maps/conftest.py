"""Map fixtures: the shared test archives read in place, and one real `almanac maps init` per test session
(the offline world basemap and the place index), reused by every test that needs them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MAPS, ROOT

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


@pytest.fixture(scope="session")
def built_maps(tmp_path_factory) -> Path:
    """A data dir's maps/ folder after a real `almanac maps init --no-npm`: world.pmtiles + gazetteer.db."""
    root = tmp_path_factory.mktemp("maps-init")
    (root / "config.yaml").write_text("server:\n  host: 127.0.0.1\n")
    env = {**os.environ, "ALMANAC_DATA": str(root / "data"), "ALMANAC_CONFIG": str(root / "config.yaml")}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "maps", "init", "--no-npm"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    maps = root / "data" / "maps"
    assert (maps / "world.pmtiles").is_file() and (maps / "gazetteer.db").is_file(), proc.stdout
    return maps


def install_built(built: Path, data_dir: Path) -> None:
    """Give a test's data dir the session's basemap and place index (copies: tests may change them)."""
    maps = data_dir / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for name in ("world.pmtiles", "gazetteer.db"):
        shutil.copyfile(built / name, maps / name)


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
