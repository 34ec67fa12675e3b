"""Where MapLibre GL JS comes from: a package manager put it on disk at install time; it is never in the repo.

Looked for, best first:
1. `maplibre-gl` under the data dir's `maps/vendor/node_modules`, put there either by npm (`almanac maps init`
   runs `npm install` when npm is present) or unpacked from an npm tarball (`maps init --maplibre-tarball`,
   which is how an offline wheelhouse carries it); or $ALMANAC_MAPLIBRE_DIR (a `dist` folder holding
   maplibre-gl.js and maplibre-gl.css);
2. the PyPI package `maplibre`, which bundles maplibre-gl.js and its CSS (version 5.3 in maplibre 0.3.6).
MapLibre >= 5.11 draws labels with the browser's fonts when a style has no `glyphs`; older builds get a
style without text layers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

NPM_SPEC = "maplibre-gl@^5.11.0"
LOCAL_GLYPHS_SINCE = (5, 11, 0)
# Left in the package folder by install_tarball, so `find` can tell an unpacked tarball from npm's work.
TARBALL_MARK = ".almanac-tarball"
# What install_tarball takes from the tarball (member -> where it goes in the package folder); nothing else
# is ever written, so a member's name cannot place a file anywhere.
TARBALL_FILES = {
    "package/package.json": "package.json",
    "package/dist/maplibre-gl.js": "dist/maplibre-gl.js",
    "package/dist/maplibre-gl.css": "dist/maplibre-gl.css",
}
LICENSE_MEMBERS = ("package/LICENSE.txt", "package/LICENSE")
MAX_MEMBER_BYTES = 64 << 20  # maplibre-gl.js is about 1 MB; anything near this is not MapLibre


class VendorError(Exception):
    """A MapLibre tarball that cannot be used; the message is one line naming the file and why."""


@dataclass(frozen=True)
class MapLibre:
    js: Path
    css: Path
    version: tuple[int, int, int]
    origin: str  # "npm", "tarball" or "pypi"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def local_glyphs(self) -> bool:
        return self.version >= LOCAL_GLYPHS_SINCE


def npm_prefix(maps_dir: Path) -> Path:
    return Path(maps_dir) / "vendor"


def package_dir(maps_dir: Path) -> Path:
    """Where npm (and install_tarball) put the maplibre-gl package."""
    return npm_prefix(maps_dir) / "node_modules" / "maplibre-gl"


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


def _in_data_dir(maps_dir: Path) -> MapLibre | None:
    pkg = package_dir(maps_dir)
    return _from_dist(pkg / "dist", "tarball" if (pkg / TARBALL_MARK).exists() else "npm")


def find(maps_dir: Path) -> MapLibre | None:
    env_dir = os.environ.get("ALMANAC_MAPLIBRE_DIR")
    found = (_from_dist(Path(env_dir), "npm") if env_dir else None) or _in_data_dir(maps_dir)
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
        proc = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--omit=dev",
                "--ignore-scripts",
                "--prefer-offline",
                "--fetch-retries=1",
                "--fetch-timeout=20000",
                NPM_SPEC,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, f"npm install timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
        return False, f"npm install {NPM_SPEC}: {tail[0]}"
    found = _from_dist(package_dir(maps_dir) / "dist", "npm")
    return (
        (True, f"maplibre-gl {found.version_text} installed by npm")
        if found
        else (False, "npm finished but maplibre-gl/dist is missing")
    )


# -- the npm tarball (`npm pack maplibre-gl@^5.11.0`), unpacked with no node ---------------------------------
def _parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", str(text))
    return tuple(int(g) for g in m.groups()) if m else None


def newest_tarball(folder: Path) -> Path | None:
    """The newest `maplibre-gl-X.Y.Z.tgz` (npm pack's name) in a folder such as a wheelhouse; pre-releases
    are passed over."""
    found = [
        (v, p)
        for p in Path(folder).glob("maplibre-gl-*.tgz")
        if (v := _parse_version(p.name[len("maplibre-gl-") : -len(".tgz")]))
    ]
    return max(found)[1] if found else None


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name) is not None


def _read_tarball(tarball: Path) -> dict[str, bytes]:
    """The few members install_tarball needs, by name, after checking every member's name."""
    wanted = {*TARBALL_FILES, *LICENSE_MEMBERS}
    got: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            # Reading every header also finds a truncated file before anything is written.
            members = tar.getmembers()
            bad = next((m.name for m in members if _unsafe(m.name)), None)
            if bad is not None:
                raise VendorError(f"{tarball}: refused, it holds a file outside its package folder ({bad!r})")
            for m in members:
                if m.name not in wanted:
                    continue
                if not m.isfile():  # a link could point anywhere; npm pack writes plain files only
                    raise VendorError(f"{tarball}: refused, {m.name} is a link or folder, not a file")
                if m.size > MAX_MEMBER_BYTES:
                    raise VendorError(f"{tarball}: refused, {m.name} is {m.size >> 20} MB")
                got[m.name] = tar.extractfile(m).read()
    except FileNotFoundError:
        raise VendorError(f"{tarball}: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise VendorError(f"{tarball}: not a readable npm tarball ({str(e) or type(e).__name__})") from None
    return got


def _check_package(tarball: Path, got: dict[str, bytes]) -> tuple[int, int, int]:
    try:
        meta = json.loads(got["package/package.json"])
    except (KeyError, ValueError):
        raise VendorError(f"{tarball}: not an npm package (no readable package/package.json)") from None
    name = meta.get("name") if isinstance(meta, dict) else None
    if name != "maplibre-gl":
        raise VendorError(f"{tarball}: the package is {name!r}, not maplibre-gl")
    version = _parse_version(meta.get("version", ""))
    if version is None:
        raise VendorError(f"{tarball}: maplibre-gl with an unreadable version {meta.get('version')!r}")
    shown = ".".join(map(str, version))
    if version < LOCAL_GLYPHS_SINCE:
        raise VendorError(f"{tarball}: maplibre-gl {shown} is too old; labels need >= 5.11.0 ({NPM_SPEC})")
    missing = [m for m in TARBALL_FILES if m not in got]
    if missing:
        raise VendorError(f"{tarball}: maplibre-gl {shown} lacks {', '.join(missing)}")
    return version


def install_tarball(maps_dir: Path, tarball: Path) -> tuple[MapLibre, bool]:
    """Unpack maplibre-gl.js, its CSS and licence from an npm tarball to where npm would put them, unless a
    MapLibre as new is already there (so a re-run of the installer changes nothing). (the one in place, unpacked?)

    The files are written to a fresh folder beside the package folder, which then takes its place with renames,
    so a refused or broken tarball (VendorError) leaves whatever MapLibre was there before."""
    tarball = Path(tarball)
    got = _read_tarball(tarball)
    version = _check_package(tarball, got)
    target = package_dir(maps_dir)
    present = _in_data_dir(maps_dir)
    if present is not None and present.version >= version:
        return present, False
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".maplibre-gl.new-", dir=target.parent))
    try:
        fresh.chmod(0o755)  # mkdtemp makes it private; the portal may run as another account than this command
        for member, rel in TARBALL_FILES.items():
            (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
            (fresh / rel).write_bytes(got[member])
        licence = next((m for m in LICENSE_MEMBERS if m in got), None)
        if licence:
            (fresh / Path(licence).name).write_bytes(got[licence])
        (fresh / TARBALL_MARK).write_text(tarball.name + "\n")
        found = _from_dist(fresh / "dist", "tarball")
        if found is None or found.version != version:
            said = found.version_text if found else "nothing"
            raise VendorError(
                f"{tarball}: its package.json says {'.'.join(map(str, version))} but maplibre-gl.js says {said}"
            )
        _swap_in(fresh, target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return _from_dist(target / "dist", "tarball"), True


def _swap_in(fresh: Path, target: Path) -> None:
    """Put `fresh` at `target`. A folder cannot be renamed over a non-empty one, so the old one steps aside
    first and comes back if the second rename fails."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".maplibre-gl.old-", dir=target.parent))
        os.rename(target, old / "pkg")
    try:
        os.rename(fresh, target)
    except OSError:
        if old is not None:
            os.rename(old / "pkg", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
