"""Map pages and endpoints: the viewer, generated styles, tiles, TileJSON, whole archives, place search,
nearest place, articles near a point and MapLibre's own files."""
from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import abort, current_app, jsonify, request, send_file

from content.maps import style as styles
from content.maps import vendor
from content.maps.gazetteer import Gazetteer, GazetteerError
from content.maps.geoindex import GeoIndex
from content.maps.registry import BASEMAP_NAME, MapRegistry
from content.maps.tiles import describe, schema, vector_layers

from . import services
from .http_cache import make_etag, send_bytes
from .render import page

# The IANA type for Mapbox vector tiles; the foundation's generic gzip step leaves it alone, which matters
# because stored tiles are usually gzip already and are passed through as they are.
MVT_MIMETYPE = "application/vnd.mapbox-vector-tile"
TILE_MAX_AGE = 3600
SEARCH_LIMIT_MAX = 50


GEO_SYNC_INTERVAL_S = 10.0


@dataclass
class MapsState:
    registry: MapRegistry
    gazetteer_path: Path
    geo: GeoIndex
    _gazetteer: Gazetteer | None = None
    _geo_synced: float = -1e9

    def articles(self, library) -> GeoIndex:
        """The article-coordinate index, brought up to date with the library every few seconds."""
        now = time.monotonic()
        if now - self._geo_synced >= GEO_SYNC_INTERVAL_S:
            self._geo_synced = now
            library.scan()  # one folder listing; catches a book dropped in since the last look
            self.geo.sync(library)
        return self.geo

    def gazetteer(self) -> Gazetteer | None:
        if self._gazetteer is None and self.gazetteer_path.is_file():
            try:
                self._gazetteer = Gazetteer(self.gazetteer_path)
            except GazetteerError:
                return None
        return self._gazetteer


_init_lock = threading.Lock()


def state() -> MapsState:
    """Per-process map state, made on first use (the app factory knows nothing of maps)."""
    app = current_app
    st = app.extensions.get("almanac_maps")
    if st is None:
        with _init_lock:
            st = app.extensions.get("almanac_maps")
            if st is None:
                data = services.get().data
                st = MapsState(MapRegistry(data.db, data.maps), gazetteer_path(data), GeoIndex(data.db))
                app.extensions["almanac_maps"] = st
                # Tiles are most of a map's requests; from now on the common case skips Flask's
                # request machinery (see TileFastPath). Flask still answers everything else.
                app.wsgi_app = TileFastPath(app.wsgi_app, st.registry)
    return st


def gazetteer_path(data) -> Path:
    return data.maps / "gazetteer.db"


def _base_url() -> str:
    return request.host_url.rstrip("/")


def _attribution(name: str, archive) -> str:
    text = str(archive.metadata.get("attribution") or "")
    if name == BASEMAP_NAME:
        return text or "Natural Earth (public domain); GeoNames (CC-BY 4.0)"
    # Every other archive we know of (Protomaps, OpenMapTiles, raster tiles) is drawn from OpenStreetMap.
    return text if "openstreetmap" in text.lower() else f"{text} {styles.ATTRIBUTION_OSM}".strip()


def _sources() -> list[tuple[str, object]]:
    reg = state().registry
    return [(n, a) for n in reg.names() if (a := reg.get(n)) is not None]


def _style_source(name: str, archive) -> styles.Source:
    return styles.Source(name, schema(archive), archive.format.ext, archive.minzoom, archive.maxzoom,
                         archive.bounds(), _attribution(name, archive))


def _choices(archives) -> list[dict]:
    """What the layer switcher offers: the composite vector basemap, then each archive with a style of its own."""
    out = []
    if any(schema(a) == "protomaps" for _, a in archives):
        out.append({"id": "", "label": "Vector map"})
    for name, a in archives:
        kind = schema(a)
        if kind in ("openmaptiles", "raster"):
            out.append({"id": name, "label": f"{a.metadata.get('name') or name} ({kind})"})
    return out


# -- pages -----------------------------------------------------------------------------------------
def viewer():
    archives = _sources()
    lib = vendor.find(services.get().data.maps)
    st = state()
    data = {
        "archives": [dict(describe(n, a), basemap=n == BASEMAP_NAME) for n, a in archives],
        "choices": _choices(archives),
        "maplibre": {"version": lib.version_text, "origin": lib.origin, "local_glyphs": lib.local_glyphs}
        if lib else None,
        "gazetteer": st.gazetteer() is not None,
        "attribution": ["OpenStreetMap contributors (ODbL)", "Natural Earth (public domain)", "GeoNames (CC-BY 4.0)"],
    }
    return page("maps.html", data)


