"""The catalog client, packs, updates and installs against Debian's kiwix-serve itself, serving a
library.xml made by kiwix-manage from ZIMs built here, whose acquisition links point at .meta4 files on
the tests' file server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from content.acquire import AcquireError, download, find_entry, install_plan
from content.catalog import Catalog, CatalogError
from content.packs import PackError, load_packs, plan_pack
from content.packs.packs import parse_pack
from content.updates import find_updates, start_update
from fill_testing import FaultServer, KiwixServe, build_book, make_box, publish, sha256

RELEASES = [  # name, flavour, date, category, language
    ("tiny_en_all", "nopic", "2024-01-05", "wikipedia", "eng"),
    ("tiny_en_all", "nopic", "2024-06-01", "wikipedia", "eng"),
    ("tiny_en_all", "maxi", "2024-07-01", "wikipedia", "eng"),
    ("livres_fr_all", "", "2023-03-01", "gutenberg", "fra"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Built once: the books, the file server with their metalinks, kiwix-serve over them."""
    work = tmp_path_factory.mktemp("catalog")
    books = {}
    files = FaultServer(work / "files", work).start()
    kiwix = KiwixServe(work)
    for name, flavour, date, category, language in RELEASES:
        zim = build_book(
            work / "books",
            name=name,
            flavour=flavour,
            date=date,
            category=category,
            language=language,
            title=f"Tiny {flavour or 'book'} {date}",
        )
        books[(name, flavour, date)] = zim
        kiwix.add(zim, publish(zim, files.root, files.url))
    kiwix.start()
    yield {"kiwix": kiwix, "files": files, "books": books, "work": work}
    kiwix.stop()
    files.stop()


@pytest.fixture
def catalog(world, tmp_path):
    cat = Catalog(world["kiwix"].url + "/catalog/v2/entries", tmp_path / "almanac.db")
    yield cat
    cat.close()


def test_entries_with_filters_and_paging(catalog):
    page = catalog.entries()
    assert page.total == 4 and not page.offline and page.age_s < 5
    assert {(e.name, e.flavour, e.date) for e in page.entries} == {r[:3] for r in RELEASES}
    tiny = catalog.entries(name="tiny_en_all")
    assert tiny.total == 3 and {e.stable_name for e in tiny.entries} == {"tiny_en_all_nopic", "tiny_en_all_maxi"}
    assert [e.name for e in catalog.entries(lang="fra").entries] == ["livres_fr_all"]
    assert [e.name for e in catalog.entries(category="gutenberg").entries] == ["livres_fr_all"]
    assert catalog.entries(q="maxi").total == 1
    first, second = catalog.entries(count=2), catalog.entries(count=2, start=2)
    assert len(first.entries) == 2 and len(second.entries) == 2 and second.start == 2
    assert {e.id for e in first.entries}.isdisjoint({e.id for e in second.entries})
    entry = first.entries[0]
    assert entry.url.endswith(".zim.meta4") and entry.url.startswith("http://127.0.0.1:")
    assert entry.article_count == 1 and entry.size > 0 and entry.language in ("eng", "fra")
    assert page.to_json()["entries"][0]["stable_name"]
    with pytest.raises(CatalogError, match="count must be"):
        catalog.entries(count=0)


def test_languages_categories_and_illustrations(catalog):
    assert {(lang.code, lang.count) for lang in catalog.languages()} == {("eng", 3), ("fra", 1)}
    assert {c.name for c in catalog.categories()} == {"wikipedia", "gutenberg"}
    entry = catalog.entries(lang="fra").entries[0]
    png = catalog.illustration(entry)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_newest_release_by_name_and_flavour(catalog):
    assert catalog.newest("tiny_en_all", "nopic").date == "2024-06-01"
    assert catalog.newest("tiny_en_all", "maxi").date == "2024-07-01"
    assert catalog.newest("tiny_en_all", "mini") is None
    assert catalog.newest("livres_fr_all").date == "2023-03-01"
    assert find_entry(catalog, "tiny_en_all_nopic").date == "2024-06-01"
    assert find_entry(catalog, "tiny_en_all:maxi").flavour == "maxi"
    with pytest.raises(AcquireError, match="no book named"):
        find_entry(catalog, "nothing_here")


