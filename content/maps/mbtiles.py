"""MBTiles (SQLite) archives served as they are: same interface as PMTilesArchive."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from .formats import ArchiveError, TileFormat

FORMATS = {
    "pbf": TileFormat("pbf", "application/x-protobuf", vector=True),
    "mvt": TileFormat("pbf", "application/x-protobuf", vector=True),
    "png": TileFormat("png", "image/png"),
    "jpg": TileFormat("jpg", "image/jpeg"),
    "jpeg": TileFormat("jpg", "image/jpeg"),
    "webp": TileFormat("webp", "image/webp"),
}


class MBTilesArchive:
    kind = "mbtiles"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        try:
            conn = self._conn()
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
            zooms = conn.execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
        except sqlite3.DatabaseError as e:
            raise ArchiveError(f"{self.path.name}: not a readable MBTiles file ({e})") from None
        fmt = str(meta.get("format", "png")).lower()
        if fmt not in FORMATS:
            raise ArchiveError(f"{self.path.name}: unsupported tile format {fmt!r}")
        self.format = FORMATS[fmt]
        if isinstance(meta.get("json"), str):
            try:
                meta.update({k: v for k, v in json.loads(meta["json"]).items() if k not in meta})
            except ValueError:
                pass
        self.metadata = meta
        self.minzoom = int(meta.get("minzoom", zooms[0] or 0))
        self.maxzoom = int(meta.get("maxzoom", zooms[1] or 0))
        first = conn.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()
        self._gzipped = bool(first) and bytes(first[0][:2]) == b"\x1f\x8b"

    def _conn(self) -> sqlite3.Connection:
        # One read-only connection per thread: sqlite3 connections are not shared across threads.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        if not (0 <= z <= 31 and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        row = (
            self._conn()
            .execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, (1 << z) - 1 - y),
            )
            .fetchone()
        )  # MBTiles rows count from the south (TMS)
        return bytes(row[0]) if row else None

    @property
    def tiles_gzipped(self) -> bool:
        return self._gzipped

    def tile_encoding(self) -> str | None:
        return "gzip" if self._gzipped else None

    def bounds(self) -> list[float]:
        try:
            b = [float(v) for v in str(self.metadata.get("bounds", "")).split(",")]
            if len(b) == 4 and b[0] < b[2] and b[1] < b[3]:
                return b
        except ValueError:
            pass
        return [-180.0, -85.0511, 180.0, 85.0511]

    def center(self) -> list[float]:
        try:
            c = [float(v) for v in str(self.metadata.get("center", "")).split(",")]
            if len(c) == 3:
                return c
        except ValueError:
            pass
        b = self.bounds()
        return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, self.minzoom]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
