"""A person's view: headless Chromium opens /maps on a real server with the offline world basemap, waits for
MapLibre's idle event, and we check the picture and that nothing was fetched from anywhere but this box."""
from __future__ import annotations

import pytest

from .cdp import Browser
from .conftest import install_built

pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")


def _map_box(b: Browser) -> dict:
    return b.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                      " return {x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width),"
                      " height: Math.round(r.height)}; })()")


def test_world_map_renders_offline_and_search_flies_there(built_maps, data_dir, geo_book, live_server, browser,
                                                          tmp_path):
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
    outside = [u for u in urls if not u.startswith((live_server + "/", "data:", f"blob:{live_server}/"))]
    assert outside == []
    assert b.console_errors() == []

    # Search a town with its local spelling, pick the first answer, and the map flies there.
    b.evaluate("window.almanacMapIdle = false;"
               "document.getElementById('maps-q').value = 'munchen';"
               "document.getElementById('maps-search').requestSubmit();")
    assert b.wait_for("(() => { const c = window.almanacMap.getCenter();"
                      " return Math.abs(c.lat - 48.137) < 0.05 && Math.abs(c.lng - 11.575) < 0.05"
                      " && window.almanacMap.getZoom() > 8; })()", 30)
    assert b.wait_for("window.almanacMapIdle === true", 30)
    assert b.evaluate("document.querySelectorAll('.maplibregl-marker').length") >= 1
    outside = [u for u in b.requested_urls() if not u.startswith((live_server + "/", "data:", f"blob:{live_server}/"))]
    assert outside == []

    # Articles on the map: near Helsinki the test book's articles show as markers.
    b.call("Page.navigate", url=f"{live_server}/maps?lat=60.17&lon=24.94&z=9")
    assert b.wait_for("!!window.almanacMap && window.almanacMap.getLayer('articles') !== undefined"
                      " && window.almanacMap.querySourceFeatures('articles').length >= 2", 30), b.console_errors()
    titles = b.evaluate("window.almanacMap.querySourceFeatures('articles').map(f => f.properties.title).sort()")
    assert {"Helsinki", "Espoo"} <= set(titles)
