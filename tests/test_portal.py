"""The portal app on real archives: pages and their JSON twins, the reader, HTTP caching, search, errors."""

from __future__ import annotations

import gzip

from libzim.reader import Archive

from almanac_testing import zim


def test_home_has_three_cards_search_box_and_footer(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for text in ('name="viewport"', 'action="/search"', "Library", "Maps", "Assistant", 'class="status"'):
        assert text in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from outside the box
    assert "https://" not in html


def test_home_json_twin(client):
    data = client.get("/?format=json").get_json()
    assert [c["id"] for c in data["cards"]] == ["library", "maps", "assistant"]
    assert data["cards"][0]["count"] == 6
    assert {b["name"] for b in data["books"]} >= {"example", "small_nons"}


def test_healthz(client):
    data = client.get("/healthz").get_json()
    assert data["status"] == "ok"
    assert set(data) == {"status", "version", "uptime_s", "installed"}
    assert data["installed"] == {"books": 6, "maps": 0, "models": 0}


def test_static_assets_are_served(client):
    assert client.get("/static/almanac.css").status_code == 200
    assert client.get("/static/almanac.svg").status_code == 200


def test_library_page_and_language_filter(client):
    html = client.get("/library").get_data(as_text=True)
    assert "ZIM corner cases" in html and "bel" in html
    only = client.get("/library?lang=bel&format=json").get_json()
    assert [b["name"] for b in only["books"]] == ["wikibooks_be_all_nopic_2017-02"]
    assert "bel" in only["languages"] and "en" in only["languages"]


def test_main_page_redirects_to_main_entry(client):
    r = client.get("/content/small_nons/")
    assert r.status_code == 302 and r.headers["Location"] == "/content/small_nons/main.html"
    r = client.get("/content/small_withns/")
    assert r.status_code == 302 and r.headers["Location"] == "/content/small_withns/A/main.html"
    r = client.get("/content/wikibooks_be_all_nopic_2017-02/")
    assert r.status_code == 302 and "%D0%9F" in r.headers["Location"]  # Cyrillic path, percent-encoded


def test_article_bytes_equal_archive(client):
    entry = Archive(str(zim("example"))).get_entry_by_path("Wikibooks.html")
    r = client.get("/content/example/Wikibooks.html")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert r.data == bytes(entry.get_item().content)


def test_old_namespace_paths_both_ways(client):
    full = client.get("/content/small_withns/A/main.html")
    short = client.get("/content/small_withns/main.html")
    assert full.status_code == short.status_code == 200
    assert full.data == short.data and b"<html" in full.data.lower()


def test_zim_redirect_is_http_302(client):
    r = client.get("/content/corner_cases/c_sharp.html")
    assert r.status_code == 302
    assert client.get(r.headers["Location"]).status_code == 200


def test_redirect_loop_is_404_not_hang(client):
    r = client.get("/content/poor/redirect_loop.html")
    assert r.status_code == 404


def test_etag_and_304(client):
    r = client.get("/content/example/Wikibooks.html")
    etag = r.headers["ETag"]
    assert r.headers["Cache-Control"].startswith("public")
    again = client.get("/content/example/Wikibooks.html", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


def test_gzip_for_html_when_accepted(client):
    plain = client.get("/content/example/Wikibooks.html")
    zipped = client.get("/content/example/Wikibooks.html", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert (
        client.get(
            "/content/example/Wikibooks.html",
            headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
        ).status_code
        == 304
    )


def test_range_on_media(client):
    whole = client.get("/content/small_nons/favicon.png")
    assert whole.status_code == 200 and whole.mimetype == "image/png"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get("/content/small_nons/favicon.png", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == whole.data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole.data)}"
    tail = client.get("/content/small_nons/favicon.png", headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == whole.data[-5:]
    bad = client.get("/content/small_nons/favicon.png", headers={"Range": f"bytes={len(whole.data) + 5}-"})
    assert bad.status_code == 416


def test_head_request(client):
    r = client.head("/content/example/Wikibooks.html")
    assert r.status_code == 200 and r.data == b"" and int(r.headers["Content-Length"]) > 1000


def test_unknown_book_and_path_are_404_pages(client):
    for url in ("/content/nope/", "/content/nope/x.html", "/content/example/no-such-page.html"):
        r = client.get(url)
        assert r.status_code == 404 and b"Back to the home page" in r.data


def test_path_traversal_stays_inside_archives(client):
    for url in (
        "/content/example/../../../../etc/passwd",
        "/content/..%2F..%2Fetc/passwd",
        "/content/example/%2e%2e/%2e%2e/etc/passwd",
    ):
        r = client.get(url)
        assert r.status_code in (404, 308) and b"root:" not in r.data


def test_poor_archive_without_main_page(client):
    r = client.get("/content/poor/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/search?content=poor")
    assert client.get("/content/poor/article1.html").status_code == 200


def test_random_article(client):
    r = client.get("/random?content=example")
    assert r.status_code == 302
    target = client.get(r.headers["Location"])
    assert target.status_code == 200
    assert client.get("/random?content=nope").status_code == 404


def test_search_json_shape_and_highlight(client):
    hits = client.get("/search?pattern=wikibooks&content=example&format=json").get_json()
    assert hits and all(set(h) == {"book", "path", "title", "snippet"} for h in hits)
    assert all(h["book"] == "example" for h in hits)
    assert any("<b>" in h["snippet"].lower() for h in hits)
    page = client.get("/search?pattern=wikibooks&books.name=example&pageLength=2&start=1&format=json").get_json()
    assert len(page) == 2 and page[0]["path"] == hits[1]["path"]


def test_search_html_and_non_latin(client):
    html = client.get("/search?pattern=wikibooks").get_data(as_text=True)
    assert "results for" in html and "<b>" in html.lower()
    hits = client.get(
        "/search?pattern=%D0%BA%D0%BD%D1%96%D0%B3%D0%B0&content=wikibooks_be_all_nopic_2017-02&format=json"
    ).get_json()  # кніга
    assert hits and all(h["book"] == "wikibooks_be_all_nopic_2017-02" for h in hits)


def test_search_bad_input(client):
    assert client.get("/search?pattern=%21%21%21").status_code == 400
    assert client.get("/search?pattern=x&start=abc").status_code == 400
    assert client.get("/search?pattern=x&content=nope").status_code == 404
    assert client.get("/search?pattern=" + "a" * 600).status_code == 400


def test_illustration(client):
    r = client.get("/catalog/illustration/small_nons")
    assert r.status_code == 200 and r.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/catalog/illustration/poor").status_code == 404
