"""The catalog cache in the state database: every feed fetched (raw bytes and when), every entry seen
(for offline filtering), every illustration. Writes are single statements or one transaction each."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .. import db
from .opds import Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_feeds (
    url TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_entries (
    catalog TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    flavour TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    date TEXT NOT NULL,
    title TEXT NOT NULL,
    entry TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (catalog, id)
);
CREATE INDEX IF NOT EXISTS catalog_entries_name ON catalog_entries (catalog, name, flavour, date);
"""


class CatalogCache:
    def __init__(self, db_path: Path):
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def put_feed(self, url: str, body: bytes) -> float:
        now = time.time()
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO catalog_feeds VALUES (?, ?, ?)", (url, body, now))
        return now

    def feed(self, url: str) -> tuple[bytes, float] | None:
        row = self._conn.execute("SELECT body, fetched_at FROM catalog_feeds WHERE url = ?", (url,)).fetchone()
        return (bytes(row["body"]), row["fetched_at"]) if row else None

    def put_entries(self, catalog: str, entries: list[Entry], *, replace_all: bool = False) -> None:
        now = time.time()
        rows = [
            (catalog, e.id, e.name, e.flavour, e.language, e.category, e.date, e.title, json.dumps(asdict(e)), now)
            for e in entries
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    self._conn.execute("DELETE FROM catalog_entries WHERE catalog = ?", (catalog,))
                self._conn.executemany("INSERT OR REPLACE INTO catalog_entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def entries(
        self,
        catalog: str,
        *,
        q: str = "",
        lang: str = "",
        category: str = "",
        name: str = "",
        flavour: str | None = None,
    ) -> tuple[list[Entry], float | None]:
        """Every cached entry of a catalog that matches, newest first, and when the oldest was seen."""
        sql, args = "SELECT entry, seen_at FROM catalog_entries WHERE catalog = ?", [catalog]
        for column, value in (("language", lang), ("category", category), ("name", name)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if flavour is not None:
            sql += " AND flavour = ?"
            args.append(flavour)
        sql += " ORDER BY date DESC, title COLLATE NOCASE"
        rows = self._conn.execute(sql, args).fetchall()
        words = q.lower().split()
        out, oldest = [], None
        for row in rows:
            entry = Entry(**json.loads(row["entry"]))
            haystack = f"{entry.title} {entry.summary} {entry.name} {entry.tags}".lower()
            if all(w in haystack for w in words):
                out.append(entry)
                oldest = row["seen_at"] if oldest is None else min(oldest, row["seen_at"])
        return out, oldest

    def close(self) -> None:
        self._conn.close()
