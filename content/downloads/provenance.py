"""Where each installed file came from: its catalog name, flavour and date, URL and SHA-256. Updates read
it to know which catalog book an installed file is; export and import read it to skip a second copy."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS installed_files (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    catalog_name TEXT NOT NULL,
    flavour TEXT NOT NULL,
    date TEXT NOT NULL,
    url TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    installed_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
"""


@dataclass(frozen=True)
class Installed:
    kind: str
    name: str
    path: str
    catalog_name: str
    flavour: str
    date: str
    url: str
    sha256: str
    size: int
    installed_at: float

    def to_json(self) -> dict:
        return asdict(self)


class Provenance:
    def __init__(self, db_path: Path):
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def record(
        self,
        *,
        kind: str,
        name: str,
        path: Path,
        catalog_name: str = "",
        flavour: str = "",
        date: str = "",
        url: str = "",
        sha256: str = "",
        size: int = 0,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO installed_files VALUES (?,?,?,?,?,?,?,?,?,?)",
                (kind, name, str(path), catalog_name, flavour, date, url, sha256, size, time.time()),
            )

    def get(self, kind: str, name: str) -> Installed | None:
        row = self._conn.execute("SELECT * FROM installed_files WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return Installed(**dict(row)) if row else None

    def list(self, kind: str | None = None) -> list[Installed]:
        sql = "SELECT * FROM installed_files" + (" WHERE kind = ?" if kind else "") + " ORDER BY kind, name"
        return [Installed(**dict(r)) for r in self._conn.execute(sql, (kind,) if kind else ())]

    def by_sha256(self, sha256: str) -> Installed | None:
        row = self._conn.execute("SELECT * FROM installed_files WHERE sha256 = ?", (sha256,)).fetchone()
        return Installed(**dict(row)) if row else None

    def close(self) -> None:
        self._conn.close()
