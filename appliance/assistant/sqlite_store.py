"""One table set in the state database (almanac.db), shared by the threads of a process: the base of the
assistant's stores (waiting answers, conversations, model speeds)."""

from __future__ import annotations

import threading
from pathlib import Path

from content import db


class SqliteStore:
    SCHEMA = ""  # the CREATE TABLE IF NOT EXISTS statements of the subclass

    def __init__(self, path: Path):
        self._conn = db.connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(self.SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _rows(self, sql: str, args=()) -> list:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args=()) -> int:
        """Runs one statement; the number of rows it changed."""
        with self._lock:
            return self._conn.execute(sql, args).rowcount
