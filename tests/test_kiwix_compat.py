"""Kiwix-compatible URLs and the reader around articles: suggest, raw, OPDS, book home, viewer, ranking."""

from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET

from almanac_testing import zim

ATOM = "{http://www.w3.org/2005/Atom}"


def test_suggest_shape(client):
    rows = client.get("/suggest?content=example&term=wiki&count=5").get_json()
    assert rows[0] == {"value": "Wikibooks", "label": "<b>Wiki</b>books", "kind": "path", "path": "Wikibooks.html"}
    assert all(set(r) == {"value", "label", "kind", "path"} for r in rows if r["kind"] == "path")
    assert rows[-1] == {"value": "wiki ", "label": "containing &apos;wiki&apos;...", "kind": "pattern"}


def test_suggest_exact_title_first_and_escaping(client):
    rows = client.get("/suggest?content=corner_cases&term=c%23").get_json()
    assert rows[0]["value"] == "C#" and rows[0]["path"] == "c#.html"
    rows = client.get("/suggest?content=wikibooks_be_all_nopic_2017-02&term=%D0%9F%D0%B5%D1%80").get_json()
    assert rows[0]["value"] == "Першая старонка" and rows[0]["label"].startswith("<b>Пер</b>")
    rows = client.get("/suggest?content=example&term=%3Cscript%3E").get_json()
    assert all("<script>" not in r["label"] for r in rows)


def test_suggest_bad_input(client):
    assert client.get("/suggest?term=x").status_code == 404
    assert client.get("/suggest?content=nope&term=x").status_code == 404
    assert client.get("/suggest?content=example&term=x&count=abc").status_code == 400
    assert client.get("/suggest?content=example&term=").get_json() == []


def test_search_exact_title_comes_first(client):
    hits = client.get("/search?pattern=Wikibooks&content=example&format=json").get_json()
    assert hits[0]["title"] == "Wikibooks"
    hits = client.get("/search?pattern=wikibooks&format=json&pageLength=50").get_json()
    assert hits[0]["title"] == "Wikibooks"
    assert len({(h["book"], h["path"]) for h in hits}) == len(hits)  # no duplicates after promotion


def test_search_across_chosen_books_interleaves(app, client, tmp_path):
    twin = tmp_path / "example2.zim"
    shutil.copy(zim("example"), twin)
    app.extensions["almanac"].library.add(twin)
    hits = client.get("/search?pattern=book&books.name=example&books.name=example2&format=json").get_json()
    assert [h["book"] for h in hits] == ["example", "example2", "example", "example2"]
    assert hits[0]["path"] == hits[1]["path"]
    only = client.get("/search?pattern=book&books.name=example2&format=json").get_json()
    assert {h["book"] for h in only} == {"example2"}
    capped = client.get("/search?pattern=wikibooks&format=json&pageLength=100000").get_json()
    assert len(capped) <= 100


def test_raw_endpoint(client):
    page = client.get("/content/example/Wikibooks.html").data
    assert client.get("/raw/example/content/Wikibooks.html").data == page
    r = client.get("/raw/corner_cases/content/c_sharp.html")
    assert r.status_code == 302 and r.headers["Location"] == "/raw/corner_cases/content/c%23.html"


def test_opds_catalog(client):
    r = client.get("/catalog/v2/entries")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.data)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 6
    names = {e.find(f"{ATOM}name").text for e in entries}
    assert "wikibooks_be_all_nopic_2017-02" in names
    be = next(e for e in entries if e.find(f"{ATOM}name").text == "wikibooks_be_all_nopic_2017-02")
    assert be.find(f"{ATOM}language").text == "bel"
    assert be.find(f"{ATOM}articleCount").text == "66"
    assert {link.get("type") for link in be.findall(f"{ATOM}link")} >= {"text/html", "application/x-zim"}
    bel_only = ET.fromstring(client.get("/catalog/v2/entries?lang=bel").data)
    assert len(bel_only.findall(f"{ATOM}entry")) == 1
    page = ET.fromstring(client.get("/catalog/v2/entries?start=1&count=2").data)
    assert len(page.findall(f"{ATOM}entry")) == 2


