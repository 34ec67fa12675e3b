"""The security headers of each kind of response, and the refusal of cross-site state-changing requests."""

from __future__ import annotations

import gzip

import pytest

from almanac_testing import csrf_headers

from appliance.web import article_bridge
from appliance.web.security_headers import ARCHIVE_CSP

FRAMED = {"Sec-Fetch-Dest": "iframe"}


def _sandbox(csp: str) -> set[str]:
    first = csp.split(";")[0].split()
    assert first[0] == "sandbox", csp
    return set(first[1:])


def test_archive_bytes_are_sandboxed_everywhere_they_are_served(client):
    for url in (
        "/content/example/Wikibooks.html",
        "/raw/example/content/Wikibooks.html",
        "/content/small_nons/favicon.png",
        "/content/example/no-such-page.html",  # an error page under /content/ is sandboxed too
        "/catalog/illustration/example",
        "/catalog/download/example",
    ):
        r = client.get(url)
        csp = r.headers.get("Content-Security-Policy", "")
        flags = _sandbox(csp)
        assert "allow-same-origin" not in flags and "allow-top-navigation" not in flags, (url, csp)
        assert {"allow-scripts", "allow-forms", "allow-popups"} <= flags, (url, csp)
        # No frame restriction: an article frames pages of its archive, whose ancestors include its opaque origin.
        assert "frame-ancestors" not in csp and "X-Frame-Options" not in r.headers, url
        assert r.headers["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in r.headers
        assert r.headers["Referrer-Policy"] == "same-origin", url


def test_portal_pages_and_admin_paths(client):
    for url in ("/", "/library", "/viewer", "/search?pattern=wiki", "/static/viewer.js", "/healthz"):
        r = client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff", url
        assert r.headers["X-Frame-Options"] == "SAMEORIGIN", url
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'self'", url
        assert "Access-Control-Allow-Origin" not in r.headers, url
    for url in ("/admin/", "/admin/tokens", "/admin"):  # the console's pages: never framed, not even by the portal
        r = client.get(url)
        assert r.headers["X-Frame-Options"] == "DENY", url
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'none'", url
        assert r.headers["X-Content-Type-Options"] == "nosniff", url


def test_tiles_from_the_fast_path_carry_the_headers(app, client, data_dir):
    from content.maps.registry import MapRegistry
    from maps.maps_testing import shared_map

    reg = MapRegistry(data_dir / "almanac.db", data_dir / "maps")
    name = reg.add(shared_map("raster"))["name"]
    reg.close()
    r = client.get(f"/maps/tiles/{name}/0/0/0.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.headers["Content-Security-Policy"] == ARCHIVE_CSP
    assert r.headers.getlist("Access-Control-Allow-Origin") == ["*"]  # once: tiles set it themselves
    again = client.get(f"/maps/tiles/{name}/0/0/0.png", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Content-Security-Policy"] == ARCHIVE_CSP


def test_the_bridge_is_added_only_to_framed_html(client):
    from libzim.reader import Archive

    from almanac_testing import zim

    raw_bytes = bytes(Archive(str(zim("example"))).get_entry_by_path("Wikibooks.html").get_item().content)
    framed = client.get("/content/example/Wikibooks.html", headers=FRAMED)
    assert framed.data.count(article_bridge.TAG) == 1 and framed.data.replace(article_bridge.TAG, b"") == raw_bytes
    assert framed.data.index(article_bridge.TAG) < framed.data.lower().index(b"</head>")
    assert framed.headers["Vary"] == "Accept-Encoding, Sec-Fetch-Dest"
    alone = client.get("/content/example/Wikibooks.html")
    assert alone.data == raw_bytes and alone.headers["Vary"] == "Accept-Encoding, Sec-Fetch-Dest"
    assert framed.headers["ETag"] != alone.headers["ETag"]
    # /raw/ and what is not HTML keep the archive's bytes, framed or not.
    assert client.get("/raw/example/content/Wikibooks.html", headers=FRAMED).data == raw_bytes
    png = client.get("/content/small_nons/favicon.png", headers=FRAMED)
    assert article_bridge.TAG not in png.data and png.headers["Accept-Ranges"] == "bytes"
    # The framed page's own ETag, gzip and 304 work as the plain page's do.
    zipped = client.get("/content/example/Wikibooks.html", headers={**FRAMED, "Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped.data) == framed.data
    for r in (framed, zipped):
        again = client.get(
            "/content/example/Wikibooks.html",
            headers={**FRAMED, "Accept-Encoding": "gzip", "If-None-Match": r.headers["ETag"]},
        )
        assert again.status_code == 304


def test_bridge_goes_before_head_end_or_at_the_end():
    assert article_bridge.add_to(b"<html><HEAD><title>t</title></HEAD><body>x</body></html>") == (
        b"<html><HEAD><title>t</title>" + article_bridge.TAG + b"</HEAD><body>x</body></html>"
    )
    assert article_bridge.add_to(b"<p>no head</p>") == b"<p>no head</p>" + article_bridge.TAG


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of this box is another origin
        {"Origin": "null"},  # a sandboxed article, in a browser that sends no Sec-Fetch-Site
        {"Origin": "http://elsewhere.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
)
def test_cross_site_state_changes_are_refused(client, app, headers):
    answers = app.extensions["almanac"].answers
    before = answers.waiting()
    for method, url in (("POST", "/answers"), ("POST", "/conversations/x/rename"), ("DELETE", "/answers/1")):
        r = client.open(url, method=method, headers={**headers, "Accept": "application/json"}, data={"q": "wiki"})
        assert r.status_code == 403, (method, url, r.status_code)
        assert "Refused" in r.get_json()["message"]
    assert answers.waiting() == before
    # Reading is not refused: links and images from anywhere still open.
    assert client.get("/library", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the CLI, curl, scripts: no browser, no marks
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://localhost"},  # the test client's host
    ],
)
def test_same_origin_and_non_browser_requests_pass(client, headers):
    token = csrf_headers(client)  # the portal's own pages send their CSRF token (appliance/web/auth.py)
    r = client.post("/conversations/nope/rename", headers={**headers, **token, "Accept": "application/json"}, json={})
    assert r.status_code == 404  # the view answered: no such conversation on this device
