"""The map endpoints on the shared archives: tiles byte for byte, errors, caching, TileJSON, styles, whole
archives with Range, place search with diacritics."""

from __future__ import annotations

import gzip
import json

import pytest
from pmtiles.reader import MmapSource, all_tiles

from almanac_testing import almanac
from content.maps.registry import MapRegistry

from .maps_testing import ARCHIVES, install_built, shared_map


@pytest.fixture
def served(maps_app, data_dir):
    """The shared archives registered in place, under their file names."""
    reg = MapRegistry(data_dir / "almanac.db", data_dir / "maps")
    names = {key: reg.add(shared_map(key))["name"] for key in ARCHIVES}
    reg.close()
    return names


def _tiles(key):
    with open(shared_map(key), "rb") as f:
        return list(all_tiles(MmapSource(f)))


def test_vector_tiles_pass_through_gzip_or_decompress(maps_client, served):
    name = served["openmaptiles"]
    for (z, x, y), stored in _tiles("openmaptiles"):
        r = maps_client.get(f"/maps/tiles/{name}/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
        if not gzip.decompress(stored):
            assert r.status_code == 204 and r.data == b""
            continue
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/vnd.mapbox-vector-tile"
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.data == stored  # the archive's bytes, untouched
        plain = maps_client.get(f"/maps/tiles/{name}/{z}/{x}/{y}.pbf")
        assert "Content-Encoding" not in plain.headers
        assert plain.data == gzip.decompress(stored)
        assert plain.headers["ETag"] != r.headers["ETag"]


def test_raster_tiles_and_caching(maps_client, served):
    name = served["raster"]
    (z, x, y), stored = _tiles("raster")[-1]
    r = maps_client.get(f"/maps/tiles/{name}/{z}/{x}/{y}.png", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert r.data == stored and "Content-Encoding" not in r.headers
    assert "max-age" in r.headers["Cache-Control"]
    again = maps_client.get(f"/maps/tiles/{name}/{z}/{x}/{y}.png", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize(
    "path,status",
    [
        ("/maps/tiles/{w}/2/4/0.pbf", 400),  # x beyond 2^z
        ("/maps/tiles/{w}/2/0/-1.pbf", 400),
        ("/maps/tiles/{w}/z/0/0.pbf", 400),
        ("/maps/tiles/{w}/1/0/0.5.pbf", 400),
        ("/maps/tiles/{w}/31/0/0.pbf", 400),
        ("/maps/tiles/{w}/5/0/0.pbf", 404),  # past the archive's max zoom 4
        ("/maps/tiles/{w}/0/0/0.png", 404),  # wrong format for a vector archive
        ("/maps/tiles/nosuchmap/0/0/0.pbf", 404),
    ],
)
def test_bad_tile_requests(maps_client, served, path, status):
    r = maps_client.get(path.format(w=served["protomaps"]) + "?format=json")
    assert r.status_code == status
    assert r.get_json()["status"] == status


def test_missing_tile_inside_range_is_204(maps_client, served):
    # Helsinki's archive addresses a handful of tiles; most of zoom 10 is empty.
    r = maps_client.get(f"/maps/tiles/{served['openmaptiles']}/10/0/0.pbf")
    assert r.status_code == 204 and r.data == b""


def test_tilejson(maps_client, served):
    name = served["protomaps10m"]
    tj = maps_client.get(f"/maps/tiles/{name}.json").get_json()
    assert tj["tilejson"] == "3.0.0" and tj["minzoom"] == 0 and tj["maxzoom"] == 6
    assert tj["tiles"] == [f"http://localhost/maps/tiles/{name}/{{z}}/{{x}}/{{y}}.pbf"]
    assert {"earth", "places"} <= {layer["id"] for layer in tj["vector_layers"]}
    assert "Natural Earth" in tj["attribution"]
    toner = maps_client.get(f"/maps/tiles/{served['raster']}.json").get_json()
    assert toner["format"] == "png" and "OpenStreetMap" in toner["attribution"]
    assert maps_client.get("/maps/tiles/nosuchmap.json").status_code == 404


def test_whole_archive_with_range(maps_client, served):
    name = served["protomaps"]
    raw = shared_map("protomaps").read_bytes()
    whole = maps_client.get(f"/maps/archives/{name}.pmtiles")
    assert whole.status_code == 200 and whole.data == raw
    part = maps_client.get(f"/maps/archives/{name}.pmtiles", headers={"Range": "bytes=0-126"})
    assert part.status_code == 206 and part.data == raw[:127]
    assert part.headers["Content-Range"] == f"bytes 0-126/{len(raw)}"
    tail = maps_client.get(f"/maps/archives/{name}.pmtiles", headers={"Range": f"bytes={len(raw) - 10}-"})
    assert tail.data == raw[-10:]
    assert maps_client.get(f"/maps/archives/{name}.mbtiles").status_code == 404
    assert maps_client.get("/maps/archives/nosuchmap.pmtiles").status_code == 404


def _style(client, **args):
    r = client.get("/maps/style.json", query_string=args)
    assert r.status_code == 200, r.data
    return json.loads(r.data)


def test_styles_for_each_schema(maps_client, served, monkeypatch):
    composite = _style(maps_client, flavor="light")
    assert composite["version"] == 8 and "glyphs" not in composite
    # Every vector map at once, whatever its schema (a street-level region shows without being picked);
    # raster maps only on demand.
    vector = {k for k, v in composite["sources"].items() if v["type"] == "vector"}
    assert vector == {f"pm-{served['protomaps']}", f"pm-{served['protomaps10m']}", f"omt-{served['openmaptiles']}"}
    assert not any(v["type"] == "raster" for v in composite["sources"].values())
    layer_ids = [layer["id"] for layer in composite["layers"]]
    assert len(layer_ids) == len(set(layer_ids))
    # Drawing order: all earth first, all labels last, whichever archive they come from.
    first_label = min(
        i for i, layer in enumerate(composite["layers"]) if layer["metadata"]["almanac:group"] == "labels"
    )
    last_fill = max(i for i, layer in enumerate(composite["layers"]) if layer["type"] == "fill")
    assert last_fill < first_label
    for layer in composite["layers"]:
        if "source" in layer:
            assert layer["source"] in composite["sources"]
    # This data dir has no npm MapLibre, so the PyPI build (< 5.11) is served: no text without glyphs.
    lib = maps_client.get("/maps?format=json").get_json()["maplibre"]
    has_text = any(layer["type"] == "symbol" for layer in composite["layers"])
    assert has_text == lib["local_glyphs"]
    dark = _style(maps_client, flavor="dark")
    assert dark["layers"][0]["paint"]["background-color"] != composite["layers"][0]["paint"]["background-color"]
    omt = _style(maps_client, map=served["openmaptiles"])
    assert {layer.get("source-layer") for layer in omt["layers"]} >= {"transportation", "water", "place"}
    assert f"pm-{served['protomaps10m']}" in omt["sources"]  # the world stays underneath
    src = omt["sources"][f"omt-{served['openmaptiles']}"]
    assert src["maxzoom"] == 14  # MapLibre overzooms past it
    raster = _style(maps_client, map=served["raster"], flavor="dark")
    assert raster["sources"][f"raster-{served['raster']}"]["type"] == "raster"
    assert maps_client.get("/maps/style.json?flavor=sepia").status_code == 400
    assert maps_client.get("/maps/style.json?map=nosuchmap").status_code == 404


def test_viewer_page_and_json_twin(maps_client, served):
    page = maps_client.get("/maps")
    assert page.status_code == 200 and b'id="map"' in page.data and b"/maps/vendor/maplibre-gl.js" in page.data
    data = maps_client.get("/maps?format=json").get_json()
    assert {a["name"] for a in data["archives"]} == set(served.values())
    assert data["maplibre"]["version"].count(".") == 2
    assert [c["id"] for c in data["choices"]][0] == ""
    js = maps_client.get("/maps/vendor/maplibre-gl.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and js.headers["Content-Encoding"] == "gzip"
    assert b"maplibre" in gzip.decompress(js.data)[:400].lower()
    assert maps_client.get("/maps/vendor/other.js").status_code == 404


def test_place_search_needs_the_index(maps_client):
    r = maps_client.get("/maps/search?q=paris&format=json")
    assert r.status_code == 503 and "almanac maps init" in r.get_json()["message"]


@pytest.fixture
def with_places(maps_app, data_dir, built_maps):
    install_built(built_maps, data_dir)


@pytest.mark.parametrize(
    "query,name,country",
    [
        ("munchen", "Munich", "DE"),
        ("München", "Munich", "DE"),
        ("MUNCHEN", "Munich", "DE"),
        ("sao paulo", "São Paulo", "BR"),
        ("São Paulo", "São Paulo", "BR"),
        ("zurich", "Zürich", "CH"),
        ("reykjavik", "Reykjavík", "IS"),
        ("malmo", "Malmö", "SE"),
        ("kobenhavn", "Copenhagen", "DK"),
        ("paris", "Paris", "FR"),
        ("helsinki", "Helsinki", "FI"),
        ("new york", "New York City", "US"),
    ],
)
def test_place_search(maps_client, with_places, query, name, country):
    rows = maps_client.get("/maps/search", query_string={"q": query}).get_json()
    assert rows[0]["name"] == name and rows[0]["country"] == country, rows[:3]
    assert set(rows[0]) == {"name", "country", "lat", "lon", "population"}
    assert rows[0]["population"] >= 1000


def test_place_search_ranks_by_population_and_limits(maps_client, with_places):
    rows = maps_client.get("/maps/search?q=spring&limit=5").get_json()
    assert len(rows) == 5
    pops = [r["population"] for r in rows if not r["name"].lower().startswith("spring")]
    assert pops == sorted(pops, reverse=True)
    assert maps_client.get("/maps/search?q=").get_json() == []
    assert maps_client.get("/maps/search?q=zzqxqzzy").get_json() == []
    assert maps_client.get("/maps/search?q=paris&limit=x").status_code == 400


def test_nearest_place(maps_client, with_places):
    rows = maps_client.get("/maps/nearest?lat=60.1699&lon=24.9384").get_json()
    assert rows[0]["name"] == "Helsinki" and rows[0]["distance_km"] < 2
    far = maps_client.get("/maps/nearest?lat=-60&lon=-40").get_json()  # the Southern Ocean: still an answer
    assert far and far[0]["distance_km"] > 100
    assert maps_client.get("/maps/nearest?lat=91&lon=0").status_code == 400
    assert maps_client.get("/maps/nearest?lat=abc&lon=0").status_code == 400


def test_text_layers_use_local_fonts_without_glyphs():
    from content.maps.style import FONT, Source, build_style

    src = Source("w", "protomaps", "pbf", 0, 6, [-180, -85, 180, 85], "NE")
    style = build_style([src], "http://box", "light", labels=True)
    symbols = [layer for layer in style["layers"] if layer["type"] == "symbol"]
    assert symbols and all(layer["layout"]["text-font"] == FONT for layer in symbols)
    assert "glyphs" not in style
    assert style["sources"]["pm-w"]["tiles"] == ["http://box/maps/tiles/w/{z}/{x}/{y}.pbf"]
    no_text = build_style([src], "http://box", "dark", labels=False)
    assert not any(layer["type"] == "symbol" for layer in no_text["layers"])
    with pytest.raises(ValueError):
        build_style([src], "http://box", "sepia")


def test_fast_path_answers_like_the_view(maps_app, maps_client, served):
    """Tiles usually skip Flask (TileFastPath); the Flask view behind it must give the same answer."""
    from werkzeug.test import Client

    from appliance.web.tile_fast_path import TileFastPath

    name = served["protomaps10m"]
    assert isinstance(maps_app.wsgi_app, TileFastPath)  # the app factory puts it in front of Flask
    flask_only = Client(maps_app.wsgi_app.wsgi_app)
    (z, x, y), stored = max(_tiles("protomaps10m"), key=lambda t: len(t[1]))
    url = f"/maps/tiles/{name}/{z}/{x}/{y}.pbf"
    for headers in ({"Accept-Encoding": "gzip"}, {}):
        with maps_app.app_context():
            slow = flask_only.get(url, headers=headers)
        fast = maps_client.get(url, headers=headers)
        assert fast.data == slow.data and fast.status_code == slow.status_code == 200
        for h in ("Content-Type", "Content-Encoding", "ETag", "Cache-Control", "Vary", "Access-Control-Allow-Origin"):
            assert fast.headers.get(h) == slow.headers.get(h), h
        assert maps_client.get(url, headers={**headers, "If-None-Match": fast.headers["ETag"]}).status_code == 304
    head = maps_client.head(url, headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and head.data == b"" and int(head.headers["Content-Length"]) == len(stored)


def test_mbtiles_served_directly(maps_client, data_dir, tmp_path):
    from pmtiles.convert import pmtiles_to_mbtiles

    mb = data_dir / "maps" / "helsinki.mbtiles"
    pmtiles_to_mbtiles(str(shared_map("openmaptiles")), str(mb))
    (z, x, y), stored = max(_tiles("openmaptiles"), key=lambda t: len(t[1]))
    r = maps_client.get(f"/maps/tiles/helsinki/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.data == stored and r.headers["Content-Encoding"] == "gzip"
    assert maps_client.get("/maps/tiles/helsinki.json").get_json()["maxzoom"] == 14
    assert maps_client.get("/maps/archives/helsinki.mbtiles").data == mb.read_bytes()


def test_an_mbtiles_archive_counts_as_an_installed_map(maps_client, data_dir):
    from pmtiles.convert import pmtiles_to_mbtiles

    pmtiles_to_mbtiles(str(shared_map("openmaptiles")), str(data_dir / "maps" / "helsinki.mbtiles"))
    assert maps_client.get("/healthz").get_json()["installed"]["maps"] == 1
    card = next(c for c in maps_client.get("/?format=json").get_json()["cards"] if c["id"] == "maps")
    assert card["count"] == 1 and card["url"] == "/maps"
    status = almanac("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["maps"] == ["helsinki.mbtiles"]
