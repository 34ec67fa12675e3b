"""Articles on the map, on a ZIM built here with coordinates in its pages."""

from __future__ import annotations

import pytest

from content.maps.geoindex import find_coordinates


def test_find_coordinates_formats():
    assert find_coordinates('<span class="geo">60.17; 24.94</span>') == (60.17, 24.94)
    assert find_coordinates('<span class="latitude">-33.86</span> <span class="longitude">151.2</span>') == (
        -33.86,
        151.2,
    )
    assert find_coordinates('<meta name="geo.position" content="48.137;11.575">') == (48.137, 11.575)
    assert find_coordinates('<span class="geo">95; 10</span>') is None
    assert find_coordinates("<p>no place</p>") is None


def test_nearby_articles(maps_client, geo_book):
    rows = maps_client.get("/maps/nearby?lat=60.17&lon=24.94&radius_km=100").get_json()
    assert [r["title"] for r in rows] == ["Helsinki", "Espoo", "Tallinn"]
    assert set(rows[0]) == {"book", "path", "title", "lat", "lon", "distance_km"}
    assert rows[0]["book"] == "north" and rows[0]["distance_km"] < 1
    page = maps_client.get(f"/content/north/{rows[0]['path']}")
    assert page.status_code == 200 and b"Capital of Finland" in page.data
    assert [r["title"] for r in maps_client.get("/maps/nearby?lat=60.17&lon=24.94&radius_km=20").get_json()] == [
        "Helsinki",
        "Espoo",
    ]
    assert (
        maps_client.get("/maps/nearby?lat=60.17&lon=24.94&radius_km=100&limit=1").get_json()[0]["title"] == "Helsinki"
    )
    far = maps_client.get("/maps/nearby?lat=-33.87&lon=151.2&radius_km=5").get_json()
    assert [r["title"] for r in far] == ["Sydney"]
    assert maps_client.get("/maps/nearby?lat=0&lon=0&radius_km=50").get_json() == []
    assert maps_client.get("/maps/nearby?lat=x&lon=0").status_code == 400
    assert maps_client.get("/maps/nearby?lat=0&lon=0&radius_km=-1").status_code == 400


def test_article_location_for_view_on_map(maps_client, geo_book):
    rows = maps_client.get("/maps/nearby?lat=59.437&lon=24.7536&radius_km=1").get_json()
    loc = maps_client.get("/maps/article", query_string={"book": "north", "path": rows[0]["path"]}).get_json()
    assert loc["lat"] == pytest.approx(59.437) and loc["url"].startswith("/maps?lat=59.43700&lon=24.75360")
    assert maps_client.get("/maps/article?book=north&path=nowhere").status_code == 404


def test_removed_book_leaves_the_map(maps_app, maps_client, geo_book):
    assert maps_client.get("/maps/nearby?lat=60.17&lon=24.94&radius_km=5").get_json()
    maps_app.extensions["almanac"].library.remove("north")
    geo_book.unlink()
    maps_app.extensions["almanac"].maps._geo_synced = -1e9  # as if the sync interval had passed
    assert maps_client.get("/maps/nearby?lat=60.17&lon=24.94&radius_km=5").get_json() == []


def test_index_articles_command(geo_book):
    from almanac_testing import almanac

    proc = almanac("maps", "index-articles")
    assert proc.returncode == 0, proc.stderr
    assert "north\t4 articles with coordinates\t(indexed now)" in proc.stdout
    again = almanac("maps", "index-articles")
    assert "north\t4 articles with coordinates" in again.stdout and "indexed now" not in again.stdout


def test_big_books_are_indexed_once_in_the_background(geo_book, data_dir, monkeypatch):
    import time

    from content.library import Library
    from content.maps import geoindex

    monkeypatch.setattr(geoindex, "SYNC_INLINE_MAX_ARTICLES", 1)  # make the small book count as big
    library = Library(data_dir / "almanac.db", data_dir / "archives")
    library.scan()
    first, second = geoindex.GeoIndex(data_dir / "almanac.db"), geoindex.GeoIndex(data_dir / "almanac.db")
    assert first.sync(library) == []  # handed to a thread
    assert second.sync(library) == [] and not second._busy  # claimed by the first: left alone
    deadline = time.monotonic() + 30
    while first._busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [a.title for a in second.nearby(60.17, 24.94, 30)] == ["Helsinki", "Espoo"]
    library.close()
