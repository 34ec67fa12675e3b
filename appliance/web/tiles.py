"""The answer to one tile request, shared by the Flask view (maps.tile) and the WSGI fast path in front of it."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

from .http_cache import make_etag

# The IANA type for Mapbox vector tiles; the generic gzip step leaves it alone, which matters because stored
# tiles are usually gzip already and are passed through as they are.
MVT_MIMETYPE = "application/vnd.mapbox-vector-tile"
TILE_MAX_AGE = 3600
MAX_ZOOM = 30


@dataclass(frozen=True)
class Tile:
    """A tile to send (status 200), or a stored empty tile (204, no body)."""

    status: int
    body: bytes = b""
    mimetype: str = ""
    etag: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # CORS, and Content-Encoding when the body has one


@dataclass(frozen=True)
class Refusal:
    status: int  # 400, 404, 406
    message: str


def answer_tile(registry, name: str, z: int, x: int, y: int, ext: str, accept_encoding: str) -> Tile | Refusal:
    """What /maps/tiles/NAME/Z/X/Y.EXT answers, before the conditional and partial-response rules."""
    if z > MAX_ZOOM or x >= (1 << z) or y >= (1 << z):
        return Refusal(400, f"no tile {z}/{x}/{y}: x and y must be below 2^z")
    archive = registry.get(name)
    if archive is None:
        return Refusal(404, f"no map named {name!r}")
    if ext != archive.format.ext and not (archive.format.vector and ext in ("pbf", "mvt")):
        return Refusal(404, f"{name} serves .{archive.format.ext} tiles")
    if z < archive.minzoom or z > archive.maxzoom:
        return Refusal(404, f"{name} has zooms {archive.minzoom}-{archive.maxzoom}")
    encoding = archive.tile_encoding()
    data = archive.tile(z, x, y)
    headers = {"Access-Control-Allow-Origin": "*"}
    if data and encoding == "gzip" and len(data) < 64 and not gzip.decompress(data):
        data = None  # a stored empty vector tile: say so with 204 rather than send an empty gzip stream
    if not data:
        return Tile(204, headers=headers)
    etag = make_etag(name, getattr(archive, "mtime_ns", 0), z, x, y)
    if encoding == "gzip":
        if "gzip" in accept_encoding:
            headers["Content-Encoding"] = "gzip"
            etag += "-gz"
        else:
            data = gzip.decompress(data)
    elif encoding:
        # brotli/zstd tiles: only a client that says it takes them gets them.
        if encoding not in accept_encoding:
            return Refusal(406, f"{name} stores {encoding} tiles; this client does not accept {encoding}")
        headers["Content-Encoding"] = encoding
    mimetype = MVT_MIMETYPE if archive.format.vector else archive.format.mimetype
    return Tile(200, data, mimetype, etag, headers)
