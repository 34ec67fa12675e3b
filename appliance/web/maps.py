"""Map pages and endpoints: the viewer, generated styles, tiles, TileJSON, whole archives, place search,
nearest place, articles near a point and MapLibre's own files."""

from __future__ import annotations

import json

from flask import abort, current_app, jsonify, request, send_file

from content.maps import style as styles
from content.maps import vendor
from content.maps.registry import BASEMAP_NAME
from content.maps.tiles import describe, schema, vector_layers

from . import worker_state
from .args import float_arg, int_arg, whole_number
from .http_cache import make_etag, send_bytes
from .render import page
from .tiles import TILE_MAX_AGE, Refusal, answer_tile

SEARCH_LIMIT_MAX = 50


def state():
    return worker_state.get().maps


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
    return styles.Source(
        name,
        schema(archive),
        archive.format.ext,
        archive.minzoom,
        archive.maxzoom,
        archive.bounds(),
        _attribution(name, archive),
    )


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
    lib = vendor.find(worker_state.get().data.maps)
    st = state()
    data = {
        "archives": [dict(describe(n, a), basemap=n == BASEMAP_NAME) for n, a in archives],
        "choices": _choices(archives),
        "maplibre": {"version": lib.version_text, "origin": lib.origin, "local_glyphs": lib.local_glyphs}
        if lib
        else None,
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
        archives = (
            [(n, a) for n, a in archives if schema(a) == "protomaps"]
            + [(n, a) for n, a in archives if schema(a) == "openmaptiles"]
        ) or archives[:1]
    lib = vendor.find(worker_state.get().data.maps)
    labels = bool(lib and lib.local_glyphs)
    body = styles.build_style([_style_source(n, a) for n, a in archives], _base_url(), flavor, labels)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return send_bytes(request, raw, "application/json", make_etag("style", raw), max_age=60)


def tile(name: str, z: str, x: str, y: str, ext: str):
    answer = answer_tile(
        state().registry,
        name,
        whole_number(z, "z"),
        whole_number(x, "x"),
        whole_number(y, "y"),
        ext,
        request.headers.get("Accept-Encoding", ""),
    )
    if isinstance(answer, Refusal):
        abort(answer.status, description=answer.message)
    if answer.status == 204:
        return current_app.response_class(
            status=204, headers={**answer.headers, "Cache-Control": f"public, max-age={TILE_MAX_AGE}"}
        )
    return send_bytes(
        request, answer.body, answer.mimetype, answer.etag, max_age=TILE_MAX_AGE, extra_headers=answer.headers
    )


def tilejson(name: str):
    archive = state().registry.get(name)
    if archive is None:
        abort(404, description=f"no map named {name!r}")
    info = describe(name, archive)
    base = _base_url()
    body = {
        "tilejson": "3.0.0",
        "name": info["title"],
        "description": info["description"],
        "attribution": _attribution(name, archive),
        "scheme": "xyz",
        "tiles": [f"{base}/maps/tiles/{name}/{{z}}/{{x}}/{{y}}.{archive.format.ext}"],
        "minzoom": archive.minzoom,
        "maxzoom": archive.maxzoom,
        "bounds": archive.bounds(),
        "center": archive.center(),
        "format": archive.format.ext,
        "vector_layers": [dict(layer) for layer in vector_layers(archive.metadata)],
    }
    return jsonify(body)


def archive_file(filename: str):
    name, dot, ext = filename.rpartition(".")
    archive = state().registry.get(name) if dot else None
    if archive is None or ext != archive.kind:
        abort(404, description=f"no map archive {filename!r}")
    # send_file answers Range (206), If-None-Match/If-Modified-Since (304) from the file on disk.
    resp = send_file(
        archive.path,
        mimetype="application/vnd.pmtiles" if ext == "pmtiles" else "application/vnd.sqlite3",
        as_attachment=False,
        conditional=True,
        max_age=3600,
        download_name=filename,
    )
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


# -- places ------------------------------------------------------------------------------------------
def search():
    q = request.args.get("q", "").strip()
    limit = int_arg("limit", 10, 1, SEARCH_LIMIT_MAX)
    gaz = state().gazetteer()
    if gaz is None:
        abort(503, description="the place index is not built yet; run `almanac maps init`")
    return jsonify([p.to_json() for p in gaz.search(q, limit)] if q else [])


def nearest():
    lat, lon = float_arg("lat", -90, 90), float_arg("lon", -180, 180)
    gaz = state().gazetteer()
    if gaz is None:
        abort(503, description="the place index is not built yet; run `almanac maps init`")
    return jsonify([dict(p.to_json(), distance_km=round(d, 2)) for p, d in gaz.nearest(lat, lon, 1)])


def nearby():
    """Articles with coordinates within radius_km of a point, nearest first."""
    lat, lon = float_arg("lat", -90, 90), float_arg("lon", -180, 180)
    radius = float_arg("radius_km", 0, 2000, default=10.0)
    limit = int_arg("limit", 100, 1, 500)
    geo = state().articles(worker_state.get().library)
    return jsonify([a.to_json() for a in geo.nearby(lat, lon, radius, limit)])


def article_location():
    """Where a library article is, for a "view on map" link: {"lat","lon","url"} or 404."""
    book, path = request.args.get("book", ""), request.args.get("path", "")
    coords = state().articles(worker_state.get().library).coordinates(book, path)
    if coords is None:
        abort(404, description="no coordinates known for that article")
    lat, lon = coords
    return jsonify({"lat": lat, "lon": lon, "url": f"/maps?lat={lat:.5f}&lon={lon:.5f}&z=13"})


def vendor_file(filename: str):
    lib = vendor.find(worker_state.get().data.maps)
    if lib is None:
        abort(404, description="MapLibre GL JS is not installed; run `almanac maps init`")
    files = {"maplibre-gl.js": (lib.js, "application/javascript"), "maplibre-gl.css": (lib.css, "text/css")}
    if filename not in files:
        abort(404)
    path, mimetype = files[filename]
    body = path.read_bytes()
    return send_bytes(request, body, mimetype, make_etag(path, path.stat().st_mtime_ns, len(body)), max_age=86400)


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