def test_cached_catalog_browses_offline_with_its_age(world, tmp_path):
    db = tmp_path / "almanac.db"
    online = Catalog(world["kiwix"].url, db)
    assert online.refresh() == 4
    online.entries(lang="eng")
    offline = Catalog(world["kiwix"].url, db)
    offline.url = "http://127.0.0.1:9"  # the same catalog with no network: nothing listens there
    with pytest.raises(CatalogError, match="never fetched"):
        offline.entries()
    offline.cache._conn.execute("UPDATE catalog_entries SET catalog = ?", (offline.url,))
    offline.cache._conn.execute("UPDATE catalog_entries SET seen_at = seen_at - 3600")
    page = offline.entries(lang="eng", q="nopic")
    assert page.offline and page.age_s > 3500 and "refused" in page.error.lower()
    assert {e.date for e in page.entries} == {"2024-01-05", "2024-06-01"}
    assert offline.newest("tiny_en_all", "nopic").date == "2024-06-01"


def test_a_page_cached_under_its_own_url_answers_offline(world, tmp_path):
    db = tmp_path / "almanac.db"
    Catalog(world["kiwix"].url, db).entries(lang="fra")
    world["kiwix"].stop()
    try:
        page = Catalog(world["kiwix"].url, db).entries(lang="fra")
        assert page.offline and [e.name for e in page.entries] == ["livres_fr_all"]
    finally:
        world["kiwix"].start()


def test_not_a_catalog_is_a_clear_error(world, tmp_path):
    not_opds = Catalog(world["files"].url, tmp_path / "almanac.db")  # a file server: /catalog/v2 is a 404
    with pytest.raises(CatalogError, match="HTTP 404"):
        not_opds.entries()
    (world["files"].root / "catalog" / "v2").mkdir(parents=True, exist_ok=True)
    (world["files"].root / "catalog" / "v2" / "entries").write_text("<html>hello</html>")
    with pytest.raises(CatalogError, match="not an Atom feed"):
        not_opds.entries()
    with pytest.raises(CatalogError, match="not an http"):
        Catalog("ftp://x", tmp_path / "almanac.db")


def test_shipped_packs_are_valid_and_name_books_not_dated_files():
    packs = load_packs()
    assert {
        "wikipedia-en-top-nopic",
        "wikimed-en",
        "wiktionary-en",
        "gutenberg-en",
        "ifixit-en",
        "school-starter",
    } <= set(packs)
    kinds = {i.kind for p in packs.values() for i in p.items}
    assert kinds == {"zim", "map", "model"}
    with pytest.raises(PackError, match="dated file"):
        parse_pack(
            "id: x\nversion: 1\ntitle: X\nitems:\n  - {kind: zim, name: wikipedia_en_top_nopic_2024-06}\n", "x.yaml"
        )
    with pytest.raises(PackError, match=r"x.yaml: items\[0\]: unknown key 'url'"):
        parse_pack("id: x\nversion: 1\ntitle: X\nitems:\n  - {kind: zim, name: a, url: http://x}\n", "x.yaml")
    with pytest.raises(PackError, match="country must be text .quote it"):
        parse_pack("id: x\nversion: 1\ntitle: X\nitems:\n  - {kind: map, country: NO, maxzoom: 9}\n", "x.yaml")
    with pytest.raises(PackError, match="not valid YAML"):
        parse_pack("id: [", "x.yaml")


def test_user_pack_with_a_higher_version_wins(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "id: wiktionary-en\nversion: 99\ntitle: Mine\nitems:\n  - {kind: zim, name: a}\n"
    )
    assert load_packs([tmp_path])["wiktionary-en"].title == "Mine"


def test_plan_against_free_disk_then_install_from_kiwix_serve(world, catalog, tmp_path):
    pack = parse_pack(
        "id: tiny\nversion: 1\ntitle: Tiny\nitems:\n  - {kind: zim, name: tiny_en_all, flavour: nopic}\n"
        "  - {kind: zim, name: livres_fr_all}\n",
        "tiny.yaml",
    )
    plan = plan_pack(pack, catalog, free_bytes=10**9)
    assert plan.fits and plan.verdict == "fits"
    assert [(i.status, i.entry.date) for i in plan.items] == [("download", "2024-06-01"), ("download", "2023-03-01")]
    tight = plan_pack(pack, catalog, free_bytes=plan.total_bytes + 1_000_000 - 50_000, reserve_bytes=1_000_000)
    assert not tight.fits and tight.verdict == "does not fit: 50.0 KB short"
    with_map = parse_pack(
        "id: m\nversion: 1\ntitle: M\nitems:\n  - {kind: zim, name: livres_fr_all}\n"
        "  - {kind: map, country: 'NO', maxzoom: 9, approx_bytes: 12000000000}\n",
        "m.yaml",
    )
    big = plan_pack(with_map, catalog, free_bytes=catalog.newest("livres_fr_all").size)
    assert big.verdict == "does not fit: 12.0 GB short" and big.items[1].status == "estimate"
    with pytest.raises(AcquireError, match="does not fit"):
        install_plan(None, tight)

    library, provenance, downloader = make_box(tmp_path / "data")
    jobs = install_plan(downloader, plan)
    ran = downloader.run()
    assert [j.state for j in ran] == ["done", "done"], [j.error for j in ran]
    newest = world["books"][("tiny_en_all", "nopic", "2024-06-01")]
    assert sha256(library.archives_dir / "tiny_en_all_nopic.zim") == sha256(newest)
    assert {b.name for b in library.list()} == {"tiny_en_all_nopic", "livres_fr_all"}
    again = plan_pack(pack, catalog, free_bytes=10**9, installed={b.name: b.date for b in library.list()})
    assert [i.status for i in again.items] == ["installed", "installed"] and again.total_bytes == 0
    assert len(jobs) == 2


