"""Where MapLibre GL JS comes from: a package manager put it on disk at install time; it is never in the repo.

Looked for, best first:
1. npm's `maplibre-gl` under the data dir (`almanac maps init` runs `npm install` there when npm is present),
   or under $ALMANAC_MAPLIBRE_DIR (a `dist` folder holding maplibre-gl.js and maplibre-gl.css);
2. the PyPI package `maplibre`, which bundles maplibre-gl.js and its CSS (version 5.3 in maplibre 0.3.6).
MapLibre >= 5.11 draws labels with the browser's fonts when a style has no `glyphs`; older builds get a
style without text layers.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NPM_SPEC = "maplibre-gl@^5.11.0"
LOCAL_GLYPHS_SINCE = (5, 11, 0)


@dataclass(frozen=True)
class MapLibre:
    js: Path
    css: Path
    version: tuple[int, int, int]
    origin: str  # "npm" or "pypi"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def local_glyphs(self) -> bool:
        return self.version >= LOCAL_GLYPHS_SINCE


def npm_prefix(maps_dir: Path) -> Path:
    return Path(maps_dir) / "vendor"


def _version_of(js: Path) -> tuple[int, int, int]:
    with open(js, "rb") as f:
        head = f.read(400).decode("utf-8", "replace")
    m = re.search(r"/v(\d+)\.(\d+)\.(\d+)/LICENSE", head) or re.search(r"v?(\d+)\.(\d+)\.(\d+)", head)
    return tuple(int(g) for g in m.groups()) if m else (0, 0, 0)


def _from_dist(dist: Path, origin: str) -> MapLibre | None:
    js, css = dist / "maplibre-gl.js", dist / "maplibre-gl.css"
    if js.is_file() and css.is_file():
        return MapLibre(js, css, _version_of(js), origin)
    return None


def find(maps_dir: Path) -> MapLibre | None:
    candidates = []
    if os.environ.get("ALMANAC_MAPLIBRE_DIR"):
        candidates.append((Path(os.environ["ALMANAC_MAPLIBRE_DIR"]), "npm"))
    candidates.append((npm_prefix(maps_dir) / "node_modules" / "maplibre-gl" / "dist", "npm"))
    for dist, origin in candidates:
        found = _from_dist(dist, origin)
        if found:
            return found
    # PyPI `maplibre`: only its bundled files are used; importing it would pull in its widget frameworks.
    spec = importlib.util.find_spec("maplibre")
    if spec is None or not spec.submodule_search_locations:
        return None
    return _from_dist(Path(list(spec.submodule_search_locations)[0]) / "srcjs", "pypi")


def npm_install(maps_dir: Path, timeout_s: float = 300) -> tuple[bool, str]:
    """Install maplibre-gl with npm under the data dir. (done, one line saying what happened)."""
    npm = shutil.which("npm")
    if npm is None:
        return False, "npm not found"
    prefix = npm_prefix(maps_dir)
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                               "--omit=dev", "--ignore-scripts", "--prefer-offline", "--fetch-retries=1",
                               "--fetch-timeout=20000", NPM_SPEC],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"npm install timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
        return False, f"npm install {NPM_SPEC}: {tail[0]}"
    found = _from_dist(prefix / "node_modules" / "maplibre-gl" / "dist", "npm")
    return (True, f"maplibre-gl {found.version_text} installed by npm") if found else (
        False, "npm finished but maplibre-gl/dist is missing")
