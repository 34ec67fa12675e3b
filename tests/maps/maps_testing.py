"""Helpers of the map tests: the shared test maps, the wheelhouse's MapLibre tarball, and giving a test's data
dir the session's built basemap. (Fixtures are in conftest.py; tests import helpers from here only.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from almanac_testing import MAPS

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


def install_built(built: Path, data_dir: Path) -> None:
    """Give a test's data dir the session's basemap, place index and MapLibre (copies: tests may change them)."""
    maps = data_dir / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for name in ("world.pmtiles", "gazetteer.db"):
        shutil.copyfile(built / name, maps / name)
    if (built / "vendor").is_dir():
        shutil.copytree(built / "vendor", maps / "vendor", dirs_exist_ok=True)


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