def style_json():
    flavor = request.args.get("flavor", "light")
    if flavor not in styles.THEMES:
        abort(400, description="flavor must be light or dark")
    wanted = request.args.get("map", "")
    archives = _sources()
    if wanted:
        chosen = [(n, a) for n, a in archives if n == wanted]
        if not chosen:
            abort(404, description=f"no map named {wanted!r}")
        if schema(chosen[0][1]) == "openmaptiles":
            # A city-sized OpenMapTiles extract sits on the world map rather than on an empty sea.
            chosen = [(n, a) for n, a in archives if schema(a) == "protomaps"] + chosen
        archives = chosen
    else:
        # Every vector map at once: the world basemap underneath, street-level regions (either schema) on top,
        # so a region added from a planet file shows where it is without picking it. Raster maps only on demand.
        archives = ([(n, a) for n, a in archives if schema(a) == "protomaps"]
                    + [(n, a) for n, a in archives if schema(a) == "openmaptiles"]) or archives[:1]
    lib = vendor.find(services.get().data.maps)
    labels = bool(lib and lib.local_glyphs)
    body = styles.build_style([_style_source(n, a) for n, a in archives], _base_url(), flavor, labels)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return send_bytes(request, raw, "application/json", make_etag("style", raw), max_age=60)


def _int_arg(value: str, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        abort(400, description=f"{what} must be a whole number")
    if n < 0:
        abort(400, description=f"{what} must not be negative")
    return n


def tile(name: str, z: str, x: str, y: str, ext: str):
    zi, xi, yi = _int_arg(z, "z"), _int_arg(x, "x"), _int_arg(y, "y")
    if zi > 30 or xi >= (1 << zi) or yi >= (1 << zi):
        abort(400, description=f"no tile {zi}/{xi}/{yi}: x and y must be below 2^z")
    archive = state().registry.get(name)
    if archive is None:
        abort(404, description=f"no map named {name!r}")
    if ext != archive.format.ext and not (archive.format.vector and ext in ("pbf", "mvt")):
        abort(404, description=f"{name} serves .{archive.format.ext} tiles")
    if zi < archive.minzoom or zi > archive.maxzoom:
        abort(404, description=f"{name} has zooms {archive.minzoom}-{archive.maxzoom}")
    data = archive.tile(zi, xi, yi)
    mimetype = MVT_MIMETYPE if archive.format.vector else archive.format.mimetype
    headers = {"Access-Control-Allow-Origin": "*"}
    encoding = archive.tile_encoding()
    if data and encoding == "gzip" and len(data) < 64 and not gzip.decompress(data):
        data = None  # a stored empty vector tile: say so with 204 rather than send an empty gzip stream
    if not data:
        return current_app.response_class(status=204, headers={**headers, "Cache-Control": f"public, max-age={TILE_MAX_AGE}"})
    tag = make_etag(name, getattr(archive, "mtime_ns", 0), zi, xi, yi)
    if encoding == "gzip":
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            tag += "-gz"
        else:
            data = gzip.decompress(data)
    elif encoding:
        # brotli/zstd tiles: only a client that says it takes them gets them.
        if encoding not in request.headers.get("Accept-Encoding", ""):
            abort(406, description=f"{name} stores {encoding} tiles; this client does not accept {encoding}")
        headers["Content-Encoding"] = encoding
    return send_bytes(request, data, mimetype, tag, max_age=TILE_MAX_AGE, extra_headers=headers)


def tilejson(name: str):
    archive = state().registry.get(name)
    if archive is None:
        abort(404, description=f"no map named {name!r}")
    info = describe(name, archive)
    base = _base_url()
    body = {
        "tilejson": "3.0.0", "name": info["title"], "description": info["description"],
        "attribution": _attribution(name, archive), "scheme": "xyz",
        "tiles": [f"{base}/maps/tiles/{name}/{{z}}/{{x}}/{{y}}.{archive.format.ext}"],
        "minzoom": archive.minzoom, "maxzoom": archive.maxzoom, "bounds": archive.bounds(),
        "center": archive.center(), "format": archive.format.ext,
        "vector_layers": [dict(layer) for layer in vector_layers(archive.metadata)],
    }
    return jsonify(body)


def archive_file(filename: str):
    name, dot, ext = filename.rpartition(".")
    archive = state().registry.get(name) if dot else None
    if archive is None or ext != archive.kind:
        abort(404, description=f"no map archive {filename!r}")
    # send_file answers Range (206), If-None-Match/If-Modified-Since (304) from the file on disk.
    resp = send_file(archive.path, mimetype="application/vnd.pmtiles" if ext == "pmtiles"
                     else "application/vnd.sqlite3", as_attachment=False, conditional=True, max_age=3600,
                     download_name=filename)
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


# -- places ------------------------------------------------------------------------------------------
def _float_arg(key: str, lo: float, hi: float) -> float:
    try:
        v = float(request.args[key])
    except KeyError:
        abort(400, description=f"{key} is required")
    except ValueError:
        abort(400, description=f"{key} must be a number")
    if not lo <= v <= hi:
        abort(400, description=f"{key} must be between {lo} and {hi}")
    return v


def search():
    q = request.args.get("q", "").strip()
    try:
        limit = min(SEARCH_LIMIT_MAX, max(1, int(request.args.get("limit", 10))))
    except ValueError:
        abort(400, description="limit must be a whole number")
    gaz = state().gazetteer()
    if gaz is None:
        abort(503, description="the place index is not built yet; run `almanac maps init`")
    return jsonify([p.to_json() for p in gaz.search(q, limit)] if q else [])


def nearest():
    lat, lon = _float_arg("lat", -90, 90), _float_arg("lon", -180, 180)
    gaz = state().gazetteer()
    if gaz is None:
        abort(503, description="the place index is not built yet; run `almanac maps init`")
    return jsonify([dict(p.to_json(), distance_km=round(d, 2)) for p, d in gaz.nearest(lat, lon, 1)])


def nearby():
    """Articles with coordinates within radius_km of a point, nearest first."""
    lat, lon = _float_arg("lat", -90, 90), _float_arg("lon", -180, 180)
    radius = _float_arg("radius_km", 0, 2000) if "radius_km" in request.args else 10.0
    try:
        limit = min(500, max(1, int(request.args.get("limit", 100))))
    except ValueError:
        abort(400, description="limit must be a whole number")
    geo = state().articles(services.get().library)
    return jsonify([a.to_json() for a in geo.nearby(lat, lon, radius, limit)])


def article_location():
    """Where a library article is, for a "view on map" link: {"lat","lon","url"} or 404."""
    book, path = request.args.get("book", ""), request.args.get("path", "")
    coords = state().articles(services.get().library).coordinates(book, path)
    if coords is None:
        abort(404, description="no coordinates known for that article")
    lat, lon = coords
    return jsonify({"lat": lat, "lon": lon, "url": f"/maps?lat={lat:.5f}&lon={lon:.5f}&z=13"})


def vendor_file(filename: str):
    lib = vendor.find(services.get().data.maps)
    if lib is None:
        abort(404, description="MapLibre GL JS is not installed; run `almanac maps init`")
    files = {"maplibre-gl.js": (lib.js, "application/javascript"), "maplibre-gl.css": (lib.css, "text/css")}
    if filename not in files:
        abort(404)
    path, mimetype = files[filename]
    body = path.read_bytes()
    return send_bytes(request, body, mimetype, make_etag(path, path.stat().st_mtime_ns, len(body)), max_age=86400)


class TileFastPath:
    """WSGI middleware answering the plain case of a tile request (GET/HEAD, valid z/x/y, archive present,
    no Range) without Flask's request and response objects: about three times less work a tile. Anything
    else, errors included, falls through to the Flask view, which gives the same answers the long way."""

    def __init__(self, wsgi_app, registry: MapRegistry):
        self.wsgi_app = wsgi_app
        self.registry = registry

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/maps/tiles/") or environ.get("REQUEST_METHOD") not in ("GET", "HEAD") \
                or "HTTP_RANGE" in environ:
            return self.wsgi_app(environ, start_response)
        answer = self._answer(path, environ)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _answer(self, path: str, environ):
        parts = path[len("/maps/tiles/"):].split("/")
        if len(parts) != 4:
            return None
        name, z, x, last = parts
        y, dot, ext = last.partition(".")
        if not (dot and z.isdigit() and x.isdigit() and y.isdigit()):
            return None
        zi, xi, yi = int(z), int(x), int(y)
        archive = self.registry.get(name)
        if archive is None or zi > 30 or xi >= (1 << zi) or yi >= (1 << zi) \
                or not archive.minzoom <= zi <= archive.maxzoom:
            return None
        if ext != archive.format.ext and not (archive.format.vector and ext in ("pbf", "mvt")):
            return None
        encoding = archive.tile_encoding()
        accepts_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        if encoding not in (None, "gzip") or (encoding == "gzip" and not accepts_gzip):
            return None
        data = archive.tile(zi, xi, yi)
        if not data or (encoding == "gzip" and len(data) < 64):
            return None  # empty tiles: 204 from the view
        tag = make_etag(name, getattr(archive, "mtime_ns", 0), zi, xi, yi) + ("-gz" if encoding else "")
        headers = [("Cache-Control", f"public, max-age={TILE_MAX_AGE}"), ("Vary", "Accept-Encoding"),
                   ("Access-Control-Allow-Origin", "*"), ("ETag", f'"{tag}"')]
        if _if_none_match(environ.get("HTTP_IF_NONE_MATCH"), tag):
            return "304 NOT MODIFIED", headers, b""
        headers += [("Content-Type", MVT_MIMETYPE if archive.format.vector else archive.format.mimetype),
                    ("Content-Length", str(len(data))), ("Accept-Ranges", "bytes")]
        if encoding:
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, data


def _if_none_match(header: str | None, tag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or tag in [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]


ROUTES = [
    ("/maps", viewer),
    ("/maps/", viewer),
    ("/maps/style.json", style_json),
    ("/maps/tiles/<name>.json", tilejson),
    ("/maps/tiles/<name>/<z>/<x>/<y>.<ext>", tile),
    ("/maps/archives/<filename>", archive_file),
    ("/maps/search", search),
    ("/maps/nearest", nearest),
    ("/maps/nearby", nearby),
    ("/maps/article", article_location),
    ("/maps/vendor/<filename>", vendor_file),
]
