"""Which map archives this box serves: every archive in the data dir's maps folder, plus archives
registered in place from elsewhere (`almanac maps add PATH`). Handles stay open and are reopened when
their file changes on disk.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .. import db
from .tiles import EXTENSIONS, ArchiveError, describe, open_archive

SCHEMA = """
CREATE TABLE IF NOT EXISTS map_archives (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    added_at REAL NOT NULL
);
"""
BASEMAP_NAME = "world"  # the embedded world basemap built by `almanac maps init`


def archive_name(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix in EXTENSIONS else path.name


def valid_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")


class MapRegistry:
    def __init__(self, db_path: Path, maps_dir: Path):
        self.maps_dir = Path(maps_dir)
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, int, object]] = {}  # name -> (path, mtime_ns, archive)
        self._checked: dict[str, float] = {}  # name -> when its file was last stat()ed
        self._paths: dict[str, Path] = {}
        self._scanned_at = 0.0

    # -- which archives ---------------------------------------------------------------------------
    def paths(self, max_age_s: float = 5.0) -> dict[str, Path]:
        """name -> file, from the maps folder and the registered paths; rescanned at most every few seconds."""
        if time.monotonic() - self._scanned_at < max_age_s:
            return self._paths
        self._paths = self.scan()
        self._scanned_at = time.monotonic()
        return self._paths

    def scan(self) -> dict[str, Path]:
        """name -> file, looked up now (paths() keeps the answer for a few seconds)."""
        found: dict[str, Path] = {}
        if self.maps_dir.is_dir():
            for entry in sorted(os.scandir(self.maps_dir), key=lambda e: e.name):
                path = Path(entry.path)
                if path.suffix in EXTENSIONS and not entry.name.startswith(".") and entry.is_file():
                    found.setdefault(archive_name(path), path)
        for row in self._conn.execute("SELECT name, path FROM map_archives ORDER BY name"):
            if Path(row["path"]).is_file():
                found.setdefault(row["name"], Path(row["path"]))
        return found

    def names(self) -> list[str]:
        return list(self.paths())

    def get(self, name: str):
        """The open archive for a name, or None; a changed file is reopened, an unreadable one is None."""
        path = self.paths().get(name)
        if path is None:
            return None
        now = time.monotonic()
        with self._lock:
            cached = self._open.get(name)
            # A tile server asks thousands of times a second: look at the file at most once a second.
            if cached and cached[0] == str(path) and now - self._checked.get(name, 0) < 1.0:
                return cached[2]
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            self._checked[name] = now
            if cached and cached[0] == str(path) and cached[1] == mtime:
                return cached[2]
        try:
            archive = open_archive(path)
        except ArchiveError:
            return None
        archive.mtime_ns = mtime
        with self._lock:
            old = self._open.get(name)
            self._open[name] = (str(path), mtime, archive)
        if old:
            old[2].close()
        return archive

    def describe_all(self) -> list[dict]:
        out = []
        for name in self.names():
            archive = self.get(name)
            if archive is not None:
                info = describe(name, archive)
                info["basemap"] = name == BASEMAP_NAME
                out.append(info)
        return out

    def problems(self) -> list[str]:
        """One line per archive file that is present but cannot be opened."""
        out = []
        for name, path in self.paths(0).items():
            try:
                open_archive(path).close()
            except ArchiveError as e:
                out.append(str(e))
        return out

    # -- changing the set -------------------------------------------------------------------------
    def add(self, path: Path, name: str | None = None) -> dict:
        """Register an archive where it lies (it is opened first, so a bad file is refused)."""
        path = Path(path).expanduser().absolute()
        name = name or archive_name(path)
        if not valid_name(name):
            raise ArchiveError(f"{name!r}: a map name may hold letters, digits, '-', '_' and '.'")
        archive = open_archive(path)
        try:
            info = describe(name, archive)
        finally:
            archive.close()
        other = self.paths(0).get(name)
        if other and other.resolve() != path.resolve():
            raise ArchiveError(f"a map named {name!r} is already served from {other}")
        if path.parent.resolve() != self.maps_dir.resolve():
            self._conn.execute("INSERT OR REPLACE INTO map_archives VALUES (?, ?, ?)", (name, str(path), time.time()))
        self._scanned_at = 0.0
        return info

    def remove(self, name: str) -> tuple[Path, bool]:
        """Stop serving a map; its file is deleted only if it lives in the maps folder. (path, deleted)."""
        path = self.paths(0).get(name)
        if path is None:
            raise ArchiveError(f"no map named {name!r}")
        self._conn.execute("DELETE FROM map_archives WHERE name = ?", (name,))
        with self._lock:
            cached = self._open.pop(name, None)
        if cached:
            cached[2].close()
        deleted = path.parent.resolve() == self.maps_dir.resolve()
        if deleted:
            path.unlink(missing_ok=True)
        self._scanned_at = 0.0
        return path, deleted

    def close(self) -> None:
        with self._lock:
            for _, _, archive in self._open.values():
                archive.close()
            self._open.clear()
        self._conn.close()
