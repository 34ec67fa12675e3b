"""Articles on the map: coordinates found in a ZIM's pages, kept in a small spatial index.

Wikipedia-style pages carry the geo microformat (`<span class="geo">60.17; 24.94</span>`, or
`<span class="latitude">`/`<span class="longitude">` pairs); other pages may carry `<meta name="geo.position">`
or `<meta name="ICBM">`. The first coordinate of a page is its place. A book is indexed once per file
version (its UUID); rows are replaced when a book changes and dropped when it leaves the library.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import db
from .gazetteer import haversine_km

SCHEMA = """
CREATE TABLE IF NOT EXISTS article_coords (
    book TEXT NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    PRIMARY KEY (book, path)
);
CREATE INDEX IF NOT EXISTS article_coords_lat ON article_coords(lat);
CREATE TABLE IF NOT EXISTS article_coords_claims (
    book TEXT PRIMARY KEY,
    uuid TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS article_coords_books (
    book TEXT PRIMARY KEY,
    uuid TEXT NOT NULL,
    articles INTEGER NOT NULL,
    indexed_at REAL NOT NULL
);
"""

_NUM = r"([-+]?\d{1,3}(?:\.\d+)?)"
_GEO_SPAN = re.compile(r'class="[^"]*\bgeo\b[^"]*"[^>]*>\s*' + _NUM + r"\s*[;,]\s*" + _NUM, re.I)
_LAT_LON = re.compile(
    r'class="[^"]*\blatitude\b[^"]*"[^>]*>\s*' + _NUM + r'\s*<.*?class="[^"]*\blongitude\b'
    r'[^"]*"[^>]*>\s*' + _NUM,
    re.I | re.S,
)
_META = re.compile(r'<meta[^>]+name="(?:geo\.position|ICBM)"[^>]+content="\s*' + _NUM + r"\s*[;,]\s*" + _NUM, re.I)
_MARKERS = (b"geo", b"latitude", b"ICBM")
SYNC_INLINE_MAX_ARTICLES = 20000  # bigger books are indexed in the background
CLAIM_TIMEOUT_S = 6 * 3600  # a claim older than this belongs to a process that died


@dataclass(frozen=True)
class Article:
    book: str
    path: str
    title: str
    lat: float
    lon: float
    distance_km: float

    def to_json(self) -> dict:
        return asdict(self)


def find_coordinates(html: str) -> tuple[float, float] | None:
    for pattern in (_GEO_SPAN, _LAT_LON, _META):
        m = pattern.search(html)
        if m:
            lat, lon = float(m.group(1)), float(m.group(2))
            if -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
                return lat, lon
    return None


def _entries(archive):
    """Every non-redirect HTML entry of a libzim Archive."""
    for i in range(archive.all_entry_count):
        entry = archive._get_entry_by_id(i)
        if entry.is_redirect:
            continue
        item = entry.get_item()
        if item.mimetype.startswith("text/html"):
            yield entry, item


class GeoIndex:
    def __init__(self, db_path: Path):
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def index_book(self, name: str, uuid: str, archive) -> int:
        """(Re)index one book; returns how many of its articles have coordinates."""
        rows = []
        for entry, item in _entries(archive):
            raw = bytes(item.content)
            if not any(m in raw for m in _MARKERS):
                continue  # cheap test first: most pages have no coordinates
            coords = find_coordinates(raw.decode("utf-8", "replace"))
            if coords:
                rows.append((name, entry.path, entry.title or entry.path, coords[0], coords[1]))
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM article_coords WHERE book = ?", (name,))
            self._conn.executemany("INSERT OR REPLACE INTO article_coords VALUES (?, ?, ?, ?, ?)", rows)
            self._conn.execute(
                "INSERT OR REPLACE INTO article_coords_books VALUES (?, ?, ?, ?)", (name, uuid, len(rows), time.time())
            )
            self._conn.execute("COMMIT")
        return len(rows)

    def counts(self) -> dict[str, int]:
        """book -> how many of its articles have coordinates."""
        return {r["book"]: r["articles"] for r in self._conn.execute("SELECT book, articles FROM article_coords_books")}

    def indexed(self) -> dict[str, str]:
        return {r["book"]: r["uuid"] for r in self._conn.execute("SELECT book, uuid FROM article_coords_books")}

    def sync(self, library, background: bool = True) -> list[str]:
        """Index the library's new or changed books and forget removed ones. Big books go to a background
        thread when `background`; returns the names indexed now."""
        books = {b.name: b for b in library.list()}
        done = self.indexed()
        for gone in set(done) - set(books):
            with self._lock:
                self._conn.execute("DELETE FROM article_coords WHERE book = ?", (gone,))
                self._conn.execute("DELETE FROM article_coords_books WHERE book = ?", (gone,))
        now = []
        for name, book in books.items():
            if done.get(name) == book.uuid or name in self._busy:
                continue
            archive = library.archive(name)
            if archive is None:
                continue
            if background and book.article_count > SYNC_INLINE_MAX_ARTICLES:
                if not self._claim(name, book.uuid):
                    continue  # another server process is on it
                if self.indexed().get(name) == book.uuid:
                    # Another process finished (and released its claim) after `done` was read above.
                    with self._lock:
                        self._conn.execute("DELETE FROM article_coords_claims WHERE book = ?", (name,))
                    continue
                self._busy.add(name)
                threading.Thread(target=self._index_later, args=(name, book.uuid, archive), daemon=True).start()
            else:
                self.index_book(name, book.uuid, archive)
                now.append(name)
        return now

    def _claim(self, name: str, uuid: str) -> bool:
        """One process indexes a big book; the other gunicorn workers leave it alone."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM article_coords_claims WHERE started_at < ?", (time.time() - CLAIM_TIMEOUT_S,)
            )
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO article_coords_claims VALUES (?, ?, ?)", (name, uuid, time.time())
            )
            return cur.rowcount == 1

    def _index_later(self, name, uuid, archive):
        try:
            self.index_book(name, uuid, archive)
        finally:
            with self._lock:
                self._conn.execute("DELETE FROM article_coords_claims WHERE book = ?", (name,))
            self._busy.discard(name)

    def nearby(self, lat: float, lon: float, radius_km: float, limit: int = 100) -> list[Article]:
        dlat = radius_km / 111.0
        coslat = max(0.01, math.cos(math.radians(lat)))
        dlon = min(180.0, radius_km / (111.0 * coslat))
        rows = self._conn.execute(
            "SELECT book, path, title, lat, lon FROM article_coords WHERE lat BETWEEN ? AND ?", (lat - dlat, lat + dlat)
        ).fetchall()
        out = []
        for r in rows:
            dl = abs(((r["lon"] - lon) + 180) % 360 - 180)
            if dl > dlon:
                continue
            d = haversine_km(lat, lon, r["lat"], r["lon"])
            if d <= radius_km:
                out.append(Article(r["book"], r["path"], r["title"], r["lat"], r["lon"], round(d, 3)))
        out.sort(key=lambda a: a.distance_km)
        return out[:limit]

    def coordinates(self, book: str, path: str) -> tuple[float, float] | None:
        row = self._conn.execute(
            "SELECT lat, lon FROM article_coords WHERE book = ? AND path = ?", (book, path)
        ).fetchone()
        return (row["lat"], row["lon"]) if row else None

    def close(self) -> None:
        self._conn.close()
