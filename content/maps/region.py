"""Cut a region out of a planet-scale PMTiles archive, local or remote, with byte-range reads.

Only the directories and tiles the region needs are read. The size is known (and shown) before any tile is
fetched. Fetched spans are kept in a sidecar SQLite file beside the output, so an interrupted download picks
up where it stopped. The result is an ordinary PMTiles archive, served like any other.
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
import os
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pmtiles.tile import Compression, deserialize_header, find_tile, zxy_to_tileid

from .pmtiles_archive import HEADER_BYTES, MAX_DEPTH, parse_directory

MERGE_GAP = 64 * 1024  # read neighbouring tiles in one request when the gap between them is this small
MAX_SPAN = 8 * 1024 * 1024
MAX_TILES = 5_000_000


class RegionError(Exception):
    pass


class Source:
    """Byte ranges of a local file or of a URL that honours HTTP Range."""

    def __init__(self, where: str, retries: int = 4):
        self.where = where
        self.retries = retries
        self.remote = where.startswith(("http://", "https://"))
        if not self.remote:
            path = Path(where).expanduser()
            if not path.is_file():
                raise RegionError(f"{where}: no such file")
            self._fd = os.open(path, os.O_RDONLY)

    def read(self, offset: int, length: int) -> bytes:
        if not self.remote:
            data = os.pread(self._fd, length, offset)
        else:
            data = self._get(offset, length)
        if len(data) != length:
            raise RegionError(f"{self.where}: short read at {offset} ({len(data)} of {length} bytes)")
        return data

    def _get(self, offset: int, length: int) -> bytes:
        req = urllib.request.Request(
            self.where, headers={"Range": f"bytes={offset}-{offset + length - 1}", "User-Agent": "almanac-maps"}
        )
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status != 206:
                        raise RegionError(f"{self.where}: the server ignores Range requests (HTTP {r.status})")
                    return r.read()
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.retries:
                    raise RegionError(f"{self.where}: {e}") from None
                time.sleep(min(10, 2**attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        if not self.remote:
            os.close(self._fd)


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    lat = max(-85.0511, min(85.0511, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tiles_in_bbox(bbox, minzoom: int, maxzoom: int):
    w, s, e, n = bbox
    for z in range(minzoom, maxzoom + 1):
        x0, y0 = lonlat_to_tile(w, n, z)
        x1, y1 = lonlat_to_tile(e, s, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                yield z, x, y


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise RegionError("--bbox wants W,S,E,N in degrees, e.g. 24.5,60.0,25.3,60.4") from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise RegionError(f"--bbox {text}: need -180 <= W < E <= 180 and -90 <= S < N <= 90")
    return w, s, e, n


def country_bbox(code: str) -> tuple[float, float, float, float]:
    """The bounding box of a country's main territory, from Natural Earth (ISO 3166 alpha-2)."""
    from .basemap import countries

    code = code.upper()
    for geom, rec in countries():
        if code in (rec.get("ISO_A2"), rec.get("ISO_A2_EH")):
            polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
            main = max(polys, key=lambda p: p.area)
            # Overseas parts would stretch the box across oceans: keep parts near the largest one.
            near = [p for p in polys if p.distance(main) < 5]
            xs = [c for p in near for c in (p.bounds[0], p.bounds[2])]
            ys = [c for p in near for c in (p.bounds[1], p.bounds[3])]
            return min(xs), min(ys), max(xs), max(ys)
    raise RegionError(f"no country with ISO code {code!r} in Natural Earth")


@dataclass
class Plan:
    header: dict
    metadata: dict
    entries: list  # (tile_id, offset, length), sorted by tile id; offsets into the source's tile data
    bytes_needed: int  # distinct tile bytes to fetch


