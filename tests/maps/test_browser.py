"""A person's view: headless Chromium opens /maps on a real server with the offline world basemap, waits for
MapLibre's idle event, and we check the picture and that nothing was fetched from anywhere but this box."""

from __future__ import annotations

import pytest

from .cdp import Browser
from .maps_testing import install_built, wheelhouse_tarball

pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")


def _map_box(b: Browser) -> dict:
    return b.evaluate(
        "(() => { const r = document.getElementById('map').getBoundingClientRect();"
        " return {x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width),"
        " height: Math.round(r.height)}; })()"
    )


def _outside(b: Browser, live_server: str) -> list[str]:
    return [u for u in b.requested_urls() if not u.startswith((live_server + "/", "data:", f"blob:{live_server}/"))]


# Names of the features MapLibre placed on screen in the style's text layers (queryRenderedFeatures returns a
# symbol only when its label was laid out and drawn, not merely present in a tile).
RENDERED_LABELS = """(() => {
  const m = window.almanacMap;
  const ids = m.getStyle().layers.filter(l => l.type === 'symbol' && l.layout && l.layout['text-field'])
    .map(l => l.id);
  const found = ids.length ? m.queryRenderedFeatures({layers: ids}) : [];
  return {version: maplibregl.getVersion(), text_layers: ids, layers: [...new Set(found.map(f => f.layer.id))],
          names: [...new Set(found.map(f => f.properties['name:en'] || f.properties.name || f.properties['name:latin'])
            .filter(Boolean))]};
})()"""


def test_place_names_are_drawn_with_the_maplibre_from_the_tarball(built_maps, data_dir, live_server, browser):
    if wheelhouse_tarball() is None:
        pytest.skip(
            "no maplibre-gl-*.tgz in $ALMANAC_WHEELHOUSE, so only the PyPI MapLibre 5.3 (no labels) is here; "
            "tests/run.sh adds the tarball with `npm pack` when npm is present"
        )
    install_built(built_maps, data_dir)
    b = browser
    b.watch_everything()
    b.call("Page.navigate", url=f"{live_server}/maps")
    assert b.wait_for("window.almanacMapIdle === true", 60), f"map never went idle: {b.console_errors()}"
    seen = b.evaluate(RENDERED_LABELS)
    assert tuple(int(p) for p in seen["version"].split(".")[:3]) >= (5, 11, 0), seen["version"]
    assert seen["text_layers"], "the style served with MapLibre >= 5.11 has no text layers"
    # The initial world view: country names, really laid out on the canvas.
    assert any(lid.endswith("-country-label") for lid in seen["layers"]), seen
    assert len(seen["names"]) >= 10 and {"Canada", "China"} <= set(seen["names"]), seen
    # Closer in, city names too.
    b.evaluate("window.almanacMapIdle = false; window.almanacMap.jumpTo({center: [24.94, 60.17], zoom: 6}); true")
    assert b.wait_for("window.almanacMapIdle === true", 30)
    near = b.evaluate(RENDERED_LABELS)
    assert any(lid.endswith("-locality-label") for lid in near["layers"]), near
    assert {"Helsinki", "Tallinn"} <= set(near["names"]), near
    # The browser's own fonts: the style names no glyph files, and nothing was fetched from outside this box.
    assert b.evaluate("window.almanacMap.getStyle().glyphs === undefined")
    assert _outside(b, live_server) == []
    assert b.console_errors() == []