def test_missing_book_in_a_pack_is_said(catalog):
    pack = parse_pack(
        "id: gone\nversion: 1\ntitle: Gone\nitems:\n  - {kind: zim, name: nope_en_all, flavour: maxi}\n", "g"
    )
    plan = plan_pack(pack, catalog, free_bytes=10**12)
    assert plan.missing and "no 'nope_en_all' with flavour 'maxi'" in plan.items[0].note
    with pytest.raises(AcquireError, match="nope_en_all"):
        install_plan(None, plan)


def test_update_keeps_the_name_and_a_failed_update_keeps_the_old_book(world, catalog, tmp_path):
    library, provenance, downloader = make_box(tmp_path / "data")
    old = world["books"][("tiny_en_all", "nopic", "2024-01-05")]
    old_entry = next(e for e in catalog.entries(name="tiny_en_all").entries if e.date == "2024-01-05")
    download(downloader, catalog, old_entry.url)  # an old release, by its URL
    [done] = downloader.run()
    assert done.state == "done" and done.name == "tiny_en_all_nopic", done.error
    assert sha256(Path(done.result)) == sha256(old)

    [update] = find_updates(library, provenance, catalog)
    assert (update.book, update.installed_date, update.entry.date) == ("tiny_en_all_nopic", "2024-01-05", "2024-06-01")

    new = world["books"][("tiny_en_all", "nopic", "2024-06-01")]
    world["files"].faults({f"/{new.name}": {"corrupt_at": 1000}})
    try:
        start_update(library, provenance, catalog, downloader, "tiny_en_all_nopic")
        [failed] = downloader.run()
    finally:
        world["files"].faults({})
    assert failed.state == "failed" and "checksum mismatch" in failed.error
    assert sha256(library.archives_dir / "tiny_en_all_nopic.zim") == sha256(old)  # still serving
    assert library.get("tiny_en_all_nopic").date == "2024-01-05"

    uuid_before = library.get("tiny_en_all_nopic").uuid
    start_update(library, provenance, catalog, downloader, "tiny_en_all_nopic")
    [updated] = downloader.run()
    assert updated.state == "done", updated.error
    book = library.get("tiny_en_all_nopic")
    assert book.path == str((library.archives_dir / "tiny_en_all_nopic.zim").absolute())
    assert book.date == "2024-06-01" and book.uuid != uuid_before
    assert sha256(Path(book.path)) == sha256(new)
    assert library.archive("tiny_en_all_nopic").get_entry_by_path(book.main_path) is not None
    assert find_updates(library, provenance, catalog) == []
    with pytest.raises(AcquireError, match="up to date"):
        start_update(library, provenance, catalog, downloader, "tiny_en_all_nopic")


def test_update_offered_for_a_book_added_by_hand(world, catalog, tmp_path):
    library, provenance, _ = make_box(tmp_path / "data")
    old = world["books"][("tiny_en_all", "nopic", "2024-01-05")]
    library.add(shutil.copy(old, library.archives_dir / "my_tiny.zim"))
    [update] = find_updates(library, provenance, catalog)
    assert update.book == "my_tiny" and update.entry.date == "2024-06-01"


def test_download_by_url_needs_a_known_suffix(catalog, tmp_path):
    _, _, downloader = make_box(tmp_path / "data")
    with pytest.raises(AcquireError, match="not a .zim"):
        download(downloader, catalog, "http://127.0.0.1:9/file.iso")
    job = download(downloader, None, "http://127.0.0.1:9/maps/norway.pmtiles")
    assert (job.kind, job.name) == ("map", "norway.pmtiles")