def plan(src: Source, bbox, maxzoom: int, minzoom: int = 0) -> Plan:
    raw = src.read(0, HEADER_BYTES)
    if raw[:7] != b"PMTiles" or raw[7] != 3:
        raise RegionError(f"{src.where}: not a PMTiles v3 archive")
    header = deserialize_header(raw)
    inflate = gzip.decompress if header["internal_compression"] == Compression.GZIP else (lambda b: b)
    meta_raw = inflate(src.read(header["metadata_offset"], header["metadata_length"]))
    metadata = json.loads(meta_raw) if meta_raw.strip() else {}
    maxzoom = min(maxzoom, header["max_zoom"])
    minzoom = max(minzoom, header["min_zoom"])
    root = parse_directory(inflate(src.read(header["root_offset"], header["root_length"])))
    leaves: dict[int, list] = {}

    def lookup(tile_id):
        directory = root
        for _ in range(MAX_DEPTH):
            e = find_tile(directory, tile_id)
            if e is None:
                return None
            if e.run_length > 0:
                return e
            if e.offset not in leaves:
                leaves[e.offset] = parse_directory(
                    inflate(src.read(header["leaf_directory_offset"] + e.offset, e.length))
                )
            directory = leaves[e.offset]
        return None

    entries = []
    for count, (z, x, y) in enumerate(tiles_in_bbox(bbox, minzoom, maxzoom)):
        if count > MAX_TILES:
            raise RegionError(f"more than {MAX_TILES} tiles: choose a smaller box or a lower --maxzoom")
        tid = zxy_to_tileid(z, x, y)
        e = lookup(tid)
        if e is not None:
            entries.append((tid, e.offset, e.length))
    entries.sort()
    distinct = {(o, n) for _, o, n in entries}
    return Plan(header, metadata, entries, sum(n for _, n in distinct))


def _spans(entries) -> list[tuple[int, int]]:
    """Byte spans covering every needed tile, neighbours merged to save requests."""
    spans: list[list[int]] = []
    for off, length in sorted({(o, n) for _, o, n in entries}):
        if spans and off - spans[-1][1] <= MERGE_GAP and off + length - spans[-1][0] <= MAX_SPAN:
            spans[-1][1] = max(spans[-1][1], off + length)
        else:
            spans.append([off, off + length])
    return [(a, b) for a, b in spans]


def extract(
    src: Source, out: Path, bbox, maxzoom: int, minzoom: int = 0, log=print, stop_after_spans: int | None = None
) -> Path:
    """Write the region to `out`. `stop_after_spans` simulates an interruption (for tests)."""
    from pmtiles.writer import Writer

    out = Path(out)
    p = plan(src, bbox, maxzoom, minzoom)
    if not p.entries:
        raise RegionError("the source has no tiles in that box at those zooms")
    log(f"{len(p.entries)} tiles, {p.bytes_needed / 1e6:.1f} MB to fetch")
    sidecar = out.with_name(f".{out.name}.download")
    db = sqlite3.connect(sidecar)
    db.execute("CREATE TABLE IF NOT EXISTS spans (start INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    have = {row[0] for row in db.execute("SELECT start FROM spans")}
    spans = _spans(p.entries)
    if have:
        log(f"resuming: {len(have & {a for a, _ in spans})} of {len(spans)} parts already here")
    base = p.header["tile_data_offset"]
    fetched = 0
    for i, (a, b) in enumerate(spans):
        if a in have:
            continue
        if stop_after_spans is not None and fetched >= stop_after_spans:
            db.close()
            raise RegionError("interrupted")
        db.execute("INSERT OR REPLACE INTO spans VALUES (?, ?)", (a, src.read(base + a, b - a)))
        db.commit()
        fetched += 1
    starts = [a for a, _ in spans]
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(partial, "wb") as f:
        writer = Writer(f)
        cache: dict[int, bytes] = {}
        for tid, off, length in p.entries:
            a = starts[bisect.bisect_right(starts, off) - 1]
            if a not in cache:
                cache.clear()
                cache[a] = db.execute("SELECT data FROM spans WHERE start = ?", (a,)).fetchone()[0]
            writer.write_tile(tid, cache[a][off - a : off - a + length])
        w, s, e, n = bbox
        h = p.header
        header = {
            "tile_type": h["tile_type"],
            "tile_compression": h["tile_compression"],
            "min_zoom": max(minzoom, h["min_zoom"]),
            "max_zoom": min(maxzoom, h["max_zoom"]),
            "min_lon_e7": int(w * 1e7),
            "min_lat_e7": int(s * 1e7),
            "max_lon_e7": int(e * 1e7),
            "max_lat_e7": int(n * 1e7),
            "center_zoom": min(maxzoom, h["max_zoom"]),
            "center_lon_e7": int((w + e) / 2 * 1e7),
            "center_lat_e7": int((s + n) / 2 * 1e7),
        }
        metadata = dict(
            p.metadata,
            bounds=f"{w},{s},{e},{n}",
            maxzoom=header["max_zoom"],
            description=f"Region {w},{s},{e},{n} of {p.metadata.get('name') or 'a planet archive'}",
        )
        writer.finalize(header, metadata)
    db.close()
    os.replace(partial, out)
    sidecar.unlink(missing_ok=True)
    return out
