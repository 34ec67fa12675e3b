"""The library: which ZIM archives this box serves, their metadata, and open Archive handles.

Books are registered in the state database. Files dropped into the archives folder, replaced or removed are
noticed by ``scan()`` (cheap: one directory listing and a stat per file), so nothing needs a restart.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import db
from .zim_probe import ProbeError, probe

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    uuid TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    language TEXT NOT NULL,
    creator TEXT NOT NULL,
    publisher TEXT NOT NULL,
    date TEXT NOT NULL,
    tags TEXT NOT NULL,
    flavour TEXT NOT NULL,
    article_count INTEGER NOT NULL,
    media_count INTEGER NOT NULL,
    size INTEGER NOT NULL,
    main_path TEXT NOT NULL,
    has_fulltext_index INTEGER NOT NULL,
    has_title_index INTEGER NOT NULL,
    illustration_48 INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_files (
    path TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


class LibraryError(Exception):
    """A user-facing library problem, one line."""


@dataclass(frozen=True)
class Book:
    name: str
    path: str
    uuid: str
    title: str
    description: str
    language: str
    creator: str
    publisher: str
    date: str
    tags: str
    flavour: str
    article_count: int
    media_count: int
    size: int
    main_path: str
    has_fulltext_index: bool
    has_title_index: bool
    illustration_48: bool
    mtime_ns: int
    added_at: float

    def to_json(self) -> dict:
        return asdict(self)


def set_cluster_cache_mb(mb: int) -> None:
    """Memory each process may use for decompressed ZIM clusters (libzim's setting is per process)."""
    import libzim

    libzim.set_cluster_cache_max_size(mb << 20)


@dataclass(frozen=True)
class Selection:
    """The books a request names (every book when it names none), and the open archives of those readable."""

    books: list[Book]
    archives: list[tuple[str, object]]  # (name, libzim Archive), in library order
    named: bool  # the request named books

    @property
    def unknown(self) -> bool:
        """Books were named and none of them is in the library."""
        return self.named and not self.books


def book_name(path: Path) -> str:
    return path.name[:-4] if path.name.endswith(".zim") else path.name


class Library:
    def __init__(self, db_path: Path, archives_dir: Path, scan_interval_s: float = 5.0):
        self.archives_dir = Path(archives_dir)
        self.scan_interval_s = scan_interval_s
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._archives: dict[str, tuple[int, object]] = {}  # name -> (mtime_ns, libzim Archive)
        self._last_scan = 0.0

    # -- registry -------------------------------------------------------------------------------
    def add(self, path: str | Path) -> Book:
        """Validate a ZIM (in a child process) and register or refresh it. The name is the file stem."""
        path = Path(path).expanduser().absolute()
        if not path.name.endswith(".zim"):
            raise LibraryError(f"{path.name}: not a .zim file")
        name = book_name(path)
        other = self.get(name)
        if other and Path(other.path) != path and Path(other.path).exists():
            raise LibraryError(f"a book named {name!r} is already registered from {other.path}")
        try:
            info = probe(path)
        except ProbeError as e:
            raise LibraryError(str(e)) from None
        stat = path.stat()
        row = dict(
            name=name,
            path=str(path),
            uuid=info["uuid"],
            title=info["title"] or name,
            description=info["description"],
            language=info["language"],
            creator=info["creator"],
            publisher=info["publisher"],
            date=info["date"],
            tags=info["tags"],
            flavour=info["flavour"],
            article_count=info["article_count"],
            media_count=info["media_count"],
            size=stat.st_size,
            main_path=info["main_path"],
            has_fulltext_index=int(info["has_fulltext_index"]),
            has_title_index=int(info["has_title_index"]),
            illustration_48=int(info["illustration_48"]),
            mtime_ns=stat.st_mtime_ns,
            added_at=time.time(),
        )
        with self._lock:
            self._conn.execute("DELETE FROM books WHERE path = ? AND name != ?", (row["path"], name))
            self._conn.execute(
                f"INSERT OR REPLACE INTO books ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            self._conn.execute("DELETE FROM rejected_files WHERE path = ?", (row["path"],))
            self._archives.pop(name, None)
        return self.get(name)

    def remove(self, name: str) -> Book:
        book = self.get(name)
        if book is None:
            raise LibraryError(f"no book named {name!r}")
        with self._lock:
            self._conn.execute("DELETE FROM books WHERE name = ?", (name,))
            self._archives.pop(name, None)
        return book

    def get(self, name: str) -> Book | None:
        row = self._conn.execute("SELECT * FROM books WHERE name = ?", (name,)).fetchone()
        return _book(row) if row else None

    def list(self) -> list[Book]:
        return [_book(r) for r in self._conn.execute("SELECT * FROM books ORDER BY title COLLATE NOCASE")]

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM books").fetchone()[0]

    def select(self, names: list[str] | None = None) -> Selection:
        """The books named (every book when `names` is empty), in library order, with their open archives."""
        wanted = set(names or ())
        books = [b for b in self.list() if not wanted or b.name in wanted]
        archives = [(b.name, a) for b in books if (a := self.archive(b.name)) is not None]
        return Selection(books, archives, bool(wanted))

    def rejected(self) -> list[dict]:
        return [dict(r) for r in self._conn.execute("SELECT path, reason FROM rejected_files ORDER BY path")]

    # -- keeping up with the disk -----------------------------------------------------------------
    def scan(self) -> dict[str, list[str]]:
        """Register new and replaced files in the archives folder; drop books whose file is gone."""
        changes: dict[str, list[str]] = {"added": [], "updated": [], "removed": [], "rejected": []}
        seen: dict[str, os.stat_result] = {}
        if self.archives_dir.is_dir():
            for entry in os.scandir(self.archives_dir):
                if entry.name.endswith(".zim") and not entry.name.startswith(".") and entry.is_file():
                    seen[str(Path(entry.path).absolute())] = entry.stat()
        known = {b.path: b for b in self.list()}
        for book in known.values():
            if not Path(book.path).exists():
                self.remove(book.name)
                changes["removed"].append(book.name)
        for path, stat in sorted(seen.items()):
            book = known.get(path)
            if book and book.mtime_ns == stat.st_mtime_ns and book.size == stat.st_size:
                continue
            if book is None and self._rejected_unchanged(path, stat):
                continue
            try:
                self.add(path)
                changes["updated" if book else "added"].append(book_name(Path(path)))
            except LibraryError as e:
                self._conn.execute(
                    "INSERT OR REPLACE INTO rejected_files VALUES (?, ?, ?, ?)",
                    (path, stat.st_mtime_ns, stat.st_size, str(e)),
                )
                changes["rejected"].append(str(e))
        self._last_scan = time.monotonic()
        return changes

    def scan_if_due(self) -> None:
        if time.monotonic() - self._last_scan >= self.scan_interval_s:
            self.scan()

    def _rejected_unchanged(self, path: str, stat: os.stat_result) -> bool:
        row = self._conn.execute("SELECT mtime_ns, size FROM rejected_files WHERE path = ?", (path,)).fetchone()
        return bool(row) and row["mtime_ns"] == stat.st_mtime_ns and row["size"] == stat.st_size

    # -- reading ---------------------------------------------------------------------------------
    def archive(self, name: str):
        """An open libzim Archive for a registered book, reopened when its file changed; None if gone."""
        from libzim.reader import Archive

        book = self.get(name)
        if book is None:
            return None
        try:
            mtime = os.stat(book.path).st_mtime_ns
        except OSError:
            return None
        with self._lock:
            cached = self._archives.get(name)
            if cached and cached[0] == mtime:
                return cached[1]
        if mtime != book.mtime_ns:
            return None  # replaced on disk and not re-validated yet: the next scan will do it
        archive = Archive(book.path)
        with self._lock:
            self._archives[name] = (mtime, archive)
        return archive

    def close(self) -> None:
        with self._lock:
            self._archives.clear()
        self._conn.close()


def _book(row: sqlite3.Row) -> Book:
    values = dict(row)
    for key in ("has_fulltext_index", "has_title_index", "illustration_48"):
        values[key] = bool(values[key])
    return Book(**values)