def test_world_map_renders_offline_and_search_flies_there(
    built_maps, data_dir, geo_book, live_server, browser, tmp_path
):
    install_built(built_maps, data_dir)
    b = browser
    b.watch_everything()
    b.call("Page.navigate", url=f"{live_server}/maps")
    assert b.wait_for("window.almanacMapIdle === true", 60), f"map never went idle: {b.console_errors()}"
    png = b.screenshot()
    (tmp_path / "maps.png").write_bytes(png)
    stats = b.colour_stats(png, _map_box(b))
    # Sea, land, borders, places: several colours, and the most common one (the sea) leaves a good part.
    assert stats["colours_over_0_2pct"] >= 3, stats
    assert stats["not_dominant"] >= 0.2, stats

    urls = b.requested_urls()
    tiles = [u for u in urls if "/maps/tiles/world/" in u]
    assert tiles, "no tile requests were seen (worker traffic must be watched too)"
    assert _outside(b, live_server) == []
    assert b.console_errors() == []

    # Search a town with its local spelling, pick the first answer, and the map flies there.
    b.evaluate(
        "window.almanacMapIdle = false;"
        "document.getElementById('maps-q').value = 'munchen';"
        "document.getElementById('maps-search').requestSubmit();"
    )
    assert b.wait_for(
        "(() => { const c = window.almanacMap.getCenter();"
        " return Math.abs(c.lat - 48.137) < 0.05 && Math.abs(c.lng - 11.575) < 0.05"
        " && window.almanacMap.getZoom() > 8; })()",
        30,
    )
    assert b.wait_for("window.almanacMapIdle === true", 30)
    assert b.evaluate("document.querySelectorAll('.maplibregl-marker').length") >= 1
    assert _outside(b, live_server) == []

    # Articles on the map: near Helsinki the test book's articles show as markers.
    b.call("Page.navigate", url=f"{live_server}/maps?lat=60.17&lon=24.94&z=9")
    assert b.wait_for(
        "!!window.almanacMap && window.almanacMap.getLayer('articles') !== undefined"
        " && window.almanacMap.querySourceFeatures('articles').length >= 2",
        30,
    ), b.console_errors()
    titles = b.evaluate("window.almanacMap.querySourceFeatures('articles').map(f => f.properties.title).sort()")
    assert {"Helsinki", "Espoo"} <= set(titles)


STREETS = """(() => {
  const m = window.almanacMap;
  const ids = m.getStyle().layers.filter(l => (l.source || '').endsWith('-helsinki')).map(l => l.id);
  const found = m.queryRenderedFeatures({layers: ids});
  return {zoom: m.getZoom(), layers: [...new Set(found.map(f => f.sourceLayer))],
          roads: found.filter(f => f.sourceLayer === 'transportation').length,
          buildings: found.filter(f => f.sourceLayer === 'building').length,
          world: m.queryRenderedFeatures().filter(f => f.source.endsWith('-world')).length};
})()"""


def test_a_region_cut_from_a_local_planet_file_shows_streets(built_maps, data_dir, live_server, browser):
    """`add-region` from a street-level archive on disk, then the map of central Helsinki at zoom 15: the
    region's roads and buildings are drawn, with the world basemap still underneath."""
    from almanac_testing import almanac

    from .maps_testing import shared_map

    install_built(built_maps, data_dir)
    added = almanac(
        "maps",
        "add-region",
        "--bbox",
        "24.90,60.15,24.98,60.18",
        "--maxzoom",
        "14",
        "--source",
        str(shared_map("openmaptiles")),
        "--name",
        "helsinki",
    )
    assert added.returncode == 0, added.stderr
    assert "MB to fetch" in added.stdout
    b = browser
    b.watch_everything()
    b.call("Page.navigate", url=f"{live_server}/maps?lat=60.1675&lon=24.9450&z=15")
    assert b.wait_for("window.almanacMapIdle === true", 60), f"map never went idle: {b.console_errors()}"
    seen = b.evaluate(STREETS)
    assert seen["roads"] > 20 and seen["buildings"] > 20, seen
    assert seen["world"] > 0, seen  # the basemap stays underneath the region
    labels = b.evaluate(RENDERED_LABELS)
    if tuple(int(p) for p in labels["version"].split(".")[:3]) >= (5, 11, 0):  # street names need local glyphs
        assert "omt-helsinki-road-label" in labels["layers"], labels
        assert "Mannerheimintie" in labels["names"] or len(labels["names"]) >= 10, labels
    assert any("/maps/tiles/helsinki/14/" in u for u in b.requested_urls())  # overzoomed from its max zoom 14
    assert _outside(b, live_server) == []
    assert b.console_errors() == []