def test_book_home_and_download(client):
    html = client.get("/book/wikibooks_be_all_nopic_2017-02").get_data(as_text=True)
    assert "Open the main page" in html and "Search Wikibooks" in html and "bel" in html
    data = client.get("/book/example?format=json").get_json()["book"]
    assert data["name"] == "example" and "path" not in data
    assert data["reader_url"] == "/viewer#example/Wikibooks.html"
    whole = client.get("/catalog/download/small_nons.zim")
    assert whole.status_code == 200 and whole.data == zim("small_nons").read_bytes()
    part = client.get("/catalog/download/small_nons.zim", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.data == b"ZIM\x04"
    assert client.get("/book/nope").status_code == 404


def test_viewer_page_is_self_contained(client):
    html = client.get("/viewer").get_data(as_text=True)
    for needle in ('id="page"', "viewer.js", "viewer.css", 'id="toc-toggle"', 'id="dark"', 'id="random"'):
        assert needle in html
    assert "https://" not in html and "http://" not in html
    css = client.get("/static/viewer.css").get_data(as_text=True)
    assert "@media print" in css


def test_dropped_archive_appears_without_restart(app, client, data_dir):
    library = app.extensions["almanac"].library
    library.scan_interval_s = 0  # the hook scans on every request here
    shutil.copy(zim("small_withns"), data_dir / "archives" / "dropped.zim")
    assert client.get("/content/dropped/A/main.html").status_code == 200
    (data_dir / "archives" / "dropped.zim").unlink()
    assert client.get("/content/dropped/A/main.html").status_code == 404
    assert "dropped" not in {b["name"] for b in client.get("/?format=json").get_json()["books"]}


def test_replaced_archive_is_reopened(app, client, data_dir):
    library = app.extensions["almanac"].library
    library.scan_interval_s = 0
    target = data_dir / "archives" / "swap.zim"
    shutil.copy(zim("small_nons"), target)
    assert client.get("/content/swap/main.html").status_code == 200
    time.sleep(0.01)
    tmp = data_dir / "archives" / ".swap.tmp"
    shutil.copy(zim("corner_cases"), tmp)
    tmp.replace(target)
    assert client.get("/content/swap/c%23.html").status_code == 200
    assert client.get("/content/swap/main.html").status_code == 404


def test_opds_self_link_keeps_a_quote_in_the_query_well_formed(client):
    r = client.get('/catalog/v2/entries?q=say "hi"&lang=eng')
    assert r.status_code == 200
    feed = ET.fromstring(r.data)  # an unescaped " in the attribute is not XML at all
    self_link = next(link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self")
    assert 'q=say "hi"' in self_link.get("href").replace("%20", " ").replace("%22", '"')
    assert b"&quot;hi&quot;" in r.data


def test_search_pages_are_capped_at_100_hits(app, client, tmp_path):
    from content.zim_builder import build_zim

    src = tmp_path / "lanterns"
    src.mkdir()
    (src / "index.html").write_text("<h1>Lanterns</h1><p>Many pages about lanterns.</p>")
    for i in range(130):
        (src / f"page{i}.html").write_text(f"<h1>Page {i}</h1><p>The lantern number {i} is lit.</p>")
    out = tmp_path / "lanterns.zim"
    build_zim(src, out, title="Lanterns")
    app.extensions["almanac"].library.add(out)
    asked = "/search?pattern=lantern&books.name=lanterns&format=json"
    assert len(client.get(asked).get_json()) == 25  # the default page
    assert len(client.get(f"{asked}&pageLength=120").get_json()) == 100
    assert len(client.get(f"{asked}&pageLength=100000").get_json()) == 100
    assert len(client.get(f"{asked}&pageLength=100&start=100").get_json()) == 31  # 130 pages and the index
